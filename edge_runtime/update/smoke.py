"""A model on frames: one live frame's numbers, and the smoke test a staged release must pass."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_runtime.detector import Detector, InputSizeError, ModelLoadError
from edge_runtime.update.cache import open_detector
from edge_runtime.update.policy import (
    LiveFrame,
    SmokeBudget,
    SmokeRun,
)


def run_frame(detector: Detector, image: np.ndarray) -> LiveFrame:
    """One frame through the network, timed, with its raw outputs checked for NaN."""
    try:
        prepared = detector.prepare(image)
        feed = {detector.session.get_inputs()[0].name: prepared.tensor}
        t0 = time.perf_counter()
        outputs = detector.session.run(None, feed)
        latency = (time.perf_counter() - t0) * 1000
        finite = all(bool(np.isfinite(np.asarray(o)).all()) for o in outputs)
        found = len(detector.decode(outputs[0], prepared.letterbox)) if finite else 0
    except Exception as error:  # a model that fails on a frame is what the checks look for
        return LiveFrame(0, 0.0, error=f"{type(error).__name__}: {error}"[:200])
    return LiveFrame(found, latency, finite)


def smoke_test(model: Path, sha256: str, frames: Sequence[np.ndarray], budget: SmokeBudget,
               cache_root: Path, *, threads: int = 0, conf: float = 0.25, iou: float = 0.7
               ) -> SmokeRun:
    """Load the staged model and run it on a few cached frames (judged by judge_smoke)."""
    try:
        detector = open_detector(model, sha256, cache_root, threads=threads, conf=conf, iou=iou)
    except (ModelLoadError, InputSizeError) as error:
        return SmokeRun(load_error=str(error))
    except Exception as error:  # ORT raises untyped errors for graphs it cannot optimise
        return SmokeRun(load_error=f"{type(error).__name__}: {str(error).splitlines()[0]}")
    runs = [run_frame(detector, image) for image in frames[:budget.frames]]
    return SmokeRun(
        classes=detector.info.names,
        imgsz=detector.info.imgsz[0],
        latencies_ms=tuple(r.latency_ms for r in runs if r.error is None),
        nonfinite_frames=sum(not r.finite for r in runs if r.error is None),
        run_errors=tuple(r.error for r in runs if r.error is not None),
    )


def live_frame_of(detections: int, infer_ms: float, boxes: np.ndarray,
                  embedding: np.ndarray | None = None) -> LiveFrame:
    """What the agent hands the health check from its own Inference of a frame."""
    finite = bool(np.isfinite(boxes).all()) and (embedding is None
                                                 or bool(np.isfinite(embedding).all()))
    return LiveFrame(detections, infer_ms, finite)


