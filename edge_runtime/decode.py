"""What a YOLO detection export's first output means, and its decoding into boxes on the image.

Ultralytics 8.4 exports a detection model's output `output0` in one of two layouts:
- the raw head, `(1, 4 + nc, anchors)`: cx, cy, w, h and per-class scores for every anchor, in
  network-input pixels; NMS is ours to do (`nms=None`, the default, YOLOv8/11 and YOLO26 alike);
- rows of boxes, `(1, max_det, 6)`: x1, y1, x2, y2, score, class in network-input pixels, best
  score first. With `nms=True` the graph ran NMS itself (at the `conf` and `iou` it was exported
  with) and pads with zero rows; YOLO26 exported with `nms=False` keeps its one-to-one head, whose
  top-k rows need no NMS at all.
The layout is read once from the output's shape and the export's metadata; the decoders are pure
functions over numpy arrays, as Ultralytics' own (non_max_suppression, scale_boxes).
"""

from __future__ import annotations

import ast
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MAX_NMS_CANDIDATES = 30000
CLASS_OFFSET = 7680.0  # boxes of different classes never overlap after this shift (as Ultralytics)
ROW_FIELDS = 6  # x1, y1, x2, y2, score, class


class OutputLayoutError(ValueError):
    """A model output this runtime cannot decode (the message gives its shape)."""


class OutputLayout(enum.StrEnum):
    RAW = "raw"  # (1, 4 + nc, anchors): the head's boxes and class scores; NMS here
    NMS = "nms"  # (1, max_det, 6): NMS ran inside the graph (exported with nms=True)
    END2END = "end2end"  # (1, max_det, 6): YOLO26's one-to-one head, no NMS needed (nms=False)


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the network input, to map boxes back."""

    gain_x: float
    gain_y: float
    pad_x: int
    pad_y: int
    width: int  # original image
    height: int
    content: tuple[slice, slice]  # rows and columns of the input that hold the image


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (n, 4) float32 xyxy in original image pixels
    scores: np.ndarray  # (n,) float32
    classes: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.scores)


Dim = int | str | None  # ONNX Runtime gives a symbolic dimension as its name (or None)


def _export_args(metadata: Mapping[str, str]) -> dict[str, object]:
    try:
        args = ast.literal_eval(metadata.get("args", "{}"))
    except (ValueError, SyntaxError):
        return {}
    return args if isinstance(args, dict) else {}


def output_layout(shape: Sequence[Dim], nc: int, metadata: Mapping[str, str]) -> OutputLayout:
    """The layout of a detection model's first output, from its declared shape and the export's
    metadata (`end2end`, `args: {nms: ...}`); OutputLayoutError for any other."""
    if len(shape) == 3:
        rows, cols = shape[1], shape[2]
        # rows of boxes: a fixed max_det, then 6 fields (a dynamic export may name that dimension)
        boxes = isinstance(rows, int) and (cols == ROW_FIELDS or not isinstance(cols, int))
        end2end = metadata.get("end2end") == "True"
        if end2end or _export_args(metadata).get("nms") is True:
            if boxes:
                return OutputLayout.END2END if end2end else OutputLayout.NMS
        elif rows == 4 + nc:
            return OutputLayout.RAW
        elif boxes and cols == ROW_FIELDS:  # an export whose metadata does not say
            return OutputLayout.NMS
    raise OutputLayoutError(
        f"first output {list(shape)} is neither the raw head (1, 4 + {nc}, anchors) nor rows of "
        f"boxes (1, max_det, {ROW_FIELDS}) from an export with NMS inside or an end-to-end head")


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS; returns kept indices, best score first (at most `max_keep`).

    Each kept box is compared only with the boxes still standing, so the cost follows what
    survives rather than the square of the candidates (thousands at a validation threshold).
    """
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size and (max_keep is None or len(keep) < max_keep):
        best, rest = order[0], order[1:]
        keep.append(int(best))
        lt = np.maximum(boxes[best, :2], boxes[rest, :2])
        rb = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        iou = inter / (area[best] + area[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return np.array(keep, np.int64)


def _on_image(xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray, box: Letterbox
              ) -> Detections:
    """Boxes in network-input pixels back onto the original image (as scale_boxes)."""
    xyxy = np.array(xyxy, np.float32)
    xyxy[:, [0, 2]] = ((xyxy[:, [0, 2]] - box.pad_x) / box.gain_x).clip(0, box.width)
    xyxy[:, [1, 3]] = ((xyxy[:, [1, 3]] - box.pad_y) / box.gain_y).clip(0, box.height)
    return Detections(xyxy, scores.astype(np.float32), classes.astype(np.int64))


def decode_raw(output: np.ndarray, box: Letterbox, conf: float, iou: float, max_det: int
               ) -> Detections:
    """The raw head `(1, 4 + nc, n)` (cx, cy, w, h, class scores): best class per anchor over
    `conf`, class-aware NMS at `iou`, at most `max_det` boxes on the image."""
    if output.ndim != 3 or output.shape[1] <= 4:
        raise OutputLayoutError(f"raw head output {list(output.shape)} is not (1, 4 + nc, n)")
    pred = output[0]
    scores_all = pred[4:]
    classes = scores_all.argmax(axis=0)
    scores = scores_all[classes, np.arange(pred.shape[1])]
    chosen = np.flatnonzero(scores > conf)
    if len(chosen) > MAX_NMS_CANDIDATES:
        chosen = chosen[np.argsort(-scores[chosen])[:MAX_NMS_CANDIDATES]]
    cx, cy, w, h = pred[:4, chosen]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    scores, classes = scores[chosen], classes[chosen]
    keep = nms(xyxy + (classes * CLASS_OFFSET)[:, None], scores, iou, max_det)
    return _on_image(xyxy[keep], scores[keep], classes[keep], box)


def decode_rows(output: np.ndarray, box: Letterbox, conf: float, iou: float, max_det: int
                ) -> Detections:
    """Rows of boxes `(1, k, 6)` (x1, y1, x2, y2, score, class), already suppressed by the graph
    (NMS inside or an end-to-end head): the first `max_det` rows scoring over `conf` on the
    image. `iou` is the graph's own business (as Ultralytics, which passes these rows through)."""
    if output.ndim != 3 or output.shape[2] != ROW_FIELDS:
        raise OutputLayoutError(f"output {list(output.shape)} is not rows of boxes "
                                f"(1, max_det, {ROW_FIELDS})")
    rows = output[0]
    rows = rows[rows[:, 4] > conf][:max_det]  # the zero rows that pad an NMS export drop here
    return _on_image(rows[:, :4], rows[:, 4], np.rint(rows[:, 5]), box)


Decoder = Callable[[np.ndarray, Letterbox, float, float, int], Detections]
DECODERS: dict[OutputLayout, Decoder] = {
    OutputLayout.RAW: decode_raw,
    OutputLayout.NMS: decode_rows,
    OutputLayout.END2END: decode_rows,
}
