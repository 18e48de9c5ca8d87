"""The output layouts of Ultralytics' detection exports, and their decoding, on hand-made arrays."""

import numpy as np
import pytest

from edge_runtime.decode import (
    DECODERS,
    Letterbox,
    OutputLayout,
    OutputLayoutError,
    decode_raw,
    decode_rows,
    output_layout,
)

# As Ultralytics 8.4 writes them (str() of each value); only these two keys decide a layout.
RAW_META = {"end2end": "False", "args": "{'batch': 1, 'nms': None, 'dynamic': False}"}
NMS_META = {"end2end": "False", "args": "{'batch': 1, 'nms': True, 'dynamic': True}"}
E2E_META = {"end2end": "True", "args": "{'batch': 1, 'nms': False, 'dynamic': False}"}

# A 640x480 frame letterboxed into 320x320: gain 0.5, 40 grey rows above and below.
BOX = Letterbox(0.5, 0.5, 0, 40, 640, 480, (slice(40, 280), slice(0, 320)))


@pytest.mark.parametrize(("shape", "nc", "meta", "layout"), [
    ([1, 7, 2100], 3, RAW_META, OutputLayout.RAW),
    (["batch", 7, "anchors"], 3, RAW_META, OutputLayout.RAW),
    ([1, 6, 8400], 2, RAW_META, OutputLayout.RAW),  # 4 + 2 classes: still the raw head
    ([1, 300, 6], 3, NMS_META, OutputLayout.NMS),
    (["batch", 300, 6], 3, NMS_META, OutputLayout.NMS),
    ([1, 300, 6], 3, E2E_META, OutputLayout.END2END),
    (["batch", 300, 6], 3, E2E_META, OutputLayout.END2END),
    ([1, 300, 6], 3, {}, OutputLayout.NMS),  # rows of boxes, metadata silent
])
def test_each_export_layout_is_recognised(shape, nc, meta, layout):
    assert output_layout(shape, nc, meta) is layout


@pytest.mark.parametrize(("shape", "nc", "meta"), [
    ([1, 116, 8400], 3, RAW_META),  # a segmentation head: 4 + nc + 32 mask coefficients
    ([1, 300, 38], 3, NMS_META),  # a segmentation export with NMS inside
    ([1, 7, 2100], 3, NMS_META),  # says NMS inside but gives the raw head
    ([1, 84, 8400], 3, RAW_META),  # 80 classes where the metadata names 3
    ([1, 3, 320, 320], 3, RAW_META),
])
def test_an_unknown_output_layout_is_refused_naming_its_shape(shape, nc, meta):
    with pytest.raises(OutputLayoutError, match=str(shape).replace("[", r"\[")):
        output_layout(shape, nc, meta)


def raw_output(anchors: list[tuple[float, float, float, float, list[float]]]) -> np.ndarray:
    """(1, 4 + nc, n) from (cx, cy, w, h, class scores) per anchor."""
    return np.array([[cx, cy, w, h, *scores] for cx, cy, w, h, scores in anchors],
                    np.float32).T[None]


def test_raw_head_keeps_the_best_of_overlapping_boxes_of_one_class():
    output = raw_output([
        (100, 100, 40, 40, [0.9, 0.1, 0.0]),
        (102, 101, 40, 40, [0.8, 0.0, 0.0]),  # same class, IoU ~0.9: suppressed
        (102, 101, 40, 40, [0.0, 0.7, 0.0]),  # same place, another class: kept
        (250, 200, 20, 20, [0.0, 0.0, 0.2]),  # under conf
    ])
    found = decode_raw(output, BOX, conf=0.25, iou=0.7, max_det=300)
    assert found.classes.tolist() == [0, 1]
    np.testing.assert_allclose(found.scores, [0.9, 0.7], rtol=1e-6)
    # (80, 80, 120, 120) in the input -> x / 0.5, (y - 40) / 0.5 on the frame
    np.testing.assert_allclose(found.boxes[0], [160, 80, 240, 160])
    assert found.boxes.dtype == np.float32 and found.classes.dtype == np.int64


def test_raw_head_gives_at_most_max_det_boxes_best_first():
    output = raw_output([(40.0 * i + 20, 100, 10, 10, [0.3 + 0.05 * i, 0, 0]) for i in range(6)])
    found = decode_raw(output, BOX, conf=0.25, iou=0.7, max_det=2)
    np.testing.assert_allclose(found.scores, [0.55, 0.5], rtol=1e-6)


def rows_output(rows: list[tuple[float, ...]], max_det: int = 300) -> np.ndarray:
    """(1, max_det, 6) rows of x1, y1, x2, y2, score, class, zero-padded as an NMS export."""
    out = np.zeros((1, max_det, 6), np.float32)
    out[0, :len(rows)] = np.array(rows, np.float32).reshape(-1, 6)
    return out


def test_rows_of_boxes_map_back_to_the_image_and_drop_the_padding():
    output = rows_output([(80, 80, 120, 120, 0.9, 2), (0, 30, 400, 300, 0.5, 1),
                          (10, 50, 20, 60, 0.1, 0)])
    found = decode_rows(output, BOX, conf=0.25, iou=0.7, max_det=300)
    assert found.classes.tolist() == [2, 1]
    np.testing.assert_allclose(found.scores, [0.9, 0.5])
    np.testing.assert_allclose(found.boxes, [[160, 80, 240, 160],
                                             [0, 0, 640, 480]])  # clipped to the frame


def test_rows_of_boxes_keep_the_first_max_det():
    output = rows_output([(10, 50, 20, 60, 0.9 - 0.1 * i, i % 3) for i in range(5)])
    found = decode_rows(output, BOX, conf=0.25, iou=0.7, max_det=3)
    np.testing.assert_allclose(found.scores, [0.9, 0.8, 0.7], rtol=1e-6)


def test_rows_with_nothing_over_conf_give_no_detections():
    found = decode_rows(rows_output([]), BOX, conf=0.25, iou=0.7, max_det=300)
    assert len(found) == 0 and found.boxes.shape == (0, 4)


def test_an_output_that_does_not_match_its_layout_at_run_time_is_refused():
    with pytest.raises(OutputLayoutError, match=r"\[1, 300, 7\]"):
        decode_rows(np.zeros((1, 300, 7), np.float32), BOX, 0.25, 0.7, 300)
    with pytest.raises(OutputLayoutError, match=r"\[1, 4, 10\]"):
        decode_raw(np.zeros((1, 4, 10), np.float32), BOX, 0.25, 0.7, 300)


def test_every_layout_has_a_decoder():
    assert set(DECODERS) == set(OutputLayout)
