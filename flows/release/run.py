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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from edge_runtime.contract import ReleaseManifest
from flows.reference import REFERENCE_FILE, model_versions
from flows.release.canary import CanaryConfig, CanaryVerdict, DeviceReport, Verdict, decide
from flows.release.candidate import ReleaseError
from flows.release.rollback import roll_back
from flows.release.settings import ReleaseConfig
from flows.release.tuf import ReleaseRepository
from hub.models import ChannelState

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

    from hub.client import HubClient


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
    # Paged (the newest rows too); its model's classes as count columns, never whatever names
    # some device reported.
    rows = client.telemetry_window(since - previous_window, classes=manifest.input.classes)
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
        previous = same_line_now(rows[rows["model_version"].isin(old_versions - new_versions)],
                                 since, config.canary)
    devices = [DeviceReport(d.device_id, d.status.release_version, d.status.last_error)
               for d in canary.values()
               if d.status is not None and d.status.sent_at >= since]
    return CanaryInputs(new, reference_profile(client, manifest), previous, devices, since)


def same_line_now(previous: pd.DataFrame, since: datetime, config: CanaryConfig
                  ) -> pd.DataFrame:
    """The previous version's frames on the line as it is now: those captured since the canary
    began (on the devices that still run it); when they are too few to compare (every device is
    a canary, say), its newest `min_frames` frames. Not its frames from days before, from before
    the drift the release answers."""
    concurrent = previous[previous["captured_at"] >= since]
    if len(concurrent) >= config.min_baseline_frames:
        return concurrent
    return previous.sort_values("captured_at").tail(config.min_frames)


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
