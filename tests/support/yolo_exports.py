"""Tiny untrained YOLO detectors built from Ultralytics' architecture YAMLs (no weights are
downloaded), with a team's own classes, and their ONNX exports in each of Ultralytics' layouts."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def untrained_yolo(architecture: str, names: Sequence[str], work: Path,
                   frames: Sequence[np.ndarray], seed: int = 0) -> Any:
    """A YOLO model of `architecture` (e.g. "yolo26n.yaml") for `names`, weights drawn from
    `seed`. Its BatchNorm statistics are taken from `frames` (BGR uint8, any size): with the
    initial ones a random network's features shrink to ~1e-9 by the head, every anchor scores
    the same prior and the order of detections is arbitrary; calibrated, scores spread out."""
    import torch
    import yaml
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    spec = yaml_model_load(architecture)  # Ultralytics' own packaged YAML, its scale by name
    spec["nc"] = len(names)
    spec.pop("yaml_file", None)
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / architecture  # exports are written beside it, never in the working directory
    cfg.write_text(yaml.safe_dump(spec))
    torch.manual_seed(seed)
    model = YOLO(str(cfg), task="detect")
    model.model.names = dict(enumerate(names))
    batch = torch.stack([torch.from_numpy(np.ascontiguousarray(
        _square(image)[..., ::-1].transpose(2, 0, 1))).float() / 255 for image in frames])
    for module in model.model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 1.0  # running statistics := this batch's
    model.model.train()
    with torch.no_grad():
        model.model(batch)
    model.model.eval()
    return model


def _square(image: np.ndarray, size: int = 320) -> np.ndarray:
    import cv2

    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def export_onnx(model: Any, out: Path, *, imgsz: int, nms: bool | None, dynamic: bool,
                conf: float = 0.001) -> Path:
    """`model` exported to ONNX at `out`: `nms=None` the raw head, `True` NMS inside (at `conf`),
    `False` the end-to-end head where the model has one (YOLO26)."""
    written = model.export(format="onnx", imgsz=imgsz, nms=nms, dynamic=dynamic, conf=conf,
                           device="cpu", verbose=False)
    shutil.move(written, out)
    return out
