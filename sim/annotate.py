"""The SIMULATED annotator, for the demo and the tests only: it labels open tasks with the
simulator's ground truth, optionally with label noise, as a person would in the labelling UI.

Sampled frames carry no simulator ids: the truth is recovered from the image alone. The demo's
devices stream `sim:SCENARIO` with the stream named after the device (seed 0, the frame's width),
so the annotator re-renders that device's stream and finds the frame that looks the same: first
at the stream index equal to the frame id (what a fresh device spool assigns), then by scanning
the stream. The labelling tool is reached through a `Desk` (see demo/labelstudio_desk.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from sim.parts import CLASS_NAMES
from sim.render import GroundTruth
from sim.scenarios import SCENARIOS, get_scenario
from sim.stream import Frame, stream

SIGNATURE_SIZE = (80, 60)  # grey thumbnail compared between the task's image and a rendering
# Mean absolute grey difference (0..255) of two signatures. JPEG at quality 90 leaves ~0.3; the
# same frame under a neighbouring scenario (the old nut instead of the new one, motion blur)
# differs by 1-3, a different frame by 20+. The closest scenario under this wins.
MATCH_TOLERANCE = 0.8


@dataclass(frozen=True)
class FrameKey:
    """Where a frame comes from in the simulator: enough to render it again."""

    scenario: str
    seed: int
    stream: str
    index: int
    width: int


@dataclass(frozen=True)
class TruthBox:
    cls: int  # index into sim.parts.CLASS_NAMES
    x1: float  # pixels
    y1: float
    x2: float
    y2: float


def signature(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.resize(grey, SIGNATURE_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b)))


@dataclass
class _Scan:
    """One stream rendered in order, as far as any lookup needed it."""

    frames: Iterator[Frame]
    signatures: list[np.ndarray] = field(default_factory=list)
    truths: list[GroundTruth] = field(default_factory=list)


class TruthLookup:
    """Finds a frame's ground truth by rendering the streams it may come from."""

    def __init__(self, scenarios: Sequence[str] = tuple(SCENARIOS), *, seed: int = 0,
                 max_index: int = 2000, tolerance: float = MATCH_TOLERANCE) -> None:
        self.scenarios = tuple(get_scenario(s).name for s in scenarios)
        self.seed, self.max_index, self.tolerance = seed, max_index, tolerance
        self._scans: dict[tuple[str, str, int], _Scan] = {}

    def _render(self, scenario: str, name: str, index: int, width: int) -> Frame:
        return next(stream(scenario, seed=self.seed, width=width, start=index, frames=1,
                           name=name))

    def find(self, stream_name: str, image: np.ndarray, hint: int | None = None
             ) -> tuple[FrameKey, GroundTruth] | None:
        """The frame of stream `stream_name` that `image` shows, or None if none within
        `max_index` frames of any scenario looks the same. Scenarios share a frame's layout,
        so every scenario is tried and the closest rendering wins."""
        width = image.shape[1]
        wanted = signature(image)
        matches: list[tuple[float, FrameKey, GroundTruth]] = []
        if hint is not None and 0 <= hint <= self.max_index:
            for scenario in self.scenarios:
                frame = self._render(scenario, stream_name, hint, width)
                diff = difference(signature(frame.image), wanted)
                if diff <= self.tolerance:
                    key = FrameKey(scenario, self.seed, stream_name, hint, width)
                    matches.append((diff, key, frame.truth))
        if not matches:
            for scenario in self.scenarios:
                found = self._scan(scenario, stream_name, width, wanted)
                if found is not None:
                    matches.append(found)
        if not matches:
            return None
        _, key, truth = min(matches, key=lambda m: m[0])
        return key, truth

    def _scan(self, scenario: str, name: str, width: int, wanted: np.ndarray
              ) -> tuple[float, FrameKey, GroundTruth] | None:
        """The first frame of one scenario's stream that looks like `wanted`."""
        key = (scenario, name, width)
        scan = self._scans.get(key)
        if scan is None:
            scan = self._scans[key] = _Scan(stream(scenario, seed=self.seed, width=width,
                                                   name=name))
        index = 0
        while index <= self.max_index:
            if index == len(scan.signatures):  # render further than any lookup went before
                frame = next(scan.frames)
                scan.signatures.append(signature(frame.image))
                scan.truths.append(frame.truth)
            diff = difference(scan.signatures[index], wanted)
            if diff <= self.tolerance:
                return (diff, FrameKey(scenario, self.seed, name, index, width),
                        scan.truths[index])
            index += 1
        return None


def truth_boxes(truth: GroundTruth) -> list[TruthBox]:
    return [TruthBox(int(c), float(b[0]), float(b[1]), float(b[2]), float(b[3]))
            for b, c in zip(truth.boxes, truth.classes, strict=True)]


def with_label_noise(boxes: Sequence[TruthBox], error_rate: float, rng: np.random.Generator,
                     classes: int = len(CLASS_NAMES)) -> tuple[list[TruthBox], int]:
    """A careless annotator: each box, with probability `error_rate`, is either forgotten or
    given a wrong class (even odds). Returns the boxes and how many were spoilt."""
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error rate {error_rate} must be in [0, 1]")
    out, spoilt = [], 0
    for box in boxes:
        if rng.random() >= error_rate:
            out.append(box)
            continue
        spoilt += 1
        if classes > 1 and rng.random() < 0.5:
            wrong = (box.cls + int(rng.integers(1, classes))) % classes
            out.append(TruthBox(wrong, box.x1, box.y1, box.x2, box.y2))
    return out, spoilt


@dataclass(frozen=True)
class DeskTask:
    """An open task as the annotator sees it: its id, the device (= stream name) and the
    frame id the device gave it (a hint, not a promise)."""

    id: int
    device: str
    frame_id: int | None


class Desk(Protocol):
    """What an annotator needs of a labelling tool."""

    def open_tasks(self) -> list[DeskTask]: ...

    def image(self, task: DeskTask) -> bytes: ...

    def submit(self, task: DeskTask, boxes: Sequence[TruthBox], width: int,
               height: int) -> None: ...


@dataclass
class AnnotateReport:
    annotated: int = 0
    boxes: int = 0
    spoilt: int = 0  # boxes dropped or relabelled by the label noise
    not_found: list[int] = field(default_factory=list)  # task ids left open: no matching frame


def annotate_open_tasks(desk: Desk, lookup: TruthLookup, *, error_rate: float = 0.0,
                        seed: int = 0, limit: int | None = None) -> AnnotateReport:
    """Labels every open task (up to `limit`) with its frame's truth, noisy if asked."""
    rng = np.random.default_rng(seed)
    report = AnnotateReport()
    for task in desk.open_tasks()[:limit]:
        data = desk.image(task)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"task {task.id}: its image cannot be decoded")
        found = lookup.find(task.device, image, task.frame_id)
        if found is None:
            report.not_found.append(task.id)
            continue
        boxes, spoilt = with_label_noise(truth_boxes(found[1]), error_rate, rng)
        desk.submit(task, boxes, image.shape[1], image.shape[0])
        report.annotated += 1
        report.boxes += len(boxes)
        report.spoilt += spoilt
    return report
