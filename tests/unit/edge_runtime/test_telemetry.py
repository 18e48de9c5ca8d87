from datetime import UTC, datetime

import numpy as np
import pytest

from edge_runtime.contract import FrameStats, stats_row
from edge_runtime.detector import Detections, Inference, Letterbox, thumbnail
from edge_runtime.telemetry import UncertaintyBand, frame_stats, image_stats

NAMES = ("nut", "washer", "bolt")
WHEN = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def inference(image: np.ndarray, boxes, scores, classes) -> Inference:
    height, width = image.shape[:2]
    box = Letterbox(1.0, 1.0, 0, 0, width, height, (slice(0, height), slice(0, width)))
    det = Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                     np.array(classes, np.int64))
    tensor = np.zeros((1, 3, height, width), np.float32)
    return Inference(det, tensor, box, thumbnail(image), None, 1.0, 2.0, 0.5, 0.1)


def grey(value: int, h=120, w=160) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def test_flat_grey_image_has_its_level_as_brightness_and_nothing_else():
    stats = image_stats(thumbnail(grey(128)))
    assert stats.brightness == pytest.approx(128 / 255, abs=1e-6)
    assert stats.contrast == pytest.approx(0.0, abs=1e-6)
    assert stats.sharpness == pytest.approx(0.0, abs=1e-6)
    assert stats.saturation == pytest.approx(0.0, abs=1e-6)


def test_pure_red_has_full_saturation_and_rec601_luma():
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 2] = 255  # BGR
    stats = image_stats(thumbnail(red))
    assert stats.saturation == pytest.approx(1.0)
    assert stats.brightness == pytest.approx(0.299, abs=1 / 255)


def test_half_black_half_white_has_contrast_one_half():
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, 32:] = 255
    stats = image_stats(thumbnail(image))
    assert stats.contrast == pytest.approx(0.5, abs=1e-6)
    assert stats.sharpness > 0


def test_thumbnail_keeps_the_aspect_ratio_and_is_small():
    assert thumbnail(grey(10, h=480, w=640)).shape == (60, 80, 3)
    assert thumbnail(grey(10, h=48, w=64)).shape == (48, 64, 3)  # never enlarged


def test_frame_stats_summarise_the_detections():
    inf = inference(grey(128), [[0, 0, 16, 12], [80, 60, 160, 120]], [0.9, 0.4], [0, 2])
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
    inf = inference(grey(50), [], [], [])
    stats = frame_stats(inf, NAMES, device_id="cam-1", model_version="v1", frame_id=0,
                        captured_at=WHEN, band=UncertaintyBand())
    assert stats.detections == 0 and stats.class_counts == {} and stats.conf_max is None
    FrameStats.model_validate(stats.model_dump())


def test_stats_row_has_a_count_column_per_class():
    inf = inference(grey(128), [[0, 0, 10, 10]], [0.8], [1])
    stats = frame_stats(inf, NAMES, device_id="d", model_version="v", frame_id=1,
                        captured_at=WHEN, band=UncertaintyBand())
    row = stats_row(stats, NAMES)
    assert (row["count_nut"], row["count_washer"], row["count_bolt"]) == (0, 1, 0)
    assert "class_counts" not in row


def test_bad_uncertainty_band_is_refused():
    with pytest.raises(ValueError, match="band"):
        UncertaintyBand(0.7, 0.3)
