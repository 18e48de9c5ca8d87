import itertools

import numpy as np
import pytest

from sim import DriftSchedule, ScheduleKind, stream


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
