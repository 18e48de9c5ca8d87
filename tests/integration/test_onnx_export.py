"""The seed model's int8 export runs on the device with fp32's boxes, and the export checks catch
a model that drifted from its weights and a file that is not a model at all."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge_runtime.detector import Detector
from flows.retrain.onnx_export import ExportCheckError, check_onnx, quantize_int8, torch_parity
from sim.dataset import render_dataset
from sim.stream import stream

pytestmark = pytest.mark.slow
IMGSZ = 320  # the seed model's training size


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [f.image for f in stream("baseline", seed=5, width=IMGSZ, frames=6, name="int8")]


@pytest.fixture(scope="module")
def int8_model(seed_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("int8")
    render_dataset(work / "calib", "baseline", 16, seed=3, width=IMGSZ, split="calib")
    images = sorted((work / "calib" / "images").glob("*.jpg"))
    return quantize_int8(seed_model, work / "model.int8.onnx", images, IMGSZ)


def test_int8_model_passes_the_checks_and_keeps_class_names(seed_model: Path, int8_model: Path):
    check_onnx(int8_model)
    detector = Detector(int8_model, imgsz=IMGSZ)
    assert detector.info.names == Detector(seed_model, imgsz=IMGSZ).info.names
    assert detector.info.names == ("nut", "washer", "bolt")


def test_int8_model_finds_the_boxes_fp32_finds(seed_model: Path, int8_model: Path, frames):
    fp32, int8 = Detector(seed_model, imgsz=IMGSZ), Detector(int8_model, imgsz=IMGSZ)
    confident = matched = 0
    for image in frames:
        want, got = fp32(image).detections, int8(image).detections
        sure = want.scores > 0.5
        confident += int(sure.sum())
        if sure.any() and len(got):
            overlap = iou(want.boxes[sure], got.boxes)
            same_class = want.classes[sure][:, None] == got.classes[None, :]
            matched += int(((overlap > 0.8) & same_class).any(axis=1).sum())
    assert confident >= 10, "the seed model should be sure of some objects on baseline frames"
    assert matched >= 0.9 * confident, f"int8 matched {matched} of {confident} fp32 boxes"


def test_fp32_export_matches_its_torch_weights(seed_model: Path, frames):
    report = torch_parity(seed_model.with_name("best.pt"), seed_model, frames[:3], IMGSZ)
    assert report.frames == 3
    assert report.within(), report


def test_parity_catches_a_model_whose_weights_changed(seed_model: Path, frames, tmp_path: Path):
    model = onnx.load(str(seed_model))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weight = next(i for i in model.graph.initializer if i.name == conv.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 2, weight.name))
    changed = tmp_path / "changed.onnx"
    onnx.save(model, str(changed))
    check_onnx(changed)  # still a valid model: only the comparison with the weights can tell

    report = torch_parity(seed_model.with_name("best.pt"), changed, frames[:1], IMGSZ)

    assert not report.within(), report


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_file_fails_the_check(seed_model: Path, tmp_path: Path, damage: str):
    data = seed_model.read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x08\x07garbage" * 99)
    with pytest.raises(ExportCheckError, match=r"bad\.onnx"):
        check_onnx(bad)
