"""Choosing the frames of a labelling round: most uncertain first, no near-copies."""

from __future__ import annotations

from datetime import UTC, datetime

import cv2
import numpy as np
import pytest

from edge_runtime.contract import Detection, SampleMeta, SamplePolicy
from flows.labelling.select import (
    Candidate,
    candidate,
    look_distance,
    look_of,
    look_of_bytes,
    near_copies,
    ranked,
    select_for_labelling,
    shortlist,
)
from sim.stream import stream

FRAMES = [f.image for f in stream("new_variant", seed=0, frames=40, name="cam-1")]
LOOKS = [look_of(image) for image in FRAMES]


def c(record_id: str, uncertainty: float, frame: int, doubt: float = 0.0) -> Candidate:
    return Candidate(record_id, uncertainty, doubt, LOOKS[frame])


def ids(chosen: list[Candidate]) -> list[str]:
    return [x.record_id for x in chosen]


def copy_of(image: np.ndarray) -> bytes:
    """The same scene seen again: re-encoded, noisier, a little brighter."""
    noisy = image.astype(np.float32) + np.random.default_rng(1).normal(0, 5, image.shape)
    brighter = cv2.convertScaleAbs(np.clip(noisy, 0, 255), alpha=1.08, beta=4)
    ok, data = cv2.imencode(".jpg", brighter, [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert ok
    return data.tobytes()


def test_different_frames_of_the_line_look_apart_and_a_copy_looks_alike() -> None:
    nearest = min(look_distance(a, b) for i, a in enumerate(LOOKS) for b in LOOKS[i + 1:])
    assert nearest > 0.2
    assert look_distance(look_of_bytes(copy_of(FRAMES[3])), LOOKS[3]) < 0.1


def test_most_uncertain_first_within_the_budget() -> None:
    pool = [c("a/1", 0.2, 1), c("a/2", 0.9, 2), c("a/3", 0.5, 3), c("a/4", 0.7, 4)]
    assert ids(select_for_labelling(pool, 3)) == ["a/2", "a/4", "a/3"]


def test_ties_on_uncertainty_go_to_the_frame_with_more_doubt() -> None:
    pool = [c("a/1", 1.0, 1, doubt=0.5), c("a/2", 1.0, 2, doubt=2.5)]
    assert ids(ranked(pool)) == ["a/2", "a/1"]


def test_a_near_copy_of_a_chosen_frame_is_passed_over_for_the_next_one() -> None:
    twin = Candidate("b/9", 0.9, 0.0, look_of_bytes(copy_of(FRAMES[5])))
    pool = [c("a/5", 0.95, 5), twin, c("a/6", 0.5, 6)]
    assert ids(select_for_labelling(pool, 2)) == ["a/5", "a/6"]
    assert ids(select_for_labelling(pool, 2, min_distance=0.0)) == ["a/5", "b/9"]


def test_near_copies_of_chosen_frames_are_named_for_the_ledger() -> None:
    twin = Candidate("b/9", 0.9, 0.0, look_of_bytes(copy_of(FRAMES[5])))
    others = [c("a/6", 0.5, 6), c("a/7", 0.4, 7)]
    assert ids(near_copies([twin, *others], [LOOKS[5]])) == ["b/9"]
    assert near_copies([twin], []) == []


def test_frames_like_an_earlier_rounds_are_not_chosen_again() -> None:
    pool = [c("a/1", 0.95, 1), c("a/2", 0.5, 2)]
    chosen = select_for_labelling(pool, 2, already_chosen=[look_of_bytes(copy_of(FRAMES[1]))])
    assert ids(chosen) == ["a/2"]


def test_a_smaller_budget_picks_a_prefix_of_a_larger_one() -> None:
    rng = np.random.default_rng(0)
    pool = [c(f"d/{i}", float(rng.random()), i, float(rng.random())) for i in range(40)]
    big = select_for_labelling(pool, 30)
    for n in (0, 1, 10, 25):
        assert select_for_labelling(pool, n) == big[:n]


def test_a_record_listed_twice_is_chosen_once() -> None:
    pool = [c("a/1", 0.9, 1), c("a/1", 0.9, 2)]
    assert ids(select_for_labelling(pool, 5)) == ["a/1"]


@pytest.mark.parametrize(("budget", "distance", "message"), [
    (-1, 0.1, "budget must be >= 0"), (3, -0.5, "min_distance must be >= 0")])
def test_bad_arguments_are_refused(budget: int, distance: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        select_for_labelling([], budget, min_distance=distance)


def test_a_look_of_another_size_or_an_undecodable_image_is_refused() -> None:
    with pytest.raises(ValueError, match="float16 values"):
        select_for_labelling([Candidate("a/1", 1.0, 0.0, b"\0\0")], 1,
                             already_chosen=[LOOKS[0]])
    with pytest.raises(ValueError, match="could not be decoded"):
        look_of_bytes(b"not an image")


def meta(frame_id: int, uncertainty: float, scores: list[float]) -> SampleMeta:
    return SampleMeta(device_id="cam", model_version="m", frame_id=frame_id,
                      captured_at=datetime(2026, 1, 1, tzinfo=UTC),
                      policy=SamplePolicy.UNCERTAIN, uncertainty=uncertainty, width=32,
                      height=24, predictions=[Detection(cls=0, label="nut", score=s, x1=0.1,
                                                        y1=0.1, x2=0.2, y2=0.2)
                                              for s in scores])


def test_candidate_doubt_sums_every_detection_and_shortlist_keeps_the_most_uncertain() -> None:
    one = candidate(meta(1, 1.0, [0.5, 0.75]), LOOKS[0])
    assert one.doubt == pytest.approx(1.0 + 0.5) and one.record_id == "cam/1"
    metas = [meta(i, u, []) for i, u in enumerate([0.1, 0.8, 0.3, 0.9])]
    assert [m.frame_id for m in shortlist(metas, 2)] == [3, 1]
