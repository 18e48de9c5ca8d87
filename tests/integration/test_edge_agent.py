"""The agent loop with the seed model: the monitor runs on its own thread behind inference."""

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.agent import Agent, Monitor
from edge_runtime.detector import Detector
from edge_runtime.outbox.spool import Spool
from edge_runtime.outbox.writer import SpoolWriter
from edge_runtime.sampling.config import load_sampling_config
from edge_runtime.sampling.frame import FrameView, SampleDecision
from edge_runtime.sampling.sampler import build_sampler
from edge_runtime.sources import open_source
from edge_runtime.telemetry import UncertaintyBand
from tests.support.paths import ROOT

pytestmark = pytest.mark.slow


class SamplerBroke(Exception):
    pass


def agent(seed_model: Path, spool: Spool) -> Agent:
    config = load_sampling_config(ROOT / "configs/sampling.yaml")
    sampler = build_sampler(config, np.random.default_rng(0))
    monitor = Monitor(sampler, SpoolWriter(spool), device_id="cam-1", band=UncertaintyBand())
    return Agent(Detector(seed_model, imgsz=320), monitor, spool)


def test_every_frame_inferred_is_monitored_in_order_before_run_returns(
        seed_model: Path, tmp_path: Path) -> None:
    with Spool(tmp_path / "spool.sqlite") as spool:
        loop = agent(seed_model, spool)
        progress = loop.run(open_source("sim:dusk", sim_width=320, sim_name="cam-1"), max_frames=40)
        loop.monitor.writer.close()
        records = [stats for _, stats in spool.pending_telemetry(100)]
        ids = [r.frame_id for r in records]
        assert ids == list(range(ids[0], ids[0] + 40))  # every frame, in the order inferred
        assert progress.frames == 40 and progress.monitor_ms_p50 > 0
        assert progress.kept == loop.kept == len(spool.pending_samples(100)) > 0


def test_an_error_in_the_monitor_thread_stops_the_loop_with_that_error(
        seed_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Spool(tmp_path / "spool.sqlite") as spool:
        loop = agent(seed_model, spool)
        seen: list[int] = []

        def decide(view: FrameView, at: object) -> SampleDecision | None:
            seen.append(1)
            if len(seen) == 3:
                raise SamplerBroke("the sampler broke on frame 3")
            return None

        monkeypatch.setattr(loop.monitor.sampler, "decide", decide)
        with pytest.raises(SamplerBroke, match="frame 3"):
            loop.run(open_source("sim:baseline", sim_width=320, sim_name="cam-1"), max_frames=500)
        assert loop.frames < 500  # stopped at the error, not at the end of the source
        loop.monitor.writer.close()
