"""Publishing a release: its next version, its manifest, taken by the hub first, then signed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from edge_runtime.contract import (
    MODEL_FILE,
    InputSignature,
    Lineage,
    ModelFile,
    ReleaseManifest,
)
from flows.release.tuf import ReleaseRepository
from flows.release.tuf_metadata import file_digest
from hub.models import ChannelState

if TYPE_CHECKING:

    from hub.client import HubClient


def next_version(client: HubClient, repo: ReleaseRepository,
                 stable_channel: str) -> tuple[int, str | None]:
    """The next fleet version (above the hub's and the signed ones) and the parent release: the
    release the stable channel runs (else the newest release)."""
    records = client.releases()  # newest first
    signed = [m.version for m in repo.manifests()]
    version = max([0, *(r.manifest.version for r in records), *signed]) + 1
    stable = next((r.manifest.release_id for r in records if stable_channel in r.channels),
                  None)
    return version, stable or (records[0].manifest.release_id if records else None)


def build_manifest(files: Mapping[str, Path], *, version: int, signature: InputSignature,
                   metrics: Mapping[str, float], lineage: Lineage, expires_in: timedelta,
                   release_id: str | None = None,
                   now: datetime | None = None) -> ReleaseManifest:
    entries = []
    for name, path in files.items():
        sha256, size = file_digest(path)
        entries.append(ModelFile(name=name, sha256=sha256, size=size))
    model_sha = next(e.sha256 for e in entries if e.name == MODEL_FILE)
    created = (now or datetime.now(UTC)).replace(microsecond=0)
    return ReleaseManifest(release_id=release_id or f"v{version}-{model_sha[:8]}",
                           version=version, files=entries, input=signature,
                           metrics=dict(metrics), lineage=lineage, created_at=created,
                           expires_at=created + expires_in)


def publish(client: HubClient, repo: ReleaseRepository, manifest: ReleaseManifest,
            files: Mapping[str, Path], channels: Sequence[str]) -> list[ChannelState]:
    """Hub first (it refuses a version that does not go up), then sign, then serve the signed
    metadata, then put the release on each of `channels`."""
    client.create_release(manifest.model_dump_json(), dict(files))
    repo.add_release(manifest, files)
    client.publish_tuf_metadata(repo.metadata_files())
    return [client.assign(channel, manifest.release_id) for channel in channels]


def refresh_signatures(client: HubClient, repo: ReleaseRepository,
                       margin: timedelta) -> list[str]:
    """Re-signs the timestamp (and any role expiring within `margin`) and serves the result."""
    roles = repo.refresh_expiring(margin)
    client.publish_tuf_metadata(repo.metadata_files())
    return roles
