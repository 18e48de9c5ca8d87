"""Int8 export and file checks on a tiny hand-built detection graph (no Ultralytics, no torch)."""

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_runtime.detector import Detector
from flows.retrain.onnx_export import (
    ExportCheckError,
    ParityReport,
    check_onnx,
    head_decode_nodes,
    quantize_int8,
)

METADATA = {"names": "{0: 'nut', 1: 'washer', 2: 'bolt'}", "stride": "32", "imgsz": "[64, 64]",
            "author": "test"}


def tiny_detector(names: tuple[str, str], metadata: dict[str, str] | None = None
                  ) -> onnx.ModelProto:
    """(1, 3, h, w) -> conv to 4 + 3 channels -> (1, 7, h*w), named as Ultralytics names nodes."""
    conv_name, reshape_name = names
    weight = np.random.default_rng(0).normal(size=(7, 3, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["features"], name=conv_name),
         helper.make_node("Reshape", ["features", "shape"], ["output0"], name=reshape_name)],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 7, "anchors"])],
        [numpy_helper.from_array(weight, "w"),
         numpy_helper.from_array(np.array([1, 7, -1], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    helper.set_model_props(model, METADATA if metadata is None else metadata)
    return model


@pytest.fixture
def fp32_model(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    onnx.save(tiny_detector(("/model.0/conv/Conv", "/model.1/Reshape")), str(path))
    return path


@pytest.fixture
def calibration_images(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(1)
    paths = []
    for index in range(4):
        paths.append(tmp_path / f"calib{index}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    return paths


def test_int8_copy_keeps_metadata_and_runs_on_the_device(fp32_model, calibration_images,
                                                         tmp_path: Path):
    out = quantize_int8(fp32_model, tmp_path / "int8" / "model.onnx", calibration_images, 64)

    check_onnx(out)
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert metadata.items() >= METADATA.items()
    assert {n.op_type for n in onnx.load(str(out)).graph.node} >= {"QuantizeLinear", "Conv"}
    image = cv2.imread(str(calibration_images[0]))
    want, got = (Detector(p, imgsz=64) for p in (fp32_model, out))
    tensor = want.prepare(image).tensor
    assert tensor.shape == (1, 3, 64, 64)  # the device's letterbox: 64x48 padded to stride 32
    raw = [d.session.run(None, {"images": tensor})[0] for d in (want, got)]
    assert np.abs(raw[0] - raw[1]).max() < 0.05 * np.abs(raw[0]).max()
    assert [p.name for p in (tmp_path / "int8").iterdir()] == ["model.onnx"]


def test_int8_export_needs_calibration_images(fp32_model, tmp_path: Path):
    with pytest.raises(ValueError, match="calibration image"):
        quantize_int8(fp32_model, tmp_path / "int8.onnx", [], 64)


def test_unreadable_calibration_image_is_named(fp32_model, tmp_path: Path):
    missing = tmp_path / "missing.jpg"
    with pytest.raises(ValueError, match=r"missing\.jpg"):
        quantize_int8(fp32_model, tmp_path / "int8.onnx", [missing], 64)


def test_head_decoding_is_kept_out_of_quantisation():
    names = ["/model.22/cv2/conv/Conv", "/model.23/cv2.0/cv2.0.2/Conv",
             "/model.23/cv3.1/cv3.1.0/act/Sigmoid", "/model.23/dfl/Softmax",
             "/model.23/dfl/conv/Conv", "/model.23/Sigmoid", "/model.23/Concat_26"]
    nodes = [helper.make_node("Identity", [f"x{i}"], [f"x{i + 1}"], name=name)
             for i, name in enumerate(names)]
    nodes[-1].output[0] = "output0"
    graph = helper.make_graph(nodes, "head", [], [helper.make_value_info("output0",
                                                                         onnx.TypeProto())])

    assert head_decode_nodes(helper.make_model(graph)) == [
        "/model.23/dfl/Softmax", "/model.23/dfl/conv/Conv", "/model.23/Sigmoid",
        "/model.23/Concat_26"]


def test_graph_without_module_names_is_refused():
    with pytest.raises(ExportCheckError, match="detection head"):
        head_decode_nodes(tiny_detector(("conv", "reshape")))


@pytest.mark.parametrize("content", [b"", b"\x08\x07not a model" * 50])
def test_a_file_that_is_not_a_model_fails_the_check(tmp_path: Path, content: bytes):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ExportCheckError, match=r"broken\.onnx is not a valid ONNX model"):
        check_onnx(path)


def test_a_missing_file_fails_the_check(tmp_path: Path):
    with pytest.raises(ExportCheckError, match="does not exist"):
        check_onnx(tmp_path / "absent.onnx")


@pytest.mark.parametrize("metadata", [{}, {"names": ""}, {"names": "nut, bolt"}, {"names": "{}"}])
def test_a_model_without_class_names_fails_the_check(tmp_path: Path, metadata):
    path = tmp_path / "model.onnx"
    onnx.save(tiny_detector(("/model.0/Conv", "/model.1/Reshape"), metadata), str(path))
    with pytest.raises(ExportCheckError, match="no class names"):
        check_onnx(path)


def test_parity_within_tolerances_of_boxes_and_scores_separately():
    report = ParityReport(frames=2, box_max_abs=0.004, score_max_abs=3e-6)
    assert report.within()
    assert not report.within(box_tol=0.001)
    assert not report.within(score_tol=1e-6)
    assert not ParityReport(1, box_max_abs=0.0, score_max_abs=0.01).within()
