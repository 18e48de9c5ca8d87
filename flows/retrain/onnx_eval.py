"""Accuracy and latency of an exported ONNX model on YOLO-format folders, measured through the
device's own detector (its letterbox, decoding and NMS), so the gate scores what ships."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_runtime.detector import Detector
from flows.retrain.detection_metrics import DetectionScores, ImageResult, detection_metrics

EVAL_CONF = 0.001  # as Ultralytics' val: keep low-score boxes, the PR curve needs them
EVAL_IOU = 0.7
EVAL_MAX_DET = 300
WARMUP_FRAMES = 2  # runs before timing starts: ONNX Runtime allocates on its first calls
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

Progress = Callable[[int], None]  # called with 1 per image evaluated, as click's bar.update


class EvalDataError(ValueError):
    """A dataset folder that cannot be evaluated (the message names the file and why)."""


@dataclass(frozen=True)
class LatencyStats:
    """Per-frame milliseconds over the timed frames."""

    mean_ms: float
    p50_ms: float
    p95_ms: float

    @classmethod
    def of(cls, samples_ms: list[float]) -> LatencyStats:
        values = np.asarray(samples_ms, np.float64)
        return cls(float(values.mean()), float(np.percentile(values, 50)),
                   float(np.percentile(values, 95)))

    def as_dict(self) -> dict[str, float]:
        return {"mean_ms": self.mean_ms, "p50_ms": self.p50_ms, "p95_ms": self.p95_ms}


@dataclass(frozen=True)
class EvalResult:
    """One model on one folder: detection scores and what a frame cost."""

    scores: DetectionScores
    infer: LatencyStats  # the ONNX Runtime call alone
    # letterbox + inference + decode/NMS; at EVAL_CONF NMS sees far more candidates than at the
    # device's own threshold, so post-processing (and this) reads high on uncertain data
    total: LatencyStats
    imgsz: tuple[int, int]  # (height, width) the detector letterboxes to
    model_version: str  # from the model's metadata, else a prefix of its sha256

    def as_dict(self) -> dict[str, Any]:
        return {**self.scores.as_dict(), "latency": {"infer": self.infer.as_dict(),
                                                      "total": self.total.as_dict()},
                "imgsz": list(self.imgsz), "model_version": self.model_version}


def list_images(folder: Path) -> list[Path]:
    """The images of a YOLO dataset folder (`folder/images`), in name order."""
    if not folder.is_dir():
        raise EvalDataError(f"dataset folder {folder} does not exist")
    images = folder / "images"
    found = sorted(p for p in images.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise EvalDataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images}")
    return found


def _label_row(path: Path, number: int, line: str, classes: int) -> tuple[int, np.ndarray]:
    fields = line.split()
    where = f"{path}:{number}"
    if len(fields) != 5:
        raise EvalDataError(f"{where}: expected 'class cx cy w h', got {line.strip()!r}")
    try:
        cls, values = int(fields[0]), np.array([float(v) for v in fields[1:]])
    except ValueError as error:
        raise EvalDataError(f"{where}: not numbers: {line.strip()!r}") from error
    if not 0 <= cls < classes:
        raise EvalDataError(f"{where}: class {cls} is not one of the model's {classes} classes")
    if not (np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()):
        raise EvalDataError(f"{where}: box {fields[1:]} is not normalised to 0..1")
    return cls, values


def read_labels(path: Path, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A YOLO label file as (m, 4) normalised cx, cy, w, h and (m,) class ids; no file = no
    objects (a negative image)."""
    if not path.is_file():
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    rows = [_label_row(path, n, line, classes)
            for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    if not rows:
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    return np.stack([values for _, values in rows]), np.array([c for c, _ in rows], np.int64)


def pixel_boxes(cxcywh: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised centre/size rows as (x1, y1, x2, y2) pixel corners on a width x height image."""
    scaled = cxcywh * [width, height, width, height]
    half = scaled[:, 2:] / 2
    return np.concatenate([scaled[:, :2] - half, scaled[:, :2] + half], axis=1)


def _read_truth(folder: Path, paths: list[Path], classes: int
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every image's labels, all checked before any inference time is spent."""
    truth = [read_labels(folder / "labels" / f"{path.stem}.txt", classes) for path in paths]
    if not any(len(ids) for _, ids in truth):
        raise EvalDataError(f"{folder}: no labelled objects in {len(paths)} images, so no mAP "
                            "to measure")
    return truth


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EvalDataError(f"cannot read image {path}")
    return image


def open_detector(model_path: Path, imgsz: int | None = None, threads: int = 0) -> Detector:
    """The device's detector with Ultralytics' validation thresholds (not its predict ones)."""
    return Detector(model_path, imgsz=imgsz, conf=EVAL_CONF, iou=EVAL_IOU,
                    max_det=EVAL_MAX_DET, threads=threads)


def evaluate_folder(detector: Detector, folder: Path, progress: Progress | None = None
                    ) -> EvalResult:
    """Run `detector` on every image of `folder` and score it against `folder/labels`.

    The first image is run WARMUP_FRAMES extra times, untimed, so every image is both scored
    and timed.
    """
    paths = list_images(folder)
    truth = _read_truth(folder, paths, len(detector.info.names))
    for _ in range(WARMUP_FRAMES):
        detector(_read_image(paths[0]))
    results, infer_ms, total_ms = [], [], []
    for path, (rows, classes) in zip(paths, truth, strict=True):
        image = _read_image(path)
        run = detector(image)
        found = run.detections
        results.append(ImageResult(found.boxes, found.scores, found.classes,
                                   pixel_boxes(rows, image.shape[1], image.shape[0]), classes))
        infer_ms.append(run.infer_ms)
        total_ms.append(run.pre_ms + run.infer_ms + run.post_ms)
        if progress:
            progress(1)
    return EvalResult(detection_metrics(results, detector.info.names), LatencyStats.of(infer_ms),
                      LatencyStats.of(total_ms), detector.info.imgsz, detector.info.version)


def evaluate_onnx(model_path: Path, folder: Path, *, imgsz: int | None = None, threads: int = 0,
                  progress: Progress | None = None) -> EvalResult:
    """Score one ONNX model on one YOLO dataset folder; `imgsz` None = the model's own."""
    list_images(folder)  # a bad folder is refused before the model is loaded
    return evaluate_folder(open_detector(model_path, imgsz, threads), folder, progress)


def evaluate_slices(model_path: Path, slices: Mapping[str, Path], *, imgsz: int | None = None,
                    threads: int = 0, progress: Progress | None = None) -> dict[str, EvalResult]:
    """Score one ONNX model on several named folders (e.g. drift slice and regression set)."""
    for folder in slices.values():
        list_images(folder)  # every folder checked before the first one costs inference time
    detector = open_detector(model_path, imgsz, threads)
    return {name: evaluate_folder(detector, folder, progress) for name, folder in slices.items()}


def paired_latency(models: Mapping[str, Path], images: Sequence[Path], *,
                   imgsz: int | None = None, threads: int = 0) -> dict[str, LatencyStats]:
    """Inference time of several ONNX files on the same images, interleaved: each image through
    every file in turn, the order rotating, so a load that comes and goes on a shared machine
    (devices streaming beside the retrain) weighs on all of them alike. Timed one after the
    other instead, their ratio moves with the load."""
    detectors = {name: open_detector(path, imgsz, threads) for name, path in models.items()}
    names = list(detectors)
    frames = [_read_image(path) for path in images]
    for detector in detectors.values():
        for _ in range(WARMUP_FRAMES):
            detector(frames[0])
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i, image in enumerate(frames):
        for name in names[i % len(names):] + names[:i % len(names)]:
            samples[name].append(detectors[name](image).infer_ms)
    return {name: LatencyStats.of(times) for name, times in samples.items()}


def count_images(slices: Mapping[str, Path]) -> int:
    """How many images `evaluate_slices` will score: the length for a progress bar."""
    return sum(len(list_images(folder)) for folder in slices.values())
