"""Per-frame statistics from what the detector already computed (its input tensor and boxes).

Image statistics are taken on the detector's thumbnail (the frame shrunk to 80 pixels across),
which costs microseconds and, unlike full-resolution Laplacian variance, is not dominated by
sensor noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cv2
import numpy as np

from edge_runtime.contract import FrameStats
from edge_runtime.detector import Inference


@dataclass(frozen=True)
class UncertaintyBand:
    """Detections scored inside [low, high] are the ones a human should look at."""

    low: float = 0.25
    high: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ValueError(f"uncertainty band [{self.low}, {self.high}] must be inside [0, 1] "
                             "with low < high")


@dataclass(frozen=True)
class ImageStats:
    brightness: float  # mean luma, 0..1
    contrast: float  # luma standard deviation, 0..1
    sharpness: float  # Laplacian variance of the luma on the grid, 0..255 scale
    saturation: float  # mean HSV saturation, 0..1


def image_stats(thumb: np.ndarray) -> ImageStats:
    """Statistics of a small BGR uint8 image (the detector's thumbnail)."""
    grey = cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY)  # Rec. 601 luma
    mean, std = cv2.meanStdDev(grey)
    _, lap_std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_32F))
    saturation = float(cv2.mean(cv2.cvtColor(thumb, cv2.COLOR_BGR2HSV))[1])  # type: ignore[index]
    return ImageStats(brightness=float(mean[0, 0]) / 255, contrast=float(std[0, 0]) / 255,
                      sharpness=float(lap_std[0, 0]) ** 2, saturation=saturation / 255)


def frame_stats(
    inference: Inference,
    names: tuple[str, ...],
    *,
    device_id: str,
    model_version: str,
    frame_id: int,
    captured_at: datetime,
    band: UncertaintyBand,
    image: ImageStats | None = None,
) -> FrameStats:
    """One telemetry row for one frame; `image` if the caller already took the thumbnail's
    statistics (the agent does, before inference, while the thumbnail is in the CPU cache)."""
    det = inference.detections
    box = inference.letterbox
    image = image or image_stats(inference.thumbnail)
    counts = np.bincount(det.classes, minlength=len(names)) if len(det) else None
    fields: dict[str, Any] = {}
    if len(det):
        w = (det.boxes[:, 2] - det.boxes[:, 0]) / box.width
        h = (det.boxes[:, 3] - det.boxes[:, 1]) / box.height
        area = w * h
        fields = {
            "conf_max": float(det.scores.max()),
            "conf_mean": float(det.scores.mean()),
            "conf_min": float(det.scores.min()),
            "box_area_mean": float(area.mean()),
            "box_area_min": float(area.min()),
            "box_area_max": float(area.max()),
            "box_aspect_mean": float((w * box.width / np.maximum(h * box.height, 1e-6)).mean()),
        }
    uncertain = int(((det.scores >= band.low) & (det.scores <= band.high)).sum())
    # The producer is trusted and on the hot path: build without re-validating every field;
    # the hub validates each record on ingest.
    return FrameStats.model_construct(
        device_id=device_id,
        model_version=model_version,
        frame_id=frame_id,
        captured_at=captured_at,
        pre_ms=inference.pre_ms,
        infer_ms=inference.infer_ms,
        post_ms=inference.post_ms,
        detections=len(det),
        class_counts={n: int(c) for n, c in zip(names, counts, strict=True) if c}
        if counts is not None else {},
        uncertain=uncertain,
        brightness=image.brightness,
        contrast=image.contrast,
        sharpness=image.sharpness,
        saturation=image.saturation,
        embedding=None if inference.embedding is None
        else [float(v) for v in inference.embedding],
        **{k: fields.get(k) for k in ("conf_max", "conf_mean", "conf_min", "box_area_mean",
                                      "box_area_min", "box_area_max", "box_aspect_mean")},
    )


def stats_row(stats: FrameStats, names: tuple[str, ...]) -> dict[str, object]:
    """A flat table row (for Parquet and Evidently): one `count_<class>` column per model class,
    one `emb_<i>` column per embedding dimension, everything else as in the contract."""
    row = stats.model_dump(exclude={"class_counts", "embedding"})
    for name in names:
        row[f"count_{name}"] = stats.class_counts.get(name, 0)
    for i, value in enumerate(stats.embedding or ()):
        row[f"emb_{i}"] = value
    return row
