"""One device's drift check, as plain functions the flow wires together: take its live window
from the hub, compare it with the reference of the release it runs, store the HTML report and
the Evidently snapshot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from flows.drift.settings import DriftConfig, WindowSpec
from flows.drift.verdict import DriftInputError, DriftVerdict
from flows.reference import ReferenceNotFoundError, ReferenceSource
from hub.blobs import BlobStore

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

    from hub.client import HubClient

FIRST_SLICE = timedelta(minutes=15)  # the newest slice read first; each older one is 4x longer
_WORKSPACE_LOCK = threading.Lock()  # Evidently's local workspace is not safe across threads


@dataclass(frozen=True)
class DeviceDrift:
    """One device's outcome: a verdict, or why there is none."""

    device_id: str
    model_version: str | None
    verdict: DriftVerdict | None
    report: str | None = None  # where the HTML report was stored
    snapshot_id: str | None = None  # the run's id in the Evidently workspace
    skipped: str | None = None  # why the device was not checked

    def to_dict(self) -> dict[str, object]:
        return {"device_id": self.device_id, "model_version": self.model_version,
                "verdict": None if self.verdict is None else self.verdict.to_dict(),
                "report": self.report, "snapshot_id": self.snapshot_id, "skipped": self.skipped}


def fetch_window(client: HubClient, device_id: str, window: WindowSpec, now: datetime,
                 classes: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The device's newest `window.frames` records (all of them with `frames` None) captured in
    [now - max_age_s, now), oldest first.

    The hub answers oldest-first, so slices are read backwards in time, each 4x the last, until
    enough rows are in; each slice is paged forward when the hub's row limit cuts it.
    """
    import pandas as pd

    oldest = now - timedelta(seconds=window.max_age_s)
    until, span, rows = now, FIRST_SLICE, 0
    parts: list[pd.DataFrame] = []
    while until > oldest and (window.frames is None or rows < window.frames):
        since = max(until - span, oldest)
        part = client.telemetry_window(since, until, device_id=device_id, classes=classes)
        parts.insert(0, part)
        rows += len(part)
        until, span = since, span * 4
    parts = [p for p in parts if not p.empty]  # an empty answer has no dtypes to offer
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    # Each answer has count_<class> columns only for the classes seen in it: 0 elsewhere.
    counts = [c for c in frame.columns if c.startswith("count_")]
    frame[counts] = frame[counts].fillna(0).astype("int64")
    return frame if window.frames is None else frame.tail(window.frames).reset_index(drop=True)


def current_model_rows(window: pd.DataFrame) -> tuple[str | None, pd.DataFrame]:
    """The rows of the model the device runs now (its newest record's), and that version."""
    if window.empty:
        return None, window
    version = str(window["model_version"].iloc[-1])
    return version, window[window["model_version"] == version].reset_index(drop=True)


def check_device(client: HubClient, references: ReferenceSource, config: DriftConfig,
                 device_id: str, now: datetime, reports: BlobStore,
                 workspace: Path | None) -> DeviceDrift:
    """Check one device's live window against its release's reference; store the report."""
    from flows.drift.evidently_drift import add_to_workspace, check_drift

    window = fetch_window(client, device_id, config.window, now)
    version, current = current_model_rows(window)
    if version is None:
        return DeviceDrift(device_id, None, None, skipped="no telemetry in the window")
    try:
        reference = references(version)
    except ReferenceNotFoundError as error:
        return DeviceDrift(device_id, version, None, skipped=str(error))
    # The hub makes count_<class> columns only for classes seen in the answer: a class the
    # device never saw in this window was counted 0 on every frame.
    for column in reference.columns:
        if column.startswith("count_") and column not in current.columns:
            current[column] = 0
    try:
        check = check_drift(reference, current, config, name=f"{device_id} {now:%Y-%m-%d %H:%M}",
                            timestamp=now, tags=[device_id, str(version)],
                            metadata={"device_id": device_id, "model_version": str(version)})
    except DriftInputError as error:
        return DeviceDrift(device_id, version, None, skipped=str(error))
    key = f"drift/{device_id}/{now:%Y%m%dT%H%M%SZ}.html"
    reports.put(key, check.html().encode())
    snapshot_id = None
    if workspace is not None:
        with _WORKSPACE_LOCK:
            snapshot_id = add_to_workspace(workspace, device_id, check, config,
                                           description=f"drift of device {device_id}")
    where = reports.path(key) if reports.local else f"{reports.url.rstrip('/')}/{key}"
    return DeviceDrift(device_id, version, check.verdict, where, snapshot_id)
