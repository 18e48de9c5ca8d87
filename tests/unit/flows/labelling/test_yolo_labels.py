"""The converter between contract detections, Label Studio rectangles and YOLO label lines."""

from __future__ import annotations

from dataclasses import astuple

import pytest

from edge_runtime.contract import Detection
from flows.labelling.yolo_labels import (
    LabelError,
    YoloBox,
    detections_to_result,
    rectangle,
    result_to_yolo,
    yolo_text,
)

CLASSES = ("nut", "washer", "bolt")  # model order; Label Studio's export would sort them


def box(label: str, x: float, y: float, w: float, h: float, **value: object) -> dict:
    return {"from_name": "label", "to_name": "image", "type": "rectanglelabels",
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0,
                      "rectanglelabels": [label], **value}}


def test_percent_rectangle_becomes_centre_and_size_shares() -> None:
    [out] = result_to_yolo([box("washer", 10.0, 20.0, 30.0, 40.0)], CLASSES)
    assert astuple(out) == pytest.approx(astuple(YoloBox(1, 0.25, 0.40, 0.30, 0.40)))
    assert out.line() == "1 0.250000 0.400000 0.300000 0.400000"


def test_class_ids_follow_our_order_not_the_alphabet() -> None:
    ids = [b.cls for b in result_to_yolo(
        [box(name, 0, 0, 10, 10) for name in ("bolt", "nut", "washer")], CLASSES)]
    assert ids == [2, 0, 1]  # alphabetical export order would give 0, 1, 2


def test_detections_round_trip_through_label_studio_percent() -> None:
    detections = [Detection(cls=2, label="bolt", score=0.42, x1=0.1, y1=0.2, x2=0.35, y2=0.9),
                  Detection(cls=0, label="nut", score=0.97, x1=0.5, y1=0.5, x2=0.6, y2=0.55)]
    result = detections_to_result(detections, CLASSES, 320, 240)
    assert [r["score"] for r in result] == [0.42, 0.97]
    assert result[0]["value"]["width"] == pytest.approx(25.0)
    assert result[0]["original_width"] == 320 and result[0]["original_height"] == 240
    back = result_to_yolo(result, CLASSES)
    assert astuple(back[0]) == pytest.approx((2, 0.225, 0.55, 0.25, 0.7))
    assert astuple(back[1]) == pytest.approx((0, 0.55, 0.525, 0.1, 0.05))


def test_empty_annotation_is_a_negative_frame() -> None:
    assert result_to_yolo([], CLASSES) == []
    assert yolo_text([]) == ""


def test_edge_noise_is_clamped_but_a_box_leaving_the_image_is_refused() -> None:
    [edge] = result_to_yolo([box("nut", 90.0, -0.00001, 10.00001, 5.0)], CLASSES)
    assert edge.cx + edge.w / 2 == pytest.approx(1.0) and edge.cy - edge.h / 2 >= 0.0
    with pytest.raises(LabelError, match="box 0: x from 95% to 107% leaves the image"):
        result_to_yolo([box("nut", 95.0, 10.0, 12.0, 5.0)], CLASSES)
    with pytest.raises(LabelError, match=r"y from -3% .* leaves the image"):
        result_to_yolo([box("nut", 5.0, -3.0, 12.0, 5.0)], CLASSES)


@pytest.mark.parametrize(("item", "reason"), [
    (box("screw", 1, 1, 5, 5), "unknown class 'screw'"),
    (box("nut", 1, 1, 0, 5), "x size 0% is not positive"),
    (box("nut", 1, 1, 5, 5, rotation=30), "rotated by 30 degrees"),
    (box("nut", 1, 1, 5, 5, rectanglelabels=["nut", "bolt"]), "exactly one label"),
    (box("nut", "1", 1, 5, 5), "x='1' is not a number"),
    ({**box("nut", 1, 1, 5, 5), "type": "polygonlabels"}, "a 'polygonlabels' result"),
])
def test_malformed_boxes_are_refused_with_the_reason(item: dict, reason: str) -> None:
    with pytest.raises(LabelError, match=reason):
        result_to_yolo([box("nut", 1, 1, 5, 5), item], CLASSES)


def test_a_detection_whose_class_disagrees_with_the_config_is_refused() -> None:
    wrong = Detection(cls=0, label="bolt", score=0.5, x1=0.1, y1=0.1, x2=0.2, y2=0.2)
    with pytest.raises(LabelError, match="class 0 'bolt' is not in the labelling classes"):
        detections_to_result([wrong], CLASSES, 320, 240)


def test_rectangle_is_what_the_label_studio_ui_submits() -> None:
    item = rectangle("bolt", 0.0, 0.5, 1.0, 1.0, 640, 480, region_id="a0")
    assert item["value"] == {"x": 0.0, "y": 50.0, "width": 100.0, "height": 50.0,
                             "rotation": 0, "rectanglelabels": ["bolt"]}
    assert item["id"] == "a0" and "score" not in item
