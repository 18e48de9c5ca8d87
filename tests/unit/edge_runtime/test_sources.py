"""A source paced to a camera's frame rate, and the simulator's layered drift specs as a source."""

import time
from datetime import UTC, datetime

import numpy as np
import pytest

from edge_runtime.sources import CapturedFrame, SourceError, open_source, paced
from sim.stream import stream


def captured(count: int) -> list[CapturedFrame]:
    return [CapturedFrame(np.zeros((4, 4, 3), np.uint8), datetime.now(UTC), str(i))
            for i in range(count)]


def test_paced_source_yields_every_frame_in_order_at_most_at_the_rate():
    started = time.monotonic()
    names = [f.name for f in paced(iter(captured(10)), 50.0)]
    elapsed = time.monotonic() - started
    assert names == [str(i) for i in range(10)]
    assert elapsed >= 0.17  # nine intervals of 20 ms after the first frame


def test_slow_consumer_gets_no_burst_of_frames_to_catch_up():
    frames = paced(iter(captured(3)), 20.0)
    next(frames)
    time.sleep(0.2)  # four intervals late
    next(frames)
    after_late = time.monotonic()
    next(frames)
    assert time.monotonic() - after_late >= 0.045


def test_paced_refuses_a_rate_of_zero():
    with pytest.raises(ValueError, match="fps 0"):
        next(paced(iter(captured(1)), 0))


@pytest.mark.parametrize(("spec", "offending"), [
    ("sim:fog", "'fog'"), ("sim:new_variant@-3", "onset -3"), ("sim:dusk@x", "'dusk@x'")])
def test_bad_sim_spec_is_refused_up_front(spec, offending):
    with pytest.raises(SourceError, match=offending):
        open_source(spec)


def test_single_scenario_sim_source_streams_as_before():
    frames = open_source("sim:new_variant", sim_width=96, sim_name="dev-b")
    first = [next(frames) for _ in range(2)]
    plain = list(stream("new_variant", width=96, name="dev-b", frames=2))
    assert [f.name for f in first] == ["0", "1"]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, plain, strict=True))


def test_layered_sim_source_switches_at_the_onset():
    frames = open_source("sim:dusk@1", sim_width=96, sim_name="dev-c")
    before, after = next(frames), next(frames)
    assert np.array_equal(before.image, next(stream("baseline", width=96, name="dev-c")).image)
    assert np.array_equal(after.image, next(stream("dusk", width=96, name="dev-c", start=1)).image)
