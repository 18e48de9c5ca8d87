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

SUMMARY_FIELDS = ("conf_max", "conf_mean", "conf_min", "box_area_mean", "box_area_min",
                  "box_area_max", "box_aspect_mean")  # None on a frame without detections


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


def luma(thumb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY)  # Rec. 601


def image_stats(thumb: np.ndarray, grey: np.ndarray | None = None) -> ImageStats:
    """Statistics of a small BGR uint8 image (the detector's thumbnail); `grey`: its luma, if
    the caller has it already."""
    if grey is None:
        grey = luma(thumb)
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
    # A frame has a handful of boxes: plain Python over them costs less than the dozen numpy
    # calls it replaces, each of which pays its overhead on caches inference just evicted.
    scores: list[float] = det.scores.tolist()
    fields: dict[str, Any] = dict.fromkeys(SUMMARY_FIELDS)
    counts = [0] * len(names)
    if scores:
        for c in det.classes.tolist():
            counts[c] += 1
        widths, heights = [], []
        for x1, y1, x2, y2 in det.boxes.tolist():
            widths.append(x2 - x1)
            heights.append(y2 - y1)
        frame_area = box.width * box.height
        areas = [w * h / frame_area for w, h in zip(widths, heights, strict=True)]
        n = len(scores)
        fields.update(
            conf_max=max(scores), conf_mean=sum(scores) / n, conf_min=min(scores),
            box_area_mean=sum(areas) / n, box_area_min=min(areas), box_area_max=max(areas),
            box_aspect_mean=sum(w / max(h, 1e-6) for w, h in zip(widths, heights, strict=True))
            / n)
    uncertain = sum(1 for score in scores if band.low <= score <= band.high)
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
        detections=len(scores),
        class_counts={n: k for n, k in zip(names, counts, strict=True) if k},
        uncertain=uncertain,
        brightness=image.brightness,
        contrast=image.contrast,
        sharpness=image.sharpness,
        saturation=image.saturation,
        embedding=None if inference.embedding is None else inference.embedding.tolist(),
        **fields,
    )

