"""The device's detector gives the same boxes as Ultralytics' own predictor on the same images."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.detector import Detector, InputSizeError, ModelLoadError
from sim.stream import stream

pytestmark = pytest.mark.slow
CONF = 0.1  # below the default 0.25: more boxes, uncertain ones included, to compare


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("parity")
    paths = []
    for frame in stream("baseline", seed=9, width=320, frames=4, name="parity"):
        paths.append(folder / f"{frame.index}.png")
        cv2.imwrite(str(paths[-1]), frame.image)
    for frame in stream("camera_bump", seed=9, width=640, frames=2, name="parity"):
        paths.append(folder / f"bump{frame.index}.png")
        cv2.imwrite(str(paths[-1]), frame.image)
    return paths


@pytest.mark.parametrize("reference", ["onnx", "pt"])
def test_boxes_match_ultralytics_predictions(seed_model: Path, images, reference):
    from ultralytics import YOLO

    model = YOLO(str(seed_model if reference == "onnx" else seed_model.with_name("best.pt")),
                 task="detect")
    detector = Detector(seed_model, imgsz=320, conf=CONF)
    compared = 0
    for path in images:
        expected = model.predict(str(path), imgsz=320, conf=CONF, iou=0.7, verbose=False,
                                 device="cpu")[0].boxes
        ours = detector(cv2.imread(str(path))).detections
        assert len(ours) == len(expected), path.name
        if not len(ours):
            continue
        overlap = iou(expected.xyxy.numpy(), ours.boxes)
        match = overlap.argmax(axis=1)
        assert (overlap.max(axis=1) >= 0.99).all(), path.name
        assert (ours.classes[match] == expected.cls.numpy().astype(int)).all()
        assert np.abs(ours.scores[match] - expected.conf.numpy()).max() <= 1e-3
        compared += len(ours)
    assert compared > 0, "the model made no detections to compare"


def test_dynamic_model_runs_at_other_input_sizes(seed_model: Path, images):
    image = cv2.imread(str(images[0]))
    for size in (320, 640):
        result = Detector(seed_model, imgsz=size, conf=CONF)(image)
        rows = -(-size * 3 // 4 // 32) * 32  # 4:3 content, padded to the stride (32)
        assert result.tensor.shape[2:] == (rows, size)


def test_class_names_and_size_come_from_the_model_metadata(seed_model: Path):
    info = Detector(seed_model).info
    assert info.names == ("nut", "washer", "bolt")
    assert info.imgsz == (320, 320) and info.dynamic


def test_input_size_off_the_stride_is_refused(seed_model: Path):
    with pytest.raises(InputSizeError, match="stride"):
        Detector(seed_model, imgsz=100)


def test_a_file_that_is_not_a_model_is_refused(tmp_path: Path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="cannot load"):
        Detector(bad)
