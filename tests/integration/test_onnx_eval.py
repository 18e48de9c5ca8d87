"""The exported seed model scored through the device's detector: high on the line it was trained
on, low at dusk, close to Ultralytics' own validation of the same file, and clear errors for bad
dataset folders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flows.retrain.onnx_eval import (
    EvalDataError,
    EvalResult,
    evaluate_onnx,
    evaluate_slices,
    list_images,
    pixel_boxes,
    read_labels,
)
from sim.dataset import render_dataset

pytestmark = pytest.mark.slow
FRAMES = 40
IMGSZ = 320
ULTRALYTICS_TOLERANCE = 0.03  # mAP50; what the two letterbox/label pipelines may differ by


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_slices")
    for scenario in ("baseline", "dusk"):
        render_dataset(root / scenario, scenario, FRAMES, seed=31, width=IMGSZ, split="evaltest")
    return {"baseline": root / "baseline", "dusk": root / "dusk"}


@pytest.fixture(scope="module")
def results(seed_model: Path, slices: dict[str, Path]) -> dict[str, EvalResult]:
    done: list[int] = []
    started = time.perf_counter()
    out = evaluate_slices(seed_model, slices, imgsz=IMGSZ, progress=done.append)
    seconds = time.perf_counter() - started
    print(f"evaluated {sum(done)} images in {seconds:.2f} s")
    assert sum(done) == 2 * FRAMES
    return out


def test_seed_model_scores_high_on_baseline_and_much_lower_at_dusk(results) -> None:
    baseline, dusk = results["baseline"].scores, results["dusk"].scores
    assert baseline.map50 > 0.7
    assert dusk.map50 < baseline.map50 - 0.3
    assert baseline.images == FRAMES and baseline.instances > FRAMES
    assert set(baseline.ap50_per_class) == {"nut", "washer", "bolt"}


def test_latency_is_measured_for_inference_and_the_whole_frame(results) -> None:
    for result in results.values():
        for stats in (result.infer, result.total):
            assert 0 < stats.p50_ms <= stats.p95_ms
            assert stats.mean_ms > 0
        assert result.total.p50_ms >= result.infer.p50_ms
    record = json.loads(json.dumps(results["dusk"].as_dict()))
    assert record["latency"]["total"]["p95_ms"] > 0 and record["imgsz"] == [IMGSZ, IMGSZ]


def test_map50_agrees_with_ultralytics_validation_of_the_same_onnx(
        seed_model: Path, slices: dict[str, Path], results, tmp_path: Path) -> None:
    from flows.retrain.ultralytics_yolo import evaluate

    theirs = evaluate(seed_model, slices["baseline"] / "data.yaml", IMGSZ, tmp_path, split="val")
    ours = results["baseline"].scores
    print(f"mAP50 ours {ours.map50:.4f} ultralytics {theirs.map50:.4f} "
          f"mAP50-95 ours {ours.map50_95:.4f} ultralytics {theirs.map50_95:.4f}")
    assert ours.map50 == pytest.approx(theirs.map50, abs=ULTRALYTICS_TOLERANCE)


def test_single_folder_evaluation_matches_the_slice_evaluation(
        seed_model: Path, slices: dict[str, Path], results) -> None:
    alone = evaluate_onnx(seed_model, slices["dusk"], imgsz=IMGSZ)
    assert alone.scores == results["dusk"].scores


def test_missing_folder_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="does not exist"):
        evaluate_onnx(tmp_path / "model.onnx", tmp_path / "nowhere")


def test_folder_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    with pytest.raises(EvalDataError, match="no images"):
        list_images(tmp_path)


def test_malformed_label_line_names_the_file_and_line(tmp_path: Path) -> None:
    labels = tmp_path / "frame.txt"
    labels.write_text("0 0.5 0.5 0.2 0.2\n\n1 0.5 0.5 0.2\n")
    with pytest.raises(EvalDataError, match=r"frame\.txt:3: expected 'class cx cy w h'"):
        read_labels(labels, classes=3)


@pytest.mark.parametrize(("line", "reason"), [("7 0.5 0.5 0.2 0.2", "class 7"),
                                              ("0 0.5 zero 0.2 0.2", "not numbers"),
                                              ("0 1.5 0.5 0.2 0.2", r"box .* is not normalised")])
def test_bad_label_values_are_refused_naming_file_and_line(tmp_path: Path, line: str,
                                                           reason: str) -> None:
    labels = tmp_path / "frame.txt"
    labels.write_text(f"{line}\n")
    with pytest.raises(EvalDataError, match=f"frame.txt:1: {reason}"):
        read_labels(labels, classes=3)


def test_missing_label_file_is_a_negative_image_and_lines_become_pixel_boxes(
        tmp_path: Path) -> None:
    rows, classes = read_labels(tmp_path / "absent.txt", classes=3)
    assert rows.shape == (0, 4) and classes.shape == (0,)
    (tmp_path / "one.txt").write_text("2 0.5 0.25 0.25 0.5\n")
    rows, classes = read_labels(tmp_path / "one.txt", classes=3)
    assert pixel_boxes(rows, 320, 240).tolist() == [[120.0, 0.0, 200.0, 120.0]]
    assert classes.tolist() == [2]


def test_folder_of_only_negative_images_is_refused_before_inference(
        seed_model: Path, slices: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    for image in sorted((slices["baseline"] / "images").iterdir())[:2]:
        (tmp_path / "images" / image.name).write_bytes(image.read_bytes())
    with pytest.raises(EvalDataError, match="no labelled objects in 2 images"):
        evaluate_onnx(seed_model, tmp_path, imgsz=IMGSZ)
