"""YOLO detection with ONNX Runtime: letterbox, inference, and the decoder of the export's output
layout (edge_runtime.decode: the raw head, NMS inside, YOLO26's end-to-end head).

Pre- and post-processing follow Ultralytics' own (LetterBox, non_max_suppression, scale_boxes)
so that the device's boxes match what the training side measured.
"""

from __future__ import annotations

import ast
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from edge_runtime.decode import (
    DECODERS,
    Detections,
    Letterbox,
    OutputLayout,
    OutputLayoutError,
    output_layout,
)

PAD_VALUE = 114
THUMB_WIDTH = 80  # pixels across the thumbnail that telemetry and the sampler read
PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CoreMLExecutionProvider",
    "CPUExecutionProvider",
)


class ModelLoadError(ValueError):
    """The file is not a YOLO detection model this runtime can run."""


class UnknownOutputLayout(ModelLoadError):
    """The model's first output is in no layout this runtime decodes (the message gives it)."""


class InputSizeError(ValueError):
    """A requested input size the model cannot take."""


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    version: str  # from the model's metadata, else a prefix of its sha256
    names: tuple[str, ...]
    imgsz: tuple[int, int]  # (height, width) the detector letterboxes to
    stride: int
    dynamic: bool  # the graph takes any input size (letterbox to the minimum rectangle)
    layout: OutputLayout  # what its first output holds, and so how it is decoded
    has_embedding: bool
    providers: tuple[str, ...]


@dataclass(frozen=True)
class Prepared:
    """An image letterboxed into the network input, ready to run."""

    tensor: np.ndarray  # (1, 3, H, W) float32 RGB 0..1
    letterbox: Letterbox
    thumbnail: np.ndarray  # small BGR uint8 copy of the frame
    pre_ms: float
    thumb_ms: float


@dataclass(frozen=True)
class Inference:
    """One frame through the detector, with what telemetry reuses (nothing is recomputed)."""

    detections: Detections
    tensor: np.ndarray  # (1, 3, H, W) float32 RGB 0..1, the network input
    letterbox: Letterbox
    thumbnail: np.ndarray  # small BGR uint8 copy of the frame
    embedding: np.ndarray | None
    pre_ms: float
    infer_ms: float
    post_ms: float
    thumb_ms: float  # monitoring cost paid inside the detector (counted as monitoring)


def select_providers(available: list[str] | None = None, requested: list[str] | None = None
                     ) -> list[str]:
    """The execution providers to use: the requested ones that exist, else the best present."""
    available = available if available is not None else ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ModelLoadError(f"execution providers not available here: {', '.join(missing)} "
                                 f"(available: {', '.join(available)})")
        return list(requested)
    return [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]


def letterbox(image: np.ndarray, shape: tuple[int, int], stride: int, auto: bool
              ) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad with grey to `shape` (or the minimum stride multiple)."""
    h0, w0 = image.shape[:2]
    ratio = min(shape[0] / h0, shape[1] / w0)
    new_w, new_h = max(round(w0 * ratio), 1), max(round(h0 * ratio), 1)
    dw, dh = shape[1] - new_w, shape[0] - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    top, bottom = round(dh / 2 - 0.1), round(dh / 2 + 0.1)
    left, right = round(dw / 2 - 0.1), round(dw / 2 + 0.1)
    resized = image if (w0, h0) == (new_w, new_h) else cv2.resize(
        image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    padded = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                value=(PAD_VALUE,) * 3)
    rgb = cv2.cvtColor(padded, cv2.COLOR_BGR2RGB)
    tensor = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
    tensor /= 255  # as Ultralytics, to the bit: *= 1/255 rounds differently (0.05 ms dearer)
    box = Letterbox(new_w / w0, new_h / h0, left, top, w0, h0,
                    (slice(top, top + new_h), slice(left, left + new_w)))
    return tensor, box


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A small BGR uint8 copy of the frame (THUMB_WIDTH across, same aspect ratio).

    Telemetry and the sampler read only this: a handful of OpenCV calls on 5,000 pixels cost
    microseconds even right after inference has evicted everything from the CPU caches.
    """
    h, w = image.shape[:2]
    size = (min(THUMB_WIDTH, w), max(1, round(h * min(THUMB_WIDTH, w) / w)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)  # INTER_AREA: 6x dearer


def _read_info(session: ort.InferenceSession, path: Path, imgsz: int | None) -> ModelInfo:
    meta = session.get_modelmeta().custom_metadata_map
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ModelLoadError(f"{path} is not a detection model: it needs one NCHW image input")
    _, _, in_h, in_w = inputs[0].shape
    dynamic = not (isinstance(in_h, int) and isinstance(in_w, int))
    try:
        names_map = ast.literal_eval(meta["names"])
        names = tuple(str(names_map[i]) for i in range(len(names_map)))
    except (KeyError, ValueError, SyntaxError) as error:
        raise ModelLoadError(f"{path} has no readable class names in its metadata") from error
    stride = int(meta.get("stride", 32))
    if imgsz is not None:
        if imgsz % stride or imgsz < stride:
            raise InputSizeError(f"input size {imgsz} is not a positive multiple of the "
                                 f"model's stride {stride}")
        if not dynamic and (imgsz, imgsz) != (in_h, in_w):
            raise InputSizeError(f"{path} takes only {in_w}x{in_h} input, not {imgsz}")
        size = (imgsz, imgsz)
    elif not dynamic:
        size = (int(in_h), int(in_w))
    else:
        size = tuple(ast.literal_eval(meta.get("imgsz", "[640, 640]")))  # type: ignore[assignment]
    outputs = [o.name for o in session.get_outputs()]
    try:
        layout = output_layout(session.get_outputs()[0].shape, len(names), meta)
    except OutputLayoutError as error:
        raise UnknownOutputLayout(f"{path}: {error}") from error
    version = meta.get("edgeloop_version") or hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return ModelInfo(path, version, names, size, stride, dynamic, layout, "embedding" in outputs,
                     tuple(session.get_providers()))


class Detector:
    """A YOLO ONNX model ready to run on frames; thresholds as Ultralytics' predict defaults.

    An export with NMS inside ran it at the `conf` and `iou` it was exported with: `conf` here
    can only raise its threshold, and `iou` does not apply.
    """

    def __init__(
        self,
        path: Path,
        *,
        imgsz: int | None = None,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        threads: int = 0,
        providers: list[str] | None = None,
    ) -> None:
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=select_providers(None, providers))
        except ModelLoadError:
            raise
        except Exception as error:  # ORT raises its own untyped errors for unreadable files
            raise ModelLoadError(f"cannot load {path}: {str(error).splitlines()[0]}") from error
        if not (0 < conf < 1 and 0 < iou <= 1 and max_det >= 1):
            raise ValueError(f"conf={conf} and iou={iou} must be in (0, 1) and (0, 1], "
                             f"max_det={max_det} at least 1")
        self.info = _read_info(self.session, path, imgsz)
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self._decoder = DECODERS[self.info.layout]
        self._input = self.session.get_inputs()[0].name
        self._outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, image: np.ndarray) -> Inference:
        return self.infer(self.prepare(image))

    def prepare(self, image: np.ndarray) -> Prepared:
        """Letterbox the image into the network input (and take a thumbnail of it)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a BGR uint8 image, got {image.dtype} {image.shape}")
        t0 = time.perf_counter()
        tensor, box = letterbox(image, self.info.imgsz, self.info.stride, auto=self.info.dynamic)
        t1 = time.perf_counter()
        thumb = thumbnail(image)
        t2 = time.perf_counter()
        return Prepared(tensor, box, thumb, (t1 - t0) * 1000, (t2 - t1) * 1000)

    def infer(self, prepared: Prepared) -> Inference:
        """Run the network on a prepared input and decode its boxes."""
        t0 = time.perf_counter()
        outputs = self.session.run(self._outputs, {self._input: prepared.tensor})
        t1 = time.perf_counter()
        detections = self.decode(outputs[0], prepared.letterbox)
        embedding = None
        if self.info.has_embedding:
            embedding = np.asarray(outputs[self._outputs.index("embedding")], np.float32).ravel()
        t2 = time.perf_counter()
        return Inference(detections, prepared.tensor, prepared.letterbox, prepared.thumbnail,
                         embedding, prepared.pre_ms, (t1 - t0) * 1000, (t2 - t1) * 1000,
                         prepared.thumb_ms)

    def decode(self, output: np.ndarray, box: Letterbox) -> Detections:
        """The model's first output as boxes on the image, by its layout's decoder."""
        return self._decoder(output, box, self.conf, self.iou, self.max_det)
