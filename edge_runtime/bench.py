"""Measures the agent on this device: inference, the monitoring step, and the pipelined loop.

A device keeps a few hundred frames an hour (the packaged `sampling.yaml`): within its first
minutes every policy whose rule fires has spent its hourly budget, and from then on it keeps a
frame only when the hour's window frees one. The bench measures that steady state: before
timing, frames run until a budget is spent. `steady=False` times the first frames of an hour
instead, when every budget is open (kept frames are JPEG-encoded on the spool writer's thread).

The pipelined loop runs `runs` times, each over `frames` frames, and each run's fps is
compared with the inference p50 timed in that run: a shared VM's speed drifts by several per
cent within seconds, so one run says little. The median run is reported, with every run's
figure beside it.
"""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path

import numpy as np

from edge_runtime.agent import Agent, Monitor
from edge_runtime.detector import Detector
from edge_runtime.device import Device, DeviceSettings
from edge_runtime.outbox.spool import Spool
from edge_runtime.sampling.config import load_sampling_config
from edge_runtime.sampling.sampler import Sampler
from edge_runtime.sources import CapturedFrame, SourceError, open_source

WARMUP = 20  # ONNX Runtime needs this many runs before its timings settle
MAX_IMAGES = 100  # frames read from the source before timing, then cycled
MAX_SPEND_FRAMES = 2000  # the most frames run to spend the sampler's budgets
IDLE_FRAMES = 200  # no frame kept for this long: no rule fires on these frames, nothing to spend


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 4)


def _over_budget(sampler: Sampler) -> int:
    return sum(sampler.counters().over_budget.values())


def run_bench(model: Path, *, imgsz: int, frames: int, threads: int, spool_dir: Path,
              sampling_path: Path | None = None, steady: bool = True, runs: int = 5,
              source: str = "sim:baseline") -> dict[str, object]:
    """The figures of `model` on the frames of `source` (see edge_runtime.sources; the first
    MAX_IMAGES of them, read before timing starts and cycled)."""
    device = Device(DeviceSettings(
        sampling=load_sampling_config(sampling_path, project=Path.cwd()), device_id="bench",
        model=model, imgsz=imgsz, threads=threads, spool_dir=spool_dir, seed=0))
    detector, monitor, spool, agent = device.detector, device.monitor, device.spool, device.agent
    sampler = device.sampler
    # Read before timing starts (the simulator renders at the network's width).
    images = list(itertools.islice(open_source(source, sim_width=imgsz, sim_name="bench"),
                                   min(frames, MAX_IMAGES)))
    if not images:
        device.close()
        raise SourceError(f"frame source {source!r} gave no frames")
    warmup = last_kept = 0
    while warmup < WARMUP or (steady and warmup < MAX_SPEND_FRAMES and not _over_budget(sampler)
                              and warmup - last_kept < IDLE_FRAMES):
        if agent.step(images[warmup % len(images)]).result.kept:
            last_kept = warmup
        warmup += 1
    infer_ms, monitor_ms, kept = [], [], 0
    for i in range(frames):
        step = agent.step(images[(warmup + i) % len(images)])
        infer_ms.append(step.infer_ms)
        monitor_ms.append(step.monitor_ms)
        kept += step.result.kept
    loops, alone = [], []
    for _ in range(runs):  # interleaved: both see the same drift of this machine's speed
        alone.append(_inference_alone_pct(detector, images, frames))
        loops.append(_pipelined_fps(detector, monitor, spool, images, frames))
    ratios = [_pct_of_inference(fps, loop_p50) for fps, _, loop_p50 in loops]
    fps, _, loop_infer_p50 = loops[ratios.index(statistics.median_low(ratios))]
    device.close()
    infer_p50, monitor_p50 = float(np.median(infer_ms)), float(np.median(monitor_ms))
    return {
        "imgsz": imgsz,
        "frames": frames,
        "source": source,
        "provider": detector.info.providers[0],
        "frame_size": f"{images[0].image.shape[1]}x{images[0].image.shape[0]}",
        "sampler": "steady" if steady else "burst",
        "warmup_frames": warmup,
        "kept_frames": kept + sum(n for _, n, _ in loops),
        "infer_ms_p50": round(infer_p50, 4),
        "infer_ms_p90": _percentile(infer_ms, 90),
        "monitor_ms_p50": round(monitor_p50, 4),
        "monitor_ms_p90": _percentile(monitor_ms, 90),
        "monitor_overhead_pct": round(100 * monitor_p50 / infer_p50, 3),
        "fps": round(fps, 2),
        # The median of `runs` runs of the loop, each against the inference p50 timed in it.
        "loop_infer_ms_p50": round(loop_infer_p50, 4),
        "fps_vs_inference_pct": round(statistics.median_low(ratios), 1),
        "fps_vs_inference_pct_runs": [round(r, 1) for r in ratios],
        # The same measure for inference alone (no capture thread, monitor or spool): what this
        # machine's timing noise leaves of 100% before the agent adds anything.
        "inference_alone_pct": round(statistics.median_low(alone), 1),
        "inference_alone_pct_runs": [round(r, 1) for r in alone],
    }


def _inference_alone_pct(detector: Detector, images: list[CapturedFrame], frames: int
                         ) -> float:
    """Frames per second of the detector alone, in a plain loop on this thread, against 1000 /
    its own inference p50 (timed as the agent times it: without the thumbnail)."""
    infer_ms = []
    start = time.perf_counter()
    for i in range(frames):
        t0 = time.perf_counter()
        inference = detector(images[i % len(images)].image)
        infer_ms.append(1000 * (time.perf_counter() - t0) - inference.thumb_ms)
    return _pct_of_inference(frames / (time.perf_counter() - start), statistics.median(infer_ms))


def _pct_of_inference(fps: float, infer_ms_p50: float) -> float:
    """Frames per second as a share of 1000 / the inference p50 (the throughput target)."""
    return fps * infer_ms_p50 / 10


def _pipelined_fps(detector: Detector, monitor: Monitor, spool: Spool,
                   images: list[CapturedFrame], frames: int) -> tuple[float, int, float]:
    """Frames per second of the whole agent loop (capture thread, inference, monitor, spool),
    the frames the sampler kept meanwhile, and the loop's own inference p50 (ms)."""
    agent = Agent(detector, monitor, spool)
    looped = (images[i % len(images)] for i in range(frames))
    start = time.perf_counter()
    progress = agent.run(looped, max_frames=frames)
    return frames / (time.perf_counter() - start), agent.kept, progress.infer_ms_p50
