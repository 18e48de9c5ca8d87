"""The detector picks its decoder once, from the model file, and refuses what it cannot decode:
on hand-made ONNX graphs whose output is a constant."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_runtime.decode import OutputLayout
from edge_runtime.detector import Detector, UnknownOutputLayout

NAMES = "{0: 'cog', 1: 'gear', 2: 'pin'}"


def constant_model(path: Path, output: np.ndarray, metadata: dict[str, str]) -> Path:
    """A 32x32 "detector" whose first output is always `output`."""
    node = helper.make_node("Constant", [], ["output0"],
                            value=numpy_helper.from_array(output.astype(np.float32)))
    graph = helper.make_graph(
        [node], "constant",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {"names": NAMES, "stride": "32", **metadata})
    onnx.save(model, str(path))
    return path


def test_an_end_to_end_export_is_decoded_as_rows_of_boxes(tmp_path: Path):
    rows = np.zeros((1, 300, 6))
    rows[0, 0] = [8, 8, 24, 24, 0.9, 1]  # in the 32x32 input; the 64x64 frame is scaled by 0.5
    model = constant_model(tmp_path / "e2e.onnx", rows, {"end2end": "True"})
    detector = Detector(model)
    assert detector.info.layout is OutputLayout.END2END
    found = detector(np.zeros((64, 64, 3), np.uint8)).detections
    assert found.classes.tolist() == [1]
    np.testing.assert_allclose(found.boxes, [[16, 16, 48, 48]])


def test_a_raw_head_is_decoded_with_nms(tmp_path: Path):
    head = np.zeros((1, 7, 2))
    head[0, :, 0] = [16, 16, 8, 8, 0.1, 0.0, 0.8]  # cx, cy, w, h, then three class scores
    head[0, :, 1] = [17, 16, 8, 8, 0.0, 0.0, 0.6]  # overlaps the first, same class
    model = constant_model(tmp_path / "raw.onnx", head, {"end2end": "False"})
    detector = Detector(model)
    assert detector.info.layout is OutputLayout.RAW
    found = detector(np.zeros((32, 32, 3), np.uint8)).detections
    assert found.classes.tolist() == [2]
    np.testing.assert_allclose(found.scores, [0.8], rtol=1e-6)


def test_a_model_with_an_unknown_output_layout_is_refused_naming_the_shape(tmp_path: Path):
    model = constant_model(tmp_path / "seg.onnx", np.zeros((1, 39, 21)), {})
    with pytest.raises(UnknownOutputLayout, match=r"\[1, 39, 21\]"):
        Detector(model)


@pytest.mark.parametrize("thresholds", [{"conf": 0.0}, {"conf": 1.0}, {"iou": 0.0},
                                        {"max_det": 0}])
def test_thresholds_out_of_range_are_refused(tmp_path: Path, thresholds):
    model = constant_model(tmp_path / "e2e.onnx", np.zeros((1, 300, 6)), {"end2end": "True"})
    with pytest.raises(ValueError, match="must be"):
        Detector(model, **thresholds)
