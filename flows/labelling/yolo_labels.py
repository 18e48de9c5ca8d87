"""Boxes between the three forms the loop uses: contract detections (0..1 corners), Label Studio
rectangle results (percent of the image, top-left corner) and YOLO label lines (centre, 0..1).

Our own converter, not Label Studio's YOLO export: class ids come from *our* class order (the
model's), where the export numbers classes alphabetically; and every box is checked, so a bad
annotation is refused with its reason instead of landing in a training set. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge_runtime.contract import Detection

CONTROL_NAME = "label"  # the RectangleLabels tag's name in configs/labelstudio.xml
IMAGE_NAME = "image"  # the Image tag's name; its value is the task data field `image`
RESULT_TYPE = "rectanglelabels"
EDGE_TOLERANCE_PCT = 1e-4  # float noise from the UI; anything further outside is a real error


class LabelError(ValueError):
    """An annotation that cannot become a YOLO label (the message names the box and why)."""


@dataclass(frozen=True)
class YoloBox:
    """One YOLO label line: class id and centre/size as shares of the image (0..1)."""

    cls: int
    cx: float
    cy: float
    w: float
    h: float

    def line(self) -> str:
        return f"{self.cls} {self.cx:.6f} {self.cy:.6f} {self.w:.6f} {self.h:.6f}"


def yolo_text(boxes: Sequence[YoloBox]) -> str:
    """A label file's content; empty for a frame with nothing on it (a valid negative)."""
    return "".join(f"{box.line()}\n" for box in boxes)


def rectangle(label: str, x1: float, y1: float, x2: float, y2: float, width: int, height: int,
              *, score: float | None = None, region_id: str | None = None) -> dict[str, Any]:
    """A Label Studio rectangle result from 0..1 corners."""
    item: dict[str, Any] = {
        "from_name": CONTROL_NAME, "to_name": IMAGE_NAME, "type": RESULT_TYPE,
        "original_width": width, "original_height": height, "image_rotation": 0,
        "value": {"x": x1 * 100.0, "y": y1 * 100.0, "width": (x2 - x1) * 100.0,
                  "height": (y2 - y1) * 100.0, "rotation": 0, "rectanglelabels": [label]},
    }
    if score is not None:
        item["score"] = score
    if region_id is not None:
        item["id"] = region_id
    return item


def detections_to_result(detections: Sequence[Detection], classes: Sequence[str], width: int,
                         height: int) -> list[dict[str, Any]]:
    """The model's boxes as a pre-annotation, each with its own score.

    A detection whose class id and name disagree with `classes` means the model and the
    labelling config were built for different class lists: refused, never relabelled.
    """
    out = []
    for i, d in enumerate(detections):
        if d.cls >= len(classes) or classes[d.cls] != d.label:
            raise LabelError(f"detection {i}: class {d.cls} {d.label!r} is not in the labelling "
                             f"classes {list(classes)} at that position")
        out.append(rectangle(d.label, d.x1, d.y1, d.x2, d.y2, width, height, score=d.score,
                             region_id=f"p{i}"))
    return out


def _number(value: Mapping[str, Any], key: str, where: str) -> float:
    number = value.get(key)
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise LabelError(f"{where}: {key}={number!r} is not a number")
    return float(number)


def _within(start: float, size: float, axis: str, where: str) -> tuple[float, float]:
    """The box's extent on one axis, as 0..1 shares; refused if it leaves the image."""
    if size <= 0:
        raise LabelError(f"{where}: {axis} size {size:g}% is not positive")
    end = start + size
    if start < -EDGE_TOLERANCE_PCT or end > 100.0 + EDGE_TOLERANCE_PCT:
        raise LabelError(f"{where}: {axis} from {start:g}% to {end:g}% leaves the image")
    return max(start, 0.0) / 100.0, min(end, 100.0) / 100.0


def result_to_yolo(result: Sequence[Mapping[str, Any]], classes: Sequence[str]
                   ) -> list[YoloBox]:
    """YOLO boxes of one annotation's result, class ids in the order of `classes`.

    An empty result is a frame with nothing to label (a negative), not an error.
    """
    boxes = []
    for i, item in enumerate(result):
        where = f"box {i}"
        kind = item.get("type")
        if kind != RESULT_TYPE or item.get("from_name") != CONTROL_NAME:
            raise LabelError(f"{where}: a {kind!r} result of {item.get('from_name')!r}, expected "
                             f"{RESULT_TYPE!r} of {CONTROL_NAME!r}")
        value = item.get("value")
        if not isinstance(value, Mapping):
            raise LabelError(f"{where}: no value")
        labels = value.get("rectanglelabels")
        if not isinstance(labels, list) or len(labels) != 1:
            raise LabelError(f"{where}: needs exactly one label, has {labels!r}")
        if labels[0] not in classes:
            raise LabelError(f"{where}: unknown class {labels[0]!r}; known: {list(classes)}")
        if abs(float(value.get("rotation") or 0.0)) > 1e-6:
            raise LabelError(f"{where}: rotated by {value.get('rotation')} degrees; YOLO boxes "
                             "are axis-aligned")
        x1, x2 = _within(_number(value, "x", where), _number(value, "width", where), "x", where)
        y1, y2 = _within(_number(value, "y", where), _number(value, "height", where), "y", where)
        boxes.append(YoloBox(classes.index(labels[0]), (x1 + x2) / 2, (y1 + y2) / 2,
                             x2 - x1, y2 - y1))
    return boxes
