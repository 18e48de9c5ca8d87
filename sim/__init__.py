"""The synthetic production line: conveyor-belt frames with exact ground truth and named drift."""

from sim.conditions import BASELINE, Conditions
from sim.parts import CLASS_NAMES
from sim.render import GroundTruth, render_frame
from sim.scenarios import SCENARIOS, Scenario, UnknownScenarioError, get_scenario
from sim.stream import DriftSchedule, Frame, ScheduleKind, stream

__all__ = [
    "BASELINE",
    "CLASS_NAMES",
    "SCENARIOS",
    "Conditions",
    "DriftSchedule",
    "Frame",
    "GroundTruth",
    "Scenario",
    "ScheduleKind",
    "UnknownScenarioError",
    "get_scenario",
    "render_frame",
    "stream",
]
