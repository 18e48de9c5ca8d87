"""Runs the device's exact pipeline over stored images: one FrameStats row per image.

Used for a release's reference telemetry profile and for offline analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from edge_runtime.contract import stats_row
from edge_runtime.detector import Detector
from edge_runtime.sources import CapturedFrame
from edge_runtime.telemetry import UncertaintyBand, frame_stats


def replay_rows(
    detector: Detector,
    frames: Iterable[CapturedFrame],
    *,
    device_id: str = "replay",
    band: UncertaintyBand | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, object]]:
    band = band or UncertaintyBand()
    rows = []
    for frame_id, frame in enumerate(frames):
        inference = detector(frame.image)
        stats = frame_stats(inference, detector.info.names, device_id=device_id,
                            model_version=detector.info.version, frame_id=frame_id,
                            captured_at=frame.captured_at, band=band)
        row = stats_row(stats, detector.info.names)
        row["source_name"] = frame.name
        rows.append(row)
        if progress:
            progress(1)
    return rows


def write_parquet(rows: list[dict[str, object]], out: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:  # the device extra leaves pyarrow out
        raise ImportError("writing Parquet needs pyarrow: pip install 'edgeloop[cloud]'"
                          ) from error
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(out)
