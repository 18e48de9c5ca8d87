"""Detection metrics: matching at IoU 0.50:0.95 and 101-point AP, the numbers Ultralytics gives."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from flows.retrain.detection_metrics import (
    DetectionInputError,
    ImageResult,
    NoGroundTruthError,
    detection_metrics,
)

NAMES = ("nut", "washer", "bolt")
TRUE = np.array([[10.0, 10.0, 60.0, 60.0], [100.0, 20.0, 140.0, 90.0],
                 [200.0, 150.0, 260.0, 190.0]])
TRUE_CLASSES = np.array([0, 1, 2])
# Ultralytics' perfect score: its trapezoid over 101 recall points drops to 0 at recall 1, so
# the last 1/100 of recall counts half. COCO's pycocotools would report 1.0.
PERFECT = 0.995


def image(pred_boxes, scores, classes, true_boxes=TRUE, true_classes=TRUE_CLASSES) -> ImageResult:
    return ImageResult(np.asarray(pred_boxes, float).reshape(-1, 4), np.asarray(scores, float),
                       np.asarray(classes, int), true_boxes, true_classes)


def test_perfect_predictions_score_the_ultralytics_maximum() -> None:
    from ultralytics.utils.metrics import compute_ap

    scores = detection_metrics([image(TRUE, [0.9, 0.8, 0.7], TRUE_CLASSES)], NAMES)
    assert compute_ap(np.array([1.0]), np.array([1.0]))[0] == pytest.approx(PERFECT)
    assert scores.map50 == pytest.approx(PERFECT)
    assert scores.map50_95 == pytest.approx(PERFECT)
    assert scores.ap50_per_class == pytest.approx({"nut": PERFECT, "washer": PERFECT,
                                                   "bolt": PERFECT})
    assert (scores.images, scores.instances) == (1, 3)


def test_no_predictions_score_zero() -> None:
    scores = detection_metrics([image([], [], [])], NAMES)
    assert scores.map50 == 0.0 and scores.map50_95 == 0.0
    assert scores.ap50_per_class == {"nut": 0.0, "washer": 0.0, "bolt": 0.0}


def test_box_at_iou_0_6_counts_at_0_5_but_not_from_0_65() -> None:
    truth, shifted = np.array([[0.0, 0.0, 100.0, 100.0]]), [[23.0, 0.0, 123.0, 100.0]]  # IoU 0.626
    scores = detection_metrics([image(shifted, [0.9], [0], truth, [0])], NAMES)
    assert scores.map50 == pytest.approx(PERFECT)
    assert 0.0 < scores.map50_95 < PERFECT
    assert scores.map50_95 == pytest.approx(0.3 * PERFECT)  # matched at 0.50, 0.55, 0.60 of ten


def test_right_box_with_the_wrong_class_scores_zero() -> None:
    scores = detection_metrics([image(TRUE, [0.9, 0.8, 0.7], [1, 2, 0])], NAMES)
    assert scores.map50 == 0.0 and scores.map50_95 == 0.0


def test_false_positive_scored_above_the_true_one_lowers_ap() -> None:
    truth = np.array([[0.0, 0.0, 50.0, 50.0]])
    hit, miss = [0.0, 0.0, 50.0, 50.0], [200.0, 200.0, 250.0, 250.0]
    behind = detection_metrics([image([hit, miss], [0.9, 0.5], [0, 0], truth, [0])], NAMES)
    ahead = detection_metrics([image([hit, miss], [0.5, 0.9], [0, 0], truth, [0])], NAMES)
    assert behind.map50 == pytest.approx(PERFECT)
    assert ahead.map50 < 0.6


def test_false_positives_on_a_negative_image_count() -> None:
    clean = image(TRUE, [0.5, 0.5, 0.5], TRUE_CLASSES)
    negative = image([[0, 0, 30, 30]], [0.9], [0], np.zeros((0, 4)), [])
    assert detection_metrics([clean, negative], NAMES).ap50_per_class["nut"] < 0.6


def test_classes_without_ground_truth_are_left_out_of_the_mean() -> None:
    truth, classes = TRUE[:2], TRUE_CLASSES[:2]
    stray_bolt = [[300.0, 300.0, 320.0, 320.0]]
    scores = detection_metrics(
        [image([*TRUE[:2], *stray_bolt], [0.9, 0.8, 0.95], [0, 1, 2], truth, classes)], NAMES)
    assert scores.map50 == pytest.approx(PERFECT)
    assert set(scores.ap50_per_class) == set(scores.ap50_95_per_class) == {"nut", "washer"}


def test_results_without_any_ground_truth_are_refused() -> None:
    with pytest.raises(NoGroundTruthError, match="no ground-truth"):
        detection_metrics([image([[0, 0, 9, 9]], [0.9], [0], np.zeros((0, 4)), [])], NAMES)
    with pytest.raises(NoGroundTruthError):
        detection_metrics([], NAMES)


def test_mismatched_array_lengths_are_refused() -> None:
    with pytest.raises(DetectionInputError, match="2 predicted boxes but 1 scores"):
        image([[0, 0, 1, 1], [0, 0, 2, 2]], [0.5], [0, 0])
    with pytest.raises(DetectionInputError, match=r"shape \(n, 4\)"):
        ImageResult(np.zeros((1, 3)), np.zeros(1), np.zeros(1, int), TRUE, TRUE_CLASSES)


def test_class_id_outside_the_names_is_refused() -> None:
    with pytest.raises(DetectionInputError, match="predicted class 3"):
        detection_metrics([image(TRUE[:1], [0.9], [3])], NAMES)


def test_scores_serialise_as_json() -> None:
    scores = detection_metrics([image(TRUE, [0.9, 0.8, 0.7], TRUE_CLASSES)], NAMES)
    assert json.loads(json.dumps(scores.as_dict()))["ap50_95_per_class"]["bolt"] == pytest.approx(
        PERFECT)


def synthetic_images(rng: np.random.Generator, count: int) -> list[ImageResult]:
    """Jittered, dropped and invented boxes with random scores: every matching case occurs."""
    images = []
    for _ in range(count):
        m = int(rng.integers(0, 6))
        xy = rng.uniform(0, 500, (m, 2))
        truth = np.concatenate([xy, xy + rng.uniform(20, 120, (m, 2))], axis=1)
        true_classes = rng.integers(0, 3, m)
        kept = rng.random(m) < 0.8
        found = truth[kept] + rng.normal(0, 4, (kept.sum(), 4))
        found_classes = np.where(rng.random(kept.sum()) < 0.9, true_classes[kept],
                                 rng.integers(0, 3, kept.sum()))
        k = int(rng.integers(0, 4))
        fxy = rng.uniform(0, 500, (k, 2))
        invented = np.concatenate([fxy, fxy + rng.uniform(20, 120, (k, 2))], axis=1)
        boxes = np.concatenate([found, invented])
        classes = np.concatenate([found_classes, rng.integers(0, 3, k)])
        images.append(ImageResult(boxes, rng.random(len(boxes)), classes, truth, true_classes))
    return images


def ultralytics_scores(images: list[ImageResult]) -> tuple[np.ndarray, np.ndarray]:
    """Ultralytics' own matching and AP over the same boxes: (classes, AP of shape (nc, 10))."""
    import torch
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import ap_per_class, box_iou

    validator = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
    tps, confs, classes, targets = [], [], [], []
    for result in images:
        order = np.argsort(-result.pred_scores)
        pred_classes = torch.from_numpy(result.pred_classes[order])
        if len(order) and len(result.true_classes):
            iou = box_iou(torch.from_numpy(result.true_boxes), torch.from_numpy(
                result.pred_boxes[order]))
            tp = BaseValidator.match_predictions(
                validator, pred_classes, torch.from_numpy(result.true_classes), iou).numpy()
        else:
            tp = np.zeros((len(order), 10), bool)
        tps.append(tp)
        confs.append(result.pred_scores[order])
        classes.append(result.pred_classes[order])
        targets.append(result.true_classes)
    out = ap_per_class(np.concatenate(tps), np.concatenate(confs), np.concatenate(classes),
                       np.concatenate(targets))
    return out[6], out[5]


def test_random_case_agrees_with_ultralytics() -> None:
    images = synthetic_images(np.random.default_rng(7), 60)
    classes, ap = ultralytics_scores(images)
    ours = detection_metrics(images, NAMES)
    assert 0.2 < ours.map50 < 0.95  # a case with misses and false positives, not a trivial one
    assert ours.map50 == pytest.approx(ap[:, 0].mean(), abs=1e-6)
    assert ours.map50_95 == pytest.approx(ap.mean(), abs=1e-6)
    assert ours.ap50_per_class == pytest.approx(
        {NAMES[c]: a for c, a in zip(classes, ap[:, 0], strict=True)}, abs=1e-6)
    assert ours.ap50_95_per_class == pytest.approx(
        {NAMES[c]: a for c, a in zip(classes, ap.mean(axis=1), strict=True)}, abs=1e-6)
