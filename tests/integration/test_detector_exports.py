"""The device's detector decodes every Ultralytics detection export (the raw head of YOLO11 and
YOLO26, NMS inside, YOLO26's end-to-end head; static and dynamic input; 320 and 640) into the
same boxes as Ultralytics' own predictions from that ONNX file."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.decode import OutputLayout
from edge_runtime.detector import Detector
from sim.stream import stream
from tests.support.yolo_exports import export_onnx, untrained_yolo

pytestmark = pytest.mark.slow
NAMES = ("cog", "gear", "pin")  # not the simulator's classes
# The untrained models' scores (BatchNorm calibrated on frames) run from ~2e-4 to ~0.03: this
# keeps tens to hundreds of boxes per frame, uncertain ones included, to compare.
CONF, IOU = 0.005, 0.7
BOX_TOL_PX = 1.0
SCORE_TOL = 1e-4

EXPORTS = [  # architecture, nms, dynamic, imgsz, the layout it gives
    ("yolo11n.yaml", None, False, 320, OutputLayout.RAW),
    ("yolo11n.yaml", True, True, 640, OutputLayout.NMS),
    ("yolo26n.yaml", None, True, 320, OutputLayout.RAW),  # YOLO26's default export: raw head
    ("yolo26n.yaml", True, False, 320, OutputLayout.NMS),
    ("yolo26n.yaml", False, False, 640, OutputLayout.END2END),
    ("yolo26n.yaml", False, True, 320, OutputLayout.END2END),
]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("frames")
    paths = []
    for frame in stream("baseline", seed=4, width=640, frames=2, name="exports"):
        paths.append(folder / f"{frame.index}.png")
        cv2.imwrite(str(paths[-1]), frame.image)
    for frame in stream("camera_bump", seed=4, width=400, frames=1, name="exports"):
        paths.append(folder / f"bump{frame.index}.png")  # 400x300: another size and aspect
        cv2.imwrite(str(paths[-1]), frame.image)
    return paths


@pytest.fixture(scope="module")
def models(tmp_path_factory, images) -> dict[str, object]:
    frames = [cv2.imread(str(p)) for p in images]
    work = tmp_path_factory.mktemp("untrained")
    return {arch: untrained_yolo(arch, NAMES, work / arch.removesuffix(".yaml"), frames)
            for arch in {e[0] for e in EXPORTS}}


def pair_up(expected, ours) -> tuple[np.ndarray, np.ndarray]:
    """Each of Ultralytics' boxes with one of ours of the same class, one to one, by box and
    score together (an untrained model puts many near-identical boxes side by side, so the
    nearest box alone is ambiguous); the pairs' largest coordinate and score differences."""
    from scipy.optimize import linear_sum_assignment

    box = np.abs(expected.xyxy.numpy()[:, None, :] - ours.boxes[None, :, :]).max(axis=2)
    score = np.abs(expected.conf.numpy()[:, None] - ours.scores[None, :])
    other_class = expected.cls.numpy().astype(int)[:, None] != ours.classes[None, :]
    rows, cols = linear_sum_assignment(box + 1e4 * score + 1e9 * other_class)
    assert not other_class[rows, cols].any(), "a box of one class paired with another's"
    return box[rows, cols], score[rows, cols]


@pytest.mark.parametrize(("architecture", "nms", "dynamic", "imgsz", "layout"), EXPORTS,
                         ids=[f"{a[:7]}-nms{n}-{'dyn' if d else 'static'}-{s}"
                              for a, n, d, s, _ in EXPORTS])
def test_boxes_match_ultralytics_predictions_from_the_same_export(
        models, images, tmp_path: Path, architecture, nms, dynamic, imgsz, layout):
    from ultralytics import YOLO

    onnx = export_onnx(models[architecture], tmp_path / "model.onnx", imgsz=imgsz, nms=nms,
                       dynamic=dynamic)
    detector = Detector(onnx, imgsz=imgsz, conf=CONF, iou=IOU)
    assert detector.info.layout is layout and detector.info.names == NAMES
    assert detector.info.dynamic is dynamic
    reference = YOLO(str(onnx), task="detect")
    worst = worst_score = 0.0
    compared = 0
    for path in images:
        expected = reference.predict(str(path), imgsz=imgsz, conf=CONF, iou=IOU, verbose=False,
                                     device="cpu")[0].boxes
        ours = detector(cv2.imread(str(path))).detections
        assert len(ours) == len(expected), path.name
        box, score = pair_up(expected, ours)
        assert (box <= BOX_TOL_PX).all(), f"{path.name}: {box.max():.3f} px"
        assert (score <= SCORE_TOL).all(), f"{path.name}: scores differ by {score.max():.2e}"
        worst = max(worst, float(box.max(initial=0.0)))
        worst_score = max(worst_score, float(score.max(initial=0.0)))
        compared += len(ours)
    print(f"\n{layout}: {compared} boxes, largest difference {worst:.4f} px, "
          f"score {worst_score:.1e}")
    assert compared >= 10 * len(images), "too few detections to compare"
