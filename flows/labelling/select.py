"""Which kept frames an annotator sees next: the most uncertain first, never two alike in a round.

Label Studio's open-source edition has no active-learning queue, so the order is decided here and
the round carries only the frames worth an annotator's time. Everything here is pure.

"Alike" is measured on a look: the frame's grey 16x12 thumbnail, normalised to zero mean and
unit spread (so a flicker of the lights does not make a stopped belt look new). On the simulated
line, different frames are >= 0.25 apart (mean absolute difference), while a re-encoded, noisier
or brighter copy of one frame stays under 0.1. The device's 64-bit dHash cannot tell them apart
here: different belt frames are a median 7 bits apart, noisy copies up to 6.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge_runtime.contract import SampleMeta

LOOK_SIZE = (16, 12)  # width, height of the thumbnail a look is made of
DEFAULT_MIN_DISTANCE = 0.15


@dataclass(frozen=True)
class Candidate:
    """A kept frame that could go to the annotators, with what the ranking reads."""

    record_id: str
    uncertainty: float  # 0..1 as on the device: the least certain detection, 1 when empty
    doubt: float  # sum of every detection's 1 - |2 s - 1|: breaks ties between equal uncertainty
    look: bytes  # see `look_of`: float16 values of the normalised thumbnail


def look_of(image: np.ndarray) -> bytes:
    """The frame's look (module docstring) as bytes: hashable, storable, comparable."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 image, got {image.dtype} {image.shape}")
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, LOOK_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    normalised = (small - small.mean()) / max(float(small.std()), 1.0)
    return normalised.astype(np.float16).tobytes()


def look_of_bytes(data: bytes) -> bytes:
    """`look_of` encoded image bytes (JPEG or PNG)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("image bytes could not be decoded")
    return look_of(image)


def _vectors(looks: Iterable[bytes]) -> np.ndarray:
    size = LOOK_SIZE[0] * LOOK_SIZE[1]
    rows = [np.frombuffer(x, np.float16).astype(np.float32) for x in looks]
    if any(r.size != size for r in rows):
        raise ValueError(f"a look must hold {size} float16 values")
    return np.stack(rows) if rows else np.empty((0, size), np.float32)


def look_distance(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two looks: 0 for the same picture, >= 0.25 for two frames."""
    va, vb = _vectors([a, b])
    return float(np.mean(np.abs(va - vb)))


def candidate(meta: SampleMeta, frame_look: bytes) -> Candidate:
    doubt = sum(1.0 - abs(2.0 * d.score - 1.0) for d in meta.predictions)
    return Candidate(meta.record_id, meta.uncertainty, doubt, frame_look)


def ranked(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Most informative first: uncertainty, then total doubt, then record id (a stable order)."""
    return sorted(candidates, key=lambda c: (-c.uncertainty, -c.doubt, c.record_id))


def select_for_labelling(candidates: Sequence[Candidate], budget: int, *,
                         min_distance: float = DEFAULT_MIN_DISTANCE,
                         already_chosen: Iterable[bytes] = ()) -> list[Candidate]:
    """Up to `budget` candidates, most informative first, none whose look is within
    `min_distance` of another one chosen (or of a look in `already_chosen`, say the frames of
    earlier rounds).

    Greedy over the ranking, so a smaller budget picks a prefix of what a larger one picks.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if min_distance < 0:
        raise ValueError(f"min_distance must be >= 0, got {min_distance}")
    kept = _vectors(already_chosen)
    seen_ids: set[str] = set()
    chosen: list[Candidate] = []
    for item in ranked(candidates):
        if len(chosen) >= budget:
            break
        if item.record_id in seen_ids:
            continue
        vector = _vectors([item.look])
        if len(kept) and float(np.abs(kept - vector).mean(axis=1).min()) < min_distance:
            continue  # a near-copy of a frame already chosen teaches the model nothing new
        seen_ids.add(item.record_id)
        kept = np.concatenate([kept, vector])
        chosen.append(item)
    return chosen


def near_copies(candidates: Iterable[Candidate], looks: Iterable[bytes], *,
                min_distance: float = DEFAULT_MIN_DISTANCE) -> list[Candidate]:
    """The candidates within `min_distance` of any of `looks`: frames an annotator has (or is
    about to have) seen already, which no later round needs to consider again."""
    kept = _vectors(looks)
    if not len(kept):
        return []
    return [c for c in candidates
            if float(np.abs(kept - _vectors([c.look])).mean(axis=1).min()) < min_distance]


def shortlist(metas: Iterable[SampleMeta], size: int) -> list[SampleMeta]:
    """The `size` most uncertain samples: the only ones whose images are fetched and compared."""
    order = sorted(metas, key=lambda m: (
        -m.uncertainty, -sum(1.0 - abs(2.0 * d.score - 1.0) for d in m.predictions),
        m.record_id))
    return order[:size]
