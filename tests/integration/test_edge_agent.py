"""The agent loop with the seed model: the monitor runs on its own thread behind inference."""

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edge_runtime.device import Device, DeviceSettings
from edge_runtime.sampling.config import load_sampling_config
from edge_runtime.sampling.frame import FrameView, SampleDecision

pytestmark = pytest.mark.slow


class SamplerBroke(Exception):
    pass


@pytest.fixture
def settings(seed_model: Path, tmp_path: Path) -> DeviceSettings:
    return DeviceSettings(sampling=load_sampling_config(), device_id="cam-1", model=seed_model,
                          imgsz=320, source="sim:dusk", spool_dir=tmp_path, seed=0)


@pytest.fixture
def device(settings: DeviceSettings) -> Iterator[Device]:
    with Device(settings) as device:
        yield device


def test_every_frame_inferred_is_monitored_in_order_before_run_returns(device: Device) -> None:
    progress = device.run(max_frames=40)
    device.writer.close()
    records = [stats for _, stats in device.spool.pending_telemetry(100)]
    ids = [r.frame_id for r in records]
    assert ids == list(range(ids[0], ids[0] + 40))  # every frame, in the order inferred
    assert progress.frames == 40 and progress.monitor_ms_p50 > 0
    assert progress.kept == device.agent.kept == len(device.spool.pending_samples(100)) > 0


def test_an_error_in_the_monitor_thread_stops_the_loop_with_that_error(
        settings: DeviceSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    with Device(replace(settings, source="sim:baseline")) as device:
        seen: list[int] = []

        def decide(view: FrameView, at: object) -> SampleDecision | None:
            seen.append(1)
            if len(seen) == 3:
                raise SamplerBroke("the sampler broke on frame 3")
            return None

        monkeypatch.setattr(device.monitor.sampler, "decide", decide)
        with pytest.raises(SamplerBroke, match="frame 3"):
            device.run(max_frames=500)
        assert device.agent.frames < 500  # stopped at the error, not at the end of the source
