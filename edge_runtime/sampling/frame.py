"""What the sampler sees of one frame (taken from the detector's output) and what it decides."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import cv2
import numpy as np

from edge_runtime.contract import Detection, SamplePolicy
from edge_runtime.detector import Inference
from edge_runtime.telemetry import luma


@dataclass(frozen=True)
class FrameView:
    """One frame as the sampler sees it: plain data the agent already has after inference.

    Not validated here: it is built by the agent on every frame, from the detector's own output.
    """

    scores: np.ndarray  # (n,) float32
    classes: np.ndarray  # (n,) int64, indices into names
    boxes: np.ndarray  # (n, 4) float32 xyxy in image pixels
    names: tuple[str, ...]  # the model's class names
    width: int  # image size in pixels
    height: int
    # 64-bit perceptual hash of the image, or how to take it: only a frame a policy would keep
    # is compared with the kept ones, so most frames never need theirs.
    phash: int | Callable[[], int]
    embedding: np.ndarray | None = None

    def perceptual_hash(self) -> int:
        return self.phash if isinstance(self.phash, int) else self.phash()


@dataclass(frozen=True)
class SampleDecision:
    """A frame to keep, why, and the model's boxes to pre-annotate it with."""

    policy: SamplePolicy
    uncertainty: float  # 0..1, see `uncertainty`
    predictions: tuple[Detection, ...]
    captured_at: datetime
    width: int
    height: int


@dataclass(frozen=True)
class SamplerCounters:
    """What the sampler kept and turned away since it started, for the device status."""

    kept: Mapping[SamplePolicy, int]
    over_budget: Mapping[SamplePolicy, int]  # the rule fired but the hour's budget was spent
    suppressed_duplicates: int  # would have been kept, but looked like a recently kept frame

    def as_dict(self) -> dict[str, int]:
        counts = {f"kept.{p.value}": n for p, n in self.kept.items()}
        counts.update({f"over_budget.{p.value}": n for p, n in self.over_budget.items()})
        counts["suppressed_duplicates"] = self.suppressed_duplicates
        return counts


def thumbnail_hash(thumb: np.ndarray) -> int:
    """64-bit dHash of the detector's small BGR uint8 thumbnail."""
    return grey_hash(luma(thumb))


def grey_hash(grey: np.ndarray) -> int:
    """64-bit dHash of a small grey uint8 image."""
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA)
    return int.from_bytes(np.packbits(small[:, 1:] > small[:, :-1]).tobytes(), "big")


def frame_view(inference: Inference, names: tuple[str, ...],
               phash: int | Callable[[], int] | None = None) -> FrameView:
    """The sampler's view of one detector result (`phash`: the thumbnail's hash or how to take
    it, if the caller has a quicker way than from the thumbnail)."""
    det, box = inference.detections, inference.letterbox
    if phash is None:
        phash = partial(thumbnail_hash, inference.thumbnail)
    return FrameView(det.scores, det.classes, det.boxes, names, box.width, box.height, phash,
                     inference.embedding)
