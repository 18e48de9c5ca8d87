from datetime import UTC, datetime

import numpy as np
import pytest

from edge_runtime.contract import FrameStats
from edge_runtime.detector import Detections, Inference, Letterbox
from edge_runtime.telemetry import UncertaintyBand, frame_stats, image_stats, stats_row

NAMES = ("nut", "washer", "bolt")
WHEN = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def inference(tensor: np.ndarray, boxes, scores, classes, width=160, height=120) -> Inference:
    h, w = tensor.shape[2:]
    box = Letterbox(w / width, (h - 8) / height, 0, 4, width, height,
                    (slice(4, h - 4), slice(0, w)))
    det = Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                     np.array(classes, np.int64))
    return Inference(det, tensor, box, None, 1.0, 2.0, 0.5)


def grey_tensor(value: float, h=128, w=160) -> np.ndarray:
    tensor = np.full((1, 3, h, w), 114 / 255, np.float32)
    tensor[:, :, 4 : h - 4] = value
    return tensor


def test_flat_grey_image_has_its_level_as_brightness_and_nothing_else():
    stats = image_stats(grey_tensor(0.5), (slice(4, 124), slice(0, 160)))
    assert stats.brightness == pytest.approx(0.5, abs=1e-6)
    assert stats.contrast == pytest.approx(0.0, abs=1e-6)
    assert stats.sharpness == pytest.approx(0.0, abs=1e-6)
    assert stats.saturation == pytest.approx(0.0, abs=1e-6)


def test_padding_is_left_out_of_the_image_statistics():
    tensor = grey_tensor(0.0)  # black image, grey padding above and below
    assert image_stats(tensor, (slice(4, 124), slice(0, 160))).brightness == pytest.approx(0.0)


def test_pure_red_has_full_saturation_and_rec601_luma():
    tensor = np.zeros((1, 3, 64, 64), np.float32)
    tensor[0, 0] = 1.0
    stats = image_stats(tensor, (slice(0, 64), slice(0, 64)))
    assert stats.saturation == pytest.approx(1.0)
    assert stats.brightness == pytest.approx(0.299, abs=1e-6)


def test_half_black_half_white_has_contrast_one_half():
    tensor = np.zeros((1, 3, 64, 64), np.float32)
    tensor[:, :, :, 32:] = 1.0
    stats = image_stats(tensor, (slice(0, 64), slice(0, 64)))
    assert stats.contrast == pytest.approx(0.5, abs=1e-6)
    assert stats.sharpness > 0


def test_frame_stats_summarise_the_detections():
    inf = inference(grey_tensor(0.5), [[0, 0, 16, 12], [80, 60, 160, 120]], [0.9, 0.4], [0, 2])
    stats = frame_stats(inf, NAMES, device_id="cam-1", model_version="v1", frame_id=7,
                        captured_at=WHEN, band=UncertaintyBand(0.25, 0.6))
    assert stats.detections == 2
    assert stats.class_counts == {"nut": 1, "bolt": 1}
    assert (stats.conf_max, stats.conf_min) == pytest.approx((0.9, 0.4))
    assert stats.conf_mean == pytest.approx(0.65)
    assert stats.uncertain == 1
    assert stats.box_area_min == pytest.approx(0.01)  # 16x12 of 160x120
    assert stats.box_area_max == pytest.approx(0.25)
    assert stats.box_aspect_mean == pytest.approx((16 / 12 + 80 / 60) / 2)
    assert (stats.pre_ms, stats.infer_ms, stats.post_ms) == (1.0, 2.0, 0.5)
    assert stats.record_id == "cam-1/7"
    FrameStats.model_validate(stats.model_dump())  # what the device builds passes the contract


def test_a_frame_without_detections_has_empty_summaries():
    inf = inference(grey_tensor(0.2), [], [], [])
    stats = frame_stats(inf, NAMES, device_id="cam-1", model_version="v1", frame_id=0,
                        captured_at=WHEN, band=UncertaintyBand())
    assert stats.detections == 0 and stats.class_counts == {} and stats.conf_max is None
    FrameStats.model_validate(stats.model_dump())


def test_stats_row_has_a_count_column_per_class():
    inf = inference(grey_tensor(0.5), [[0, 0, 10, 10]], [0.8], [1])
    stats = frame_stats(inf, NAMES, device_id="d", model_version="v", frame_id=1,
                        captured_at=WHEN, band=UncertaintyBand())
    row = stats_row(stats, NAMES)
    assert (row["count_nut"], row["count_washer"], row["count_bolt"]) == (0, 1, 0)
    assert "class_counts" not in row


def test_bad_uncertainty_band_is_refused():
    with pytest.raises(ValueError, match="band"):
        UncertaintyBand(0.7, 0.3)
