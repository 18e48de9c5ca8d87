"""ONNX Runtime's optimised-model cache: a release's model optimised once, kept by its sha256."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import onnxruntime as ort

from edge_runtime.detector import Detector
from edge_runtime.update.policy import (
    MODEL_FILE,
)
from edge_runtime.update.slots import (
    fsync_dir,
)


def optimized_model(model: Path, sha256: str, cache_root: Path) -> Path:
    """ONNX Runtime's optimised copy of `model`, made once, under a folder named by its hash.

    The key is the hash of the source model, never its path: a slot that receives a new model
    can never be served a stale optimised file. Basic (provider-independent) optimisations only;
    the session applies the rest when it loads.
    """
    final = cache_root / sha256
    if (final / MODEL_FILE).is_file():
        return final / MODEL_FILE
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = cache_root / f".{sha256}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp / MODEL_FILE)
    ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    with (tmp / MODEL_FILE).open("rb") as f:
        os.fsync(f.fileno())
    try:
        os.rename(tmp, final)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(cache_root)
    return final / MODEL_FILE


def prune_cache(cache_root: Path, keep: Iterable[str]) -> None:
    """Drop optimised models of files no slot holds, and interrupted ones."""
    if not cache_root.is_dir():
        return
    kept = set(keep)
    for entry in cache_root.iterdir():
        if entry.name not in kept:
            shutil.rmtree(entry, ignore_errors=True)


def open_detector(model: Path, sha256: str, cache_root: Path, *, threads: int = 0,
                  conf: float = 0.25, iou: float = 0.7) -> Detector:
    """A Detector on the cached optimised copy, reporting the source model's path and version."""
    detector = Detector(optimized_model(model, sha256, cache_root), threads=threads, conf=conf,
                        iou=iou)
    meta = detector.session.get_modelmeta().custom_metadata_map
    detector.info = replace(detector.info, path=model,
                            version=meta.get("edgeloop_version") or sha256[:12])
    return detector


