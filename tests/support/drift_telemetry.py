"""Synthetic device telemetry for the drift tests: a baseline line and the same line shifted,
as DataFrames (stats_row columns) and as FrameStats records to post to a hub."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from edge_runtime.contract import FrameStats

CLASSES = ("nut", "washer", "bolt")


def telemetry(seed: int, rows: int, *, brightness: float = 0.45, device_id: str = "d1",
              model_version: str = "m1", start: datetime | None = None) -> pd.DataFrame:
    """Rows like edge_runtime.telemetry.stats_row's; no conf_/box_ values without detections."""
    rng = np.random.default_rng(seed)
    det = rng.poisson(3.0, rows)
    has = det > 0
    conf = np.where(has, rng.uniform(0.3, 1.0, rows), np.nan)
    nut = rng.binomial(det, 0.3)
    washer = rng.binomial(det - nut, 0.4)
    start = start or datetime(2026, 1, 1)
    return pd.DataFrame({
        "device_id": device_id, "model_version": model_version, "frame_id": np.arange(rows),
        "captured_at": [start + timedelta(seconds=i) for i in range(rows)],
        "pre_ms": 0.3, "infer_ms": rng.normal(15, 2, rows).clip(1), "post_ms": 0.4,
        "detections": det,
        "conf_max": conf, "conf_mean": conf * 0.8, "conf_min": conf * 0.6,
        "uncertain": np.minimum(rng.poisson(1.5, rows), det),
        "box_area_mean": np.where(has, rng.gamma(3.0, 0.007, rows), np.nan),
        "box_area_min": np.where(has, rng.gamma(3.0, 0.003, rows), np.nan),
        "box_area_max": np.where(has, rng.gamma(3.0, 0.01, rows), np.nan),
        "box_aspect_mean": np.where(has, rng.normal(1.0, 0.3, rows).clip(0.1), np.nan),
        "brightness": rng.normal(brightness, 0.05, rows).clip(0, 1),
        "contrast": rng.normal(0.05, 0.01, rows).clip(0, 1),
        "sharpness": rng.gamma(4.0, 60.0, rows),
        "saturation": rng.normal(0.05, 0.015, rows).clip(0, 1),
        "count_nut": nut, "count_washer": washer, "count_bolt": det - nut - washer,
    })


def records(frame: pd.DataFrame) -> list[FrameStats]:
    """The rows as the device would send them."""
    out = []
    for row in frame.to_dict("records"):
        counts = {c: int(row.pop(f"count_{c}")) for c in CLASSES}
        fields = {k: (None if isinstance(v, float) and np.isnan(v) else v)
                  for k, v in row.items()}
        fields["captured_at"] = pd.Timestamp(fields["captured_at"]).to_pydatetime()
        out.append(FrameStats(class_counts={k: v for k, v in counts.items() if v}, **fields))
    return out

