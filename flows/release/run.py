"""The release driven from Python: a gate-passing candidate becomes a signed, traceable release
on the canary channel; the canary's telemetry decides whether it is promoted or rolled back (a
rollback signs the replaced release's files again as a new version: devices only move forward).

No Prefect here: `flows.release.flow` wraps these calls as tasks, `edgeloop flows release` calls
the flow, tests call them directly. The hub is the authority on versions (it takes the release
first, under its lock); the TUF repository signs it second; devices trust only what is signed.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.contract import (
    MODEL_FILE,
    InputSignature,
    Lineage,
    ModelFile,
    ReleaseManifest,
)
from flows.checks import GateReport, GateReportError
from flows.dvc_dataset import dvc_md5
from flows.reference import REFERENCE_FILE, model_versions
from flows.release.canary import CanaryVerdict, DeviceReport, Verdict, decide
from flows.release.settings import ReleaseConfig
from flows.release.tuf import ReleaseRepository, file_digest
from hub.models import ChannelState

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

    from hub.client import HubClient

CANDIDATE_MODELS = {"int8": "model.int8.onnx", "fp32": "model.onnx"}
LABELLED = "data/labelled"
MAX_DATASET_VERSION_CHARS = 200  # Lineage.dataset_version


class ReleaseError(ValueError):
    """The release cannot go ahead: the message names what is missing or refused."""


# -- the candidate -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateDecision:
    """metrics/gate.json as the release needs it."""

    ship: bool
    artefact: str | None  # "int8" | "fp32"
    reasons: list[str]
    metrics: dict[str, float]  # each numeric check's value, by check name


def read_gate(path: Path) -> GateDecision:
    try:
        gate = GateReport.read(path)
    except GateReportError as exc:
        raise ReleaseError(str(exc)) from None
    if gate.ship and gate.artefact not in CANDIDATE_MODELS:
        raise ReleaseError(f"{path}: artefact {gate.artefact!r} is not one of "
                           f"{', '.join(CANDIDATE_MODELS)}")
    return GateDecision(gate.ship, gate.artefact, list(gate.reasons), gate.metrics)


def candidate_files(candidate: Path, gate: GateDecision) -> dict[str, Path]:
    """The files a release of the candidate carries, by their name in the release."""
    if not gate.ship or gate.artefact is None:
        raise ReleaseError("the gate refused this candidate: "
                           + ("; ".join(gate.reasons) or "no reason given"))
    files = {MODEL_FILE: candidate / CANDIDATE_MODELS[gate.artefact],
             REFERENCE_FILE: candidate / REFERENCE_FILE}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ReleaseError(f"candidate files missing: {', '.join(missing)} (run the retrain "
                           "pipeline: `edgeloop flows retrain`)")
    return files


def input_signature(model: Path) -> InputSignature:
    """What the model expects, from the metadata the YOLO export wrote into it."""
    import ast

    import onnx

    try:
        meta = {p.key: p.value for p in onnx.load(str(model), load_external_data=False)
                .metadata_props}
        names = ast.literal_eval(meta["names"])
        imgsz = ast.literal_eval(meta.get("imgsz", "[640, 640]"))
    except Exception as exc:  # onnx raises several unrelated types on a broken file
        raise ReleaseError(f"{model}: no readable class names / input size in the model's "
                           f"metadata ({type(exc).__name__}: {exc})") from None
    side = max(imgsz) if isinstance(imgsz, list | tuple) else int(imgsz)
    return InputSignature(imgsz=side, classes=[str(names[i]) for i in range(len(names))])


# -- lineage -------------------------------------------------------------------------------------


def git_head(repo: Path) -> str:
    """The commit the release was built from; empty when `repo` is not a git work tree."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=False, timeout=30)
    return done.stdout.strip() if done.returncode == 0 else ""


def dataset_increments(repo: Path) -> dict[str, str]:
    """data/labelled/<batch> -> its DVC hash, from the .dvc files in the working tree."""
    return {str(p.relative_to(repo)).removesuffix(".dvc"): dvc_md5(p)[0]
            for p in sorted((repo / LABELLED).glob("*.dvc"))}


def dataset_version(increments: Mapping[str, str]) -> str:
    """Each increment with its DVC hash; a digest of them all when that is too long."""
    text = ",".join(f"{path}@{md5}" for path, md5 in increments.items())
    if len(text) <= MAX_DATASET_VERSION_CHARS:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    return f"{len(increments)} increments of {LABELLED}, sha256 of path@md5 list {digest}"


def params_hash(params: Path) -> str:
    return hashlib.sha256(params.read_bytes()).hexdigest() if params.is_file() else ""


# -- publishing ----------------------------------------------------------------------------------


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


# -- the canary ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryInputs:
    """What the verdict is computed from, fetched from the hub."""

    new: pd.DataFrame
    reference: pd.DataFrame | None
    previous: pd.DataFrame | None
    devices: list[DeviceReport]
    since: datetime  # when the canary channel took the release


def canary_since(client: HubClient, channel: str, release_id: str) -> datetime:
    """When `channel` took `release_id` (its newest active assignment)."""
    state = client.channel(channel)
    if state.release is None or state.release.release_id != release_id:
        running = state.release.release_id if state.release else "nothing"
        raise ReleaseError(f"channel {channel} runs {running}, not {release_id}")
    return next(e.assigned_at for e in state.history
                if e.release_id == release_id and e.rolled_back_at is None)


def fetch_canary(client: HubClient, manifest: ReleaseManifest, config: ReleaseConfig,
                 previous_window: timedelta = timedelta(days=1)) -> CanaryInputs:
    """Canary devices' frames on the release since it was assigned; the previous release's
    frames (any device) over `previous_window` before and since; the reference profile."""
    channel = config.canary_channel
    since = canary_since(client, channel, manifest.release_id)
    canary = {d.device_id: d for d in client.devices()
              if d.channel == channel and not d.revoked}
    rows = client.telemetry_window(since - previous_window)  # paged: the newest rows too
    new_versions = model_versions(manifest)
    if len(rows):
        captured = rows["captured_at"]
        on_new = rows["model_version"].isin(new_versions) & rows["device_id"].isin(canary)
        new = rows[on_new & (captured >= since)]
    else:
        new = rows
    previous = None
    parent = manifest.lineage.parent_release
    if parent is not None and len(rows):
        old_versions = model_versions(client.release(parent))
        previous = rows[rows["model_version"].isin(old_versions - new_versions)]
    devices = [DeviceReport(d.device_id, d.status.release_version, d.status.last_error)
               for d in canary.values()
               if d.status is not None and d.status.sent_at >= since]
    return CanaryInputs(new, reference_profile(client, manifest), previous, devices, since)


def reference_profile(client: HubClient, manifest: ReleaseManifest) -> pd.DataFrame | None:
    import pandas as pd

    entry = next((f for f in manifest.files if f.name == REFERENCE_FILE), None)
    if entry is None:
        return None
    data = client.download(manifest.release_id, REFERENCE_FILE)
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise ReleaseError(f"{REFERENCE_FILE} of {manifest.release_id} does not match its "
                           "manifest's sha256")
    return pd.read_parquet(io.BytesIO(data))


def judge_canary(client: HubClient, manifest: ReleaseManifest,
                 config: ReleaseConfig) -> CanaryVerdict:
    inputs = fetch_canary(client, manifest, config)
    return decide(inputs.new, release_version=manifest.version, reference=inputs.reference,
                  previous=inputs.previous, devices=inputs.devices, config=config.canary)


def apply_verdict(client: HubClient, open_repo: Callable[[], ReleaseRepository],
                  manifest: ReleaseManifest, verdict: Verdict, config: ReleaseConfig) -> str:
    """Promote the canary's release to stable, or roll `manifest` back by publishing the release
    it replaced again (`open_repo` is called only then: a rollback signs); what was done."""
    if verdict is Verdict.PROMOTE:
        state = client.promote(config.stable_channel, from_channel=config.canary_channel)
        return f"promoted to {config.stable_channel}: it now runs {_running(state)}"
    if verdict is Verdict.ROLLBACK:
        return roll_back(client, open_repo(), manifest, config).describe()
    return "nothing yet: waiting for more canary frames"


def _running(state: ChannelState) -> str:
    return state.release.release_id if state.release else "nothing"


# -- rolling back: the good release's files again, as a new version -------------------------------
#
# A device never activates a version below the highest it ever activated (a validly signed older
# release is a rollback attack to it), so moving a channel back to the older release would leave
# every device that took the bad one on it. A rollback therefore moves forward: the files of the
# release the bad one replaced, signed again as the next version and put on the bad one's channels.

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


# -- the report ----------------------------------------------------------------------------------


def verdict_markdown(manifest: ReleaseManifest, verdict: CanaryVerdict, action: str,
                     who: str = "canary telemetry") -> str:
    lines = [f"# Release {manifest.release_id} (version {manifest.version}): "
             f"**{verdict.verdict.value.upper()}**", "",
             f"Decided by {who}: {verdict.frames} frames from {verdict.devices} canary devices.",
             f"Action: {action}.", ""]
    if verdict.reasons:
        lines += ["Reasons:", "", *(f"- {r}" for r in verdict.reasons), ""]
    if verdict.checks:
        lines += ["| check | result | value | limit | detail |", "|---|---|---|---|---|"]
        lines += [f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {_num(c.value)} | "
                  f"{_num(c.limit)} | {c.detail} |" for c in verdict.checks]
    lineage = manifest.lineage
    lines += ["", f"Lineage: git `{lineage.git_commit[:12] or '?'}`, dataset "
              f"`{lineage.dataset_version or '?'}`, params `{lineage.params_hash[:12] or '?'}`, "
              f"parent `{lineage.parent_release or '-'}`."]
    return "\n".join(lines) + "\n"


def _num(value: Any) -> str:
    return "" if value is None else f"{value:g}"
