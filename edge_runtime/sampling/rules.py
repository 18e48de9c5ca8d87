"""The policies' rules: pure functions over one frame's scores and classes, and the kept
frame's boxes and wire record.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_runtime.contract import Detection, SampleMeta
from edge_runtime.sampling.frame import FrameView, SampleDecision


def has_uncertain_detection(scores: Sequence[float], low: float, high: float) -> bool:
    return any(low <= score <= high for score in scores)


def is_empty(scores: Sequence[float]) -> bool:
    return not scores


def has_rare_class(classes: Sequence[int], rare: frozenset[int], counts: Sequence[int],
                   total: int, max_share: float | None, min_detections: int) -> bool:
    """A detection of a class named rare, or of one below `max_share` of the `total` counted."""
    if any(c in rare for c in classes):
        return True
    if max_share is None or total < min_detections:
        return False
    limit = max_share * total
    return any(counts[c] < limit for c in classes)


def uncertainty(scores: Sequence[float]) -> float:
    """How undecided the model was: 1 - |2 s - 1| of its least certain detection; 1 when empty."""
    return max((1.0 - abs(2.0 * s - 1.0) for s in scores), default=1.0)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def unit_vector(embedding: np.ndarray | None) -> np.ndarray | None:
    """The embedding scaled to length 1 (cosine distance is then 1 - a dot product)."""
    if embedding is None:
        return None
    vector = np.asarray(embedding, np.float64).ravel()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else None  # a zero vector has no direction to compare


def predictions(frame: FrameView) -> tuple[Detection, ...]:
    """The frame's boxes as contract detections, in 0..1 image coordinates."""
    scale = np.array([frame.width, frame.height, frame.width, frame.height], np.float64)
    boxes = np.clip(frame.boxes / scale, 0.0, 1.0).tolist()
    return tuple(
        Detection(cls=c, label=frame.names[c], score=min(max(s, 0.0), 1.0),
                  x1=b[0], y1=b[1], x2=b[2], y2=b[3])
        for c, s, b in zip(frame.classes.tolist(), frame.scores.tolist(), boxes, strict=True)
    )


def to_sample_meta(decision: SampleDecision, *, device_id: str, model_version: str,
                   frame_id: int) -> SampleMeta:
    """The wire record of a kept frame (validated: it leaves the device)."""
    return SampleMeta(
        device_id=device_id, model_version=model_version, frame_id=frame_id,
        captured_at=decision.captured_at, policy=decision.policy,
        uncertainty=decision.uncertainty, width=decision.width, height=decision.height,
        predictions=list(decision.predictions),
    )
