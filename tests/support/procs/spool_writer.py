"""A spool writer to be killed: commits one record per transaction, then prints its record_id.

Usage: python spool_writer.py SPOOL_PATH. A printed (and flushed) line is a promise that the
record is committed; the kill -9 test holds the spool to every promise.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_runtime.contract import FrameStats
from edge_runtime.outbox.budget import SpoolBudget
from edge_runtime.outbox.spool import Spool

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def frame_stats(frame_id: int) -> FrameStats:
    return FrameStats(
        device_id="cam-kill", model_version="m1", frame_id=frame_id,
        captured_at=T0 + timedelta(microseconds=frame_id % 10**12),
        pre_ms=1.0, infer_ms=8.0, post_ms=0.5, detections=0, class_counts={}, uncertain=0,
        brightness=0.5, contrast=0.2, sharpness=100.0, saturation=0.3,
        embedding=[0.1] * 16,
    )


def main(path: Path) -> None:
    spool = Spool(path, SpoolBudget())
    print("ready", flush=True)
    while True:
        frame_id = spool.reserve_frame_ids(1)
        record = frame_stats(frame_id)
        spool.add_telemetry([record])
        print(record.record_id, flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
