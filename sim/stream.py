"""Frame streams for the edge runtime and the demo: a scenario arriving on a drift schedule, or
layers of scenarios each arriving at its own frame ("new_variant@600,camera_bump@300")."""

from __future__ import annotations

import enum
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sim.conditions import BASELINE
from sim.render import GroundTruth, render_frame
from sim.scenarios import COMPOSITE_SEPARATOR, Scenario, UnknownScenarioError, get_scenario


class ScheduleKind(enum.Enum):
    ABRUPT = "abrupt"  # full severity from the onset frame on
    GRADUAL = "gradual"  # severity ramps linearly from 0 to 1 over `ramp` frames
    RECURRING = "recurring"  # on for half of every `period` frames, off for the other half


@dataclass(frozen=True)
class DriftSchedule:
    kind: ScheduleKind = ScheduleKind.ABRUPT
    onset: int = 0  # first frame index the drift can show in
    ramp: int = 100  # GRADUAL: frames from onset to full severity
    period: int = 200  # RECURRING: frames in one on+off cycle

    def __post_init__(self) -> None:
        if self.onset < 0:
            raise ValueError(f"onset {self.onset} must be >= 0")
        if self.kind is ScheduleKind.GRADUAL and self.ramp < 1:
            raise ValueError(f"ramp {self.ramp} must be >= 1 for a gradual drift")
        if self.kind is ScheduleKind.RECURRING and self.period < 2:
            raise ValueError(f"period {self.period} must be >= 2 for a recurring drift")

    def severity(self, frame: int) -> float:
        """How far the drift has gone at `frame`: 0 (baseline) to 1 (the full scenario)."""
        if frame < self.onset:
            return 0.0
        since = frame - self.onset
        if self.kind is ScheduleKind.GRADUAL:
            return min(1.0, (since + 1) / self.ramp)
        if self.kind is ScheduleKind.RECURRING:
            return 1.0 if since % self.period < self.period // 2 else 0.0
        return 1.0


@dataclass(frozen=True)
class Frame:
    index: int
    image: np.ndarray  # BGR uint8
    truth: GroundTruth
    scenario: str
    severity: float


def frame_rng(seed: int, stream: str, index: int) -> np.random.Generator:
    """The generator for one frame: the same (seed, stream, index) always renders the same frame."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode()), index])


def stream(
    scenario: str | Scenario = "baseline",
    *,
    seed: int = 0,
    width: int = 320,
    schedule: DriftSchedule | None = None,
    start: int = 0,
    frames: int | None = None,
    name: str = "stream",
) -> Iterator[Frame]:
    """Yield frames from `start` on (endlessly unless `frames` is given) as the line runs.

    Without a schedule the scenario holds from the first frame. `name` separates streams
    (one per device, say) that share a seed.
    """
    target = scenario if isinstance(scenario, Scenario) else get_scenario(scenario)
    schedule = schedule or DriftSchedule()
    index = start
    while frames is None or index < start + frames:
        severity = schedule.severity(index)
        conditions = BASELINE.toward(target.conditions, severity)
        image, truth = render_frame(frame_rng(seed, name, index), conditions, width)
        yield Frame(index, image, truth, target.name, severity)
        index += 1


class StreamSpecError(ValueError):
    """A layered drift spec that does not parse or names an unknown scenario."""


@dataclass(frozen=True)
class Layer:
    scenario: str
    onset: int  # first frame index the scenario shows in, at full severity (an abrupt drift)


_LAYER = re.compile(r"(?P<scenario>[^@,]+)(?:@(?P<onset>-?\d+))?")


def parse_layers(spec: str) -> tuple[Layer, ...]:
    """Layers from "SCENARIO[@ONSET][,SCENARIO@ONSET...]"; without @ a layer holds from frame 0."""
    layers = []
    for item in spec.split(","):
        match = _LAYER.fullmatch(item)
        if match is None:
            raise StreamSpecError(f"layer {item!r} of {spec!r} is not SCENARIO[@ONSET]")
        onset = int(match["onset"] or 0)
        if onset < 0:
            raise StreamSpecError(f"layer {item!r} of {spec!r}: onset {onset} must be >= 0")
        try:
            get_scenario(match["scenario"])
        except UnknownScenarioError as error:
            raise StreamSpecError(f"layer {item!r} of {spec!r}: {error}") from None
        layers.append(Layer(match["scenario"], onset))
    return tuple(layers)


def active_scenario(layers: tuple[Layer, ...], index: int) -> str:
    """The composite name of the layers that have arrived by frame `index`, in spec order."""
    active: list[str] = []
    for layer in layers:
        if layer.onset <= index and layer.scenario != "baseline" and layer.scenario not in active:
            active.append(layer.scenario)
    return COMPOSITE_SEPARATOR.join(active) or "baseline"


def layered_stream(
    layers: tuple[Layer, ...],
    *,
    seed: int = 0,
    width: int = 320,
    name: str = "stream",
    start: int = 0,
    frames: int | None = None,
) -> Iterator[Frame]:
    """Yield frames from `start` on as the layers arrive.

    Frame i is pixel for pixel frame i of `stream(active_scenario(layers, i))`: the simulated
    annotator finds a frame's truth by rendering those streams again.
    """
    index = start
    while frames is None or index < start + frames:
        scenario = active_scenario(layers, index)
        # toward(..., 1.0) as stream() does: its float arithmetic decides the pixels
        conditions = BASELINE.toward(get_scenario(scenario).conditions, 1.0)
        image, truth = render_frame(frame_rng(seed, name, index), conditions, width)
        yield Frame(index, image, truth, scenario, 0.0 if scenario == "baseline" else 1.0)
        index += 1


def camera_frames(spec: str, *, seed: int, width: int,
                  name: str) -> Iterator[tuple[str, np.ndarray]]:
    """The synthetic line as a device's camera, for the `sim:` frame source (registered through
    the `edgeloop.frame_sources` entry point): (frame index, BGR image) pairs of the layered
    stream `spec`. A bad spec raises `StreamSpecError` before the first frame."""
    layers = parse_layers(spec)

    def frames() -> Iterator[tuple[str, np.ndarray]]:
        for frame in layered_stream(layers, seed=seed, width=width, name=name):
            yield str(frame.index), frame.image

    return frames()
