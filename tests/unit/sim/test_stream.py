"""The frame stream: drift schedules, replayable streams, and layered drift specs (scenarios
arriving each at its own frame, the frames pixel for pixel those of the plain stream of the
scenario active at each index)."""

import itertools

import numpy as np
import pytest

from sim import DriftSchedule, ScheduleKind, stream
from sim.stream import (
    Layer,
    StreamSpecError,
    active_scenario,
    layered_stream,
    parse_layers,
)


def test_abrupt_drift_switches_at_onset():
    s = DriftSchedule(ScheduleKind.ABRUPT, onset=10)
    assert [s.severity(i) for i in (0, 9, 10, 500)] == [0.0, 0.0, 1.0, 1.0]


def test_gradual_drift_ramps_linearly():
    s = DriftSchedule(ScheduleKind.GRADUAL, onset=10, ramp=4)
    assert [s.severity(i) for i in (9, 10, 11, 12, 13, 50)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_recurring_drift_comes_and_goes():
    s = DriftSchedule(ScheduleKind.RECURRING, onset=0, period=4)
    assert [s.severity(i) for i in range(8)] == [1, 1, 0, 0, 1, 1, 0, 0]


@pytest.mark.parametrize("kwargs", [{"onset": -1},
                                    {"kind": ScheduleKind.GRADUAL, "ramp": 0},
                                    {"kind": ScheduleKind.RECURRING, "period": 1}])
def test_bad_schedules_are_refused(kwargs):
    with pytest.raises(ValueError):
        DriftSchedule(**kwargs)


def test_stream_applies_the_schedule_and_is_replayable():
    schedule = DriftSchedule(ScheduleKind.ABRUPT, onset=2)
    first = list(stream("dusk", seed=1, width=128, schedule=schedule, frames=4))
    assert [f.severity for f in first] == [0.0, 0.0, 1.0, 1.0]
    assert first[3].image.mean() < first[1].image.mean()
    again = next(stream("dusk", seed=1, width=128, schedule=schedule, start=3, frames=1))
    assert np.array_equal(again.image, first[3].image)


def test_stream_without_frame_count_keeps_going():
    frames = list(itertools.islice(stream("baseline", seed=0, width=96), 3))
    assert [f.index for f in frames] == [0, 1, 2]


def test_devices_sharing_a_seed_see_different_frames():
    a = next(stream(seed=0, width=128, name="dev-a"))
    b = next(stream(seed=0, width=128, name="dev-b"))
    assert not np.array_equal(a.image, b.image)


@pytest.mark.parametrize(("spec", "layers"), [
    ("baseline", (Layer("baseline", 0),)),
    ("new_variant@600", (Layer("new_variant", 600),)),
    ("new_variant@600,camera_bump@300", (Layer("new_variant", 600), Layer("camera_bump", 300))),
    ("dusk,line_speedup@0", (Layer("dusk", 0), Layer("line_speedup", 0))),
    ("new_variant+camera_bump@7", (Layer("new_variant+camera_bump", 7),)),
])
def test_good_specs_parse_into_layers(spec, layers):
    assert parse_layers(spec) == layers


@pytest.mark.parametrize(("spec", "offending"), [
    ("", "''"),
    ("new_variant@", "'new_variant@'"),
    ("new_variant@1.5", "'new_variant@1.5'"),
    ("@10", "'@10'"),
    ("new_variant@600,", "''"),
    ("new_variant@-5", "onset -5"),
    ("new_variant@600,fog@10", "'fog'"),
])
def test_bad_specs_are_refused_naming_the_offending_text(spec, offending):
    with pytest.raises(StreamSpecError, match=offending):
        parse_layers(spec)


def test_active_scenario_follows_the_onsets_in_spec_order():
    layers = parse_layers("new_variant@600,camera_bump@300,baseline@100")
    assert [active_scenario(layers, i) for i in (0, 299, 300, 599, 600, 10_000)] == [
        "baseline", "baseline", "camera_bump", "camera_bump", "new_variant+camera_bump",
        "new_variant+camera_bump"]


def test_layered_frames_equal_the_active_scenarios_stream_frames():
    layers = parse_layers("new_variant@3,camera_bump@2")
    frames = list(layered_stream(layers, seed=4, width=96, name="dev-a", frames=5))
    assert [(f.index, f.scenario, f.severity) for f in frames] == [
        (0, "baseline", 0.0), (1, "baseline", 0.0), (2, "camera_bump", 1.0),
        (3, "new_variant+camera_bump", 1.0), (4, "new_variant+camera_bump", 1.0)]
    for index in (1, 2, 3, 4):
        plain = next(stream(frames[index].scenario, seed=4, width=96, name="dev-a",
                            start=index, frames=1))
        assert np.array_equal(frames[index].image, plain.image)
        assert np.array_equal(frames[index].truth.boxes, plain.truth.boxes)
    assert not np.array_equal(frames[1].image, frames[2].image)


def test_layered_stream_can_start_midway():
    layers = parse_layers("dusk@10")
    late = next(layered_stream(layers, seed=1, width=96, start=12, frames=1))
    assert (late.index, late.scenario) == (12, "dusk")
    plain = next(stream("dusk", seed=1, width=96, start=12, frames=1))
    assert np.array_equal(late.image, plain.image)
