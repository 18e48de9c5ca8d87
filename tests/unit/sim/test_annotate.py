"""The simulated annotator (sim/annotate.py): finding a frame's truth from its image alone,
label noise, and working through a desk's open tasks."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pytest

from sim.annotate import (
    DeskTask,
    TruthBox,
    TruthLookup,
    annotate_open_tasks,
    truth_boxes,
    with_label_noise,
)
from sim.stream import stream


def jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def decoded(image: np.ndarray) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg(image), np.uint8), cv2.IMREAD_COLOR)


FRAMES = list(stream("new_variant", seed=0, width=320, frames=12, name="cam-9"))


def test_the_frame_id_hint_finds_the_frame_with_one_rendering() -> None:
    found = TruthLookup(["baseline", "new_variant"]).find("cam-9", decoded(FRAMES[7].image),
                                                           hint=7)
    assert found is not None
    key, truth = found
    assert (key.scenario, key.stream, key.index, key.width) == ("new_variant", "cam-9", 7, 320)
    assert np.array_equal(truth.boxes, FRAMES[7].truth.boxes)


def test_a_wrong_hint_falls_back_to_scanning_the_stream() -> None:
    lookup = TruthLookup(["new_variant"], max_index=20)
    found = lookup.find("cam-9", decoded(FRAMES[9].image), hint=1003)  # ids moved on a restart
    assert found is not None and found[0].index == 9
    again = lookup.find("cam-9", decoded(FRAMES[4].image), hint=None)  # from the scan's memory
    assert again is not None and again[0].index == 4


def test_a_frame_from_elsewhere_is_not_matched() -> None:
    other = next(stream("new_variant", seed=0, width=320, frames=1, start=3, name="cam-8"))
    assert TruthLookup(["new_variant"], max_index=15).find("cam-9", decoded(other.image), 3) \
        is None


def test_label_noise_forgets_or_relabels_about_the_asked_share() -> None:
    boxes = [TruthBox(i % 3, 0, 0, 10, 10) for i in range(3000)]
    clean, spoilt = with_label_noise(boxes, 0.0, np.random.default_rng(0))
    assert clean == boxes and spoilt == 0
    noisy, spoilt = with_label_noise(boxes, 0.2, np.random.default_rng(0))
    assert spoilt == pytest.approx(600, abs=80)
    relabelled = sum(a.cls != b.cls for a, b in zip(noisy, boxes, strict=False))
    assert len(noisy) == pytest.approx(3000 - spoilt / 2, abs=60) and relabelled > 0
    with pytest.raises(ValueError, match=r"error rate 1\.5"):
        with_label_noise(boxes, 1.5, np.random.default_rng(0))


class FakeDesk:
    def __init__(self, tasks: dict[int, tuple[str, int | None, bytes]]) -> None:
        self.tasks = tasks
        self.submitted: dict[int, list[TruthBox]] = {}

    def open_tasks(self) -> list[DeskTask]:
        return [DeskTask(i, device, hint) for i, (device, hint, _) in self.tasks.items()
                if i not in self.submitted]

    def image(self, task: DeskTask) -> bytes:
        return self.tasks[task.id][2]

    def submit(self, task: DeskTask, boxes: Sequence[TruthBox], width: int, height: int
               ) -> None:
        assert (width, height) == (320, 240)
        self.submitted[task.id] = list(boxes)


def test_open_tasks_get_their_frames_truth_and_unknown_frames_stay_open() -> None:
    stranger = next(stream("dusk", seed=5, width=320, frames=1, name="elsewhere")).image
    desk = FakeDesk({1: ("cam-9", 2, jpeg(FRAMES[2].image)),
                     2: ("cam-9", 5, jpeg(FRAMES[5].image)),
                     3: ("cam-9", 0, jpeg(stranger))})
    report = annotate_open_tasks(desk, TruthLookup(["new_variant"], max_index=8))
    assert report.annotated == 2 and report.not_found == [3]
    assert desk.submitted[1] == truth_boxes(FRAMES[2].truth)
    assert report.boxes == len(FRAMES[2].truth.classes) + len(FRAMES[5].truth.classes)
