"""Detection accuracy (mAP50, mAP50-95, AP per class) from boxes, computed as Ultralytics' val.

Pure numpy, no I/O: predictions are matched to ground truth per image at IoU 0.50:0.95:0.05
(greedily, best score first, each object taken once), then AP is the area under the 101-point
interpolated precision envelope, per class, averaged over the classes that have ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO's ten, as Ultralytics' `iouv`
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's 101-point interpolation
IOU_EPS = 1e-7  # as Ultralytics' box_iou: zero-area boxes give IoU 0, not NaN
RECALL_EPS = 1e-16  # as Ultralytics' ap_per_class
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


class NoGroundTruthError(ValueError):
    """The results hold no ground-truth object at all, so no AP is defined."""


class DetectionInputError(ValueError):
    """An image's arrays have the wrong shapes or a class id outside the class names."""


def _as_array(value: Any, dtype: type, width: int | None, what: str) -> np.ndarray:
    """`value` as a 1-d array, or as rows of `width` columns (an empty input gets 0 rows)."""
    array: np.ndarray = np.asarray(value, dtype=dtype)
    if width is not None and array.size == 0:
        array = array.reshape(0, width)
    if (array.ndim, array.shape[1:]) != ((1, ()) if width is None else (2, (width,))):
        wanted = "(n,)" if width is None else f"(n, {width})"
        raise DetectionInputError(f"{what} must have shape {wanted}, not {array.shape}")
    return array


@dataclass(frozen=True, eq=False)
class ImageResult:
    """One image's predictions and ground truth, boxes as (x1, y1, x2, y2) in the same units."""

    pred_boxes: np.ndarray  # (n, 4) float
    pred_scores: np.ndarray  # (n,) float
    pred_classes: np.ndarray  # (n,) int
    true_boxes: np.ndarray  # (m, 4) float
    true_classes: np.ndarray  # (m,) int

    def __post_init__(self) -> None:
        arrays = {
            "pred_boxes": _as_array(self.pred_boxes, np.float64, 4, "pred_boxes"),
            "pred_scores": _as_array(self.pred_scores, np.float64, None, "pred_scores"),
            "pred_classes": _as_array(self.pred_classes, np.int64, None, "pred_classes"),
            "true_boxes": _as_array(self.true_boxes, np.float64, 4, "true_boxes"),
            "true_classes": _as_array(self.true_classes, np.int64, None, "true_classes"),
        }
        for name, array in arrays.items():
            object.__setattr__(self, name, array)
        n, m = len(arrays["pred_boxes"]), len(arrays["true_boxes"])
        if len(arrays["pred_scores"]) != n or len(arrays["pred_classes"]) != n:
            raise DetectionInputError(f"{n} predicted boxes but {len(arrays['pred_scores'])} "
                                      f"scores and {len(arrays['pred_classes'])} classes")
        if len(arrays["true_classes"]) != m:
            raise DetectionInputError(f"{m} true boxes but {len(arrays['true_classes'])} classes")


@dataclass(frozen=True)
class DetectionScores:
    """mAP over the classes with ground truth; per-class AP only for those classes."""

    map50: float
    map50_95: float
    ap50_per_class: dict[str, float]
    ap50_95_per_class: dict[str, float]
    images: int
    instances: int  # ground-truth objects

    def as_dict(self) -> dict[str, Any]:
        return {"map50": self.map50, "map50_95": self.map50_95,
                "ap50_per_class": dict(self.ap50_per_class),
                "ap50_95_per_class": dict(self.ap50_95_per_class),
                "images": self.images, "instances": self.instances}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (m, 4) with every box in `b` (n, 4), as an (m, n) matrix."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter + IOU_EPS)


def match_predictions(pred_classes: np.ndarray, true_classes: np.ndarray, iou: np.ndarray
                      ) -> np.ndarray:
    """Which predictions are true positives at each IoU threshold: an (n, 10) bool array.

    Predictions must come best score first; each takes the unclaimed object of its class it
    overlaps most, and an object is claimed once per threshold (Ultralytics' greedy matching).
    """
    correct = np.zeros((len(pred_classes), len(IOU_THRESHOLDS)), bool)
    iou = iou * (true_classes[:, None] == pred_classes[None, :])
    claimed = np.zeros((len(true_classes), len(IOU_THRESHOLDS)), bool)
    columns = np.arange(len(IOU_THRESHOLDS))
    for j in np.flatnonzero((iou >= IOU_THRESHOLDS.min()).any(axis=0)):
        available = np.where(claimed, 0.0, iou[:, j, None])
        best = available.argmax(axis=0)
        correct[j] = available[best, columns] >= IOU_THRESHOLDS
        claimed[best, columns] |= correct[j]
    return correct


def _image_true_positives(result: ImageResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image's (n, 10) true-positive flags, scores and classes, best score first."""
    order = np.argsort(-result.pred_scores, kind="stable")
    scores, classes = result.pred_scores[order], result.pred_classes[order]
    if not len(order) or not len(result.true_classes):
        return np.zeros((len(order), len(IOU_THRESHOLDS)), bool), scores, classes
    iou = box_iou(result.true_boxes, result.pred_boxes[order])
    return match_predictions(classes, result.true_classes, iou), scores, classes


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope sampled at 101 recall points (COCO, as Ultralytics).

    Precision is zero past the highest recall reached: missed objects earn nothing.
    """
    last = recall[-1] if len(recall) else 1.0
    mrec = np.concatenate(([0.0], recall, [last], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    envelope = np.flip(np.maximum.accumulate(np.flip(mpre)))
    return float(_trapezoid(np.interp(RECALL_POINTS, mrec, envelope), RECALL_POINTS))


def ap_per_class(tp: np.ndarray, scores: np.ndarray, pred_classes: np.ndarray,
                 true_classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AP at each IoU threshold for each class that has ground truth.

    Returns the classes (sorted) and their AP, shape (classes, 10). A class with ground truth
    and no prediction scores 0.
    """
    order = np.argsort(-scores, kind="stable")
    tp, pred_classes = tp[order], pred_classes[order]
    classes, counts = np.unique(true_classes, return_counts=True)
    ap = np.zeros((len(classes), tp.shape[1]))
    for row, (cls, count) in enumerate(zip(classes, counts, strict=True)):
        hits = tp[pred_classes == cls].astype(np.float64)
        if not len(hits):
            continue
        tpc, fpc = hits.cumsum(axis=0), (1 - hits).cumsum(axis=0)
        recall, precision = tpc / (count + RECALL_EPS), tpc / (tpc + fpc)
        ap[row] = [average_precision(recall[:, j], precision[:, j]) for j in range(tp.shape[1])]
    return classes, ap


def _check_classes(results: Sequence[ImageResult], names: Sequence[str]) -> None:
    for index, result in enumerate(results):
        for what, classes in (("predicted", result.pred_classes), ("true", result.true_classes)):
            bad = classes[(classes < 0) | (classes >= len(names))]
            if len(bad):
                raise DetectionInputError(f"image {index}: {what} class {int(bad[0])} is not one "
                                          f"of the {len(names)} class names")


def detection_metrics(results: Sequence[ImageResult], names: Sequence[str]) -> DetectionScores:
    """mAP50 and mAP50-95 over `results`, with AP per class; `names[i]` names class id i.

    Raises NoGroundTruthError when no image has a ground-truth object: AP is undefined there
    (Ultralytics reports 0 with a warning; a gate must not read that as a measured 0).
    """
    _check_classes(results, names)
    per_image = [_image_true_positives(result) for result in results]
    true_classes = np.concatenate([r.true_classes for r in results] or [np.zeros(0, np.int64)])
    if not len(true_classes):
        raise NoGroundTruthError(f"no ground-truth objects in {len(results)} images: "
                                 "mAP is undefined")
    tp = np.concatenate([tp for tp, _, _ in per_image])
    scores = np.concatenate([s for _, s, _ in per_image])
    pred_classes = np.concatenate([c for _, _, c in per_image])
    classes, ap = ap_per_class(tp, scores, pred_classes, true_classes)
    return DetectionScores(
        map50=float(ap[:, 0].mean()),
        map50_95=float(ap.mean()),
        ap50_per_class={names[c]: float(a) for c, a in zip(classes, ap[:, 0], strict=True)},
        ap50_95_per_class={names[c]: float(a) for c, a in zip(classes, ap.mean(axis=1),
                                                               strict=True)},
        images=len(results),
        instances=len(true_classes),
    )
