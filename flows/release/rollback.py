"""Rolling back: the good release's files again, as a new version.

A device never activates a version below the highest it ever activated (a validly signed older
release is a rollback attack to it), so moving a channel back to the older release would leave
every device that took the bad one on it. A rollback therefore moves forward: the files of the
release the bad one replaced, signed again as the next version and put on the bad one's channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from edge_runtime.contract import ReleaseManifest
from flows.release.candidate import ReleaseError
from flows.release.publish import next_version, publish
from flows.release.settings import ReleaseConfig
from flows.release.tuf import ReleaseRepository
from flows.release.tuf_metadata import file_digest

if TYPE_CHECKING:

    from hub.client import HubClient

ROLLBACK_OF = "rollback_of_version"  # metrics of a rollback release: the version it rolls back
RESTORES = "restores_version"  # ... and the version whose files it publishes again


@dataclass(frozen=True)
class Rollback:
    bad: ReleaseManifest
    restored: ReleaseManifest  # the release whose files were published again
    published: ReleaseManifest  # ... as this new release
    channels: list[str]  # that now run it

    def describe(self) -> str:
        return (f"rolled {', '.join(self.channels)} back to the files of "
                f"{self.restored.release_id}: published them again as {self.published.release_id} "
                f"(version {self.published.version})")


def rollback_release_id(version: int, bad: ReleaseManifest) -> str:
    return f"v{version}-rollback-of-v{bad.version}"


def release_to_restore(bad: ReleaseManifest,
                       signed: Mapping[str, ReleaseManifest]) -> ReleaseManifest:
    """The release whose files a rollback of `bad` publishes again: the release `bad` replaced
    (its lineage parent), or the newest rollback of that one when it was rolled back too. When
    `bad` is itself a rollback, the files it carried were judged bad in the end, so the release
    they first shipped in stands in for it."""
    by_version = {m.version: m for m in signed.values()}
    origin = bad
    while RESTORES in origin.metrics:  # versions strictly fall: the loop ends
        restored = by_version.get(int(origin.metrics[RESTORES]))
        if restored is None or restored.version >= origin.version:
            raise ReleaseError(f"release {origin.release_id} restores version "
                               f"{origin.metrics[RESTORES]:g}, which is not signed before it")
        origin = restored
    parent = origin.lineage.parent_release
    if parent is None:
        raise ReleaseError(f"release {origin.release_id} replaced no earlier release: nothing to "
                           "roll back to (assign a release to the channel by hand)")
    if parent not in signed:
        raise ReleaseError(f"cannot roll {bad.release_id} back to {parent}: it is not in the "
                           "signed repository")
    restored = signed[parent]
    while rolled_back := [m for m in signed.values()
                          if m.metrics.get(ROLLBACK_OF) == restored.version]:
        restored = max(rolled_back, key=lambda m: m.version)  # its own rollback is the good one
    return restored


def signed_files(repo: ReleaseRepository, manifest: ReleaseManifest) -> dict[str, Path]:
    """The release's files as the repository signed them, each checked against its manifest."""
    files = {}
    for entry in manifest.files:
        path = repo.targets_dir / manifest.release_id / entry.name
        found = file_digest(path) if path.is_file() else None
        if found != (entry.sha256, entry.size):
            raise ReleaseError(f"{path} is missing or differs from the signed manifest of "
                               f"{manifest.release_id}")
        files[entry.name] = path
    return files


def rollback_manifest(bad: ReleaseManifest, restored: ReleaseManifest, *, version: int,
                      expires_in: timedelta, now: datetime | None = None) -> ReleaseManifest:
    """`restored` again (files, input, metrics, lineage) as release `version`, whose lineage
    parent is `bad` and whose metrics say which version it rolls back and which it restores."""
    created = (now or datetime.now(UTC)).replace(microsecond=0)
    metrics = {k: v for k, v in restored.metrics.items() if k not in (ROLLBACK_OF, RESTORES)}
    metrics |= {ROLLBACK_OF: float(bad.version), RESTORES: float(restored.version)}
    return ReleaseManifest(
        release_id=rollback_release_id(version, bad), version=version, files=restored.files,
        input=restored.input, metrics=metrics,
        lineage=restored.lineage.model_copy(update={"parent_release": bad.release_id}),
        created_at=created, expires_at=created + expires_in)


def roll_back(client: HubClient, repo: ReleaseRepository, bad: ReleaseManifest,
              config: ReleaseConfig) -> Rollback:
    """Publishes the files of the release `bad` replaced as a new release, signed, on every
    channel that runs `bad` now."""
    channels = [s.channel for s in client.channels()
                if s.release is not None and s.release.release_id == bad.release_id]
    if not channels:
        raise ReleaseError(f"no channel runs {bad.release_id}: nothing to roll back")
    restored = release_to_restore(bad, {m.release_id: m for m in repo.manifests()})
    if restored.files == bad.files:
        raise ReleaseError(f"{restored.release_id} carries the same files as {bad.release_id}: "
                           "publishing them again would roll nothing back")
    files = signed_files(repo, restored)
    version, _ = next_version(client, repo, config.stable_channel)
    manifest = rollback_manifest(bad, restored, version=version,
                                 expires_in=timedelta(days=config.manifest_expiry_days))
    publish(client, repo, manifest, files, channels)
    return Rollback(bad, restored, manifest, channels)
