"""Int8 quantisation of an exported YOLO ONNX model, and the checks an exported file must pass:
a valid graph that names its classes, and the same raw output as the weights it came from.
"""

from __future__ import annotations

import ast
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edge_runtime.detector import Detector

if TYPE_CHECKING:
    import torch

# Raw-output tolerances of an fp32 export against its PyTorch weights. Measured on the seed model
# (baseline frames at 320 and 640): boxes differ by at most 4.3e-4 px, scores by 1.6e-6. Faults
# are far larger: doubling the first conv's weights moves boxes by 300 px; doubling the last
# class conv's moves scores by only 9e-4, which is why the score bound is tight.
BOX_TOL = 0.01  # letterboxed pixels (cx, cy, w, h run up to imgsz)
SCORE_TOL = 1e-4  # class probabilities


class ExportCheckError(ValueError):
    """An exported model file is not one the device can run as it stands."""


@dataclass(frozen=True)
class ParityReport:
    """The largest raw-output differences between ONNX Runtime and PyTorch over some frames."""

    frames: int
    box_max_abs: float  # cx, cy, w, h in letterboxed pixels
    score_max_abs: float  # per-class probabilities

    def within(self, box_tol: float = BOX_TOL, score_tol: float = SCORE_TOL) -> bool:
        return self.box_max_abs <= box_tol and self.score_max_abs <= score_tol


def network_inputs(model: Path, images: Iterable[np.ndarray], imgsz: int
                   ) -> Iterator[np.ndarray]:
    """The (1, 3, H, W) tensors the device feeds `model` for BGR uint8 `images`: its own
    letterbox, stride and shape rule (the minimum stride rectangle for a dynamic model)."""
    detector = Detector(model, imgsz=imgsz, threads=1)
    for image in images:
        yield detector.prepare(image).tensor


class LetterboxCalibration(CalibrationDataReader):
    """Calibration images for the quantiser, letterboxed as the device will letterbox frames."""

    def __init__(self, model: Path, images: Sequence[Path], imgsz: int) -> None:
        self._input = onnx.load(str(model), load_external_data=False).graph.input[0].name
        self._tensors = network_inputs(model, (read_image(p) for p in images), imgsz)

    def get_next(self) -> dict[str, np.ndarray] | None:
        tensor = next(self._tensors, None)
        return None if tensor is None else {self._input: tensor}


def quantize_int8(fp32: Path, out: Path, calibration_images: Sequence[Path], imgsz: int) -> Path:
    """Write a static int8 (QDQ) copy of the fp32 model to `out`, calibrated on
    `calibration_images` letterboxed at `imgsz`, with the fp32 file's metadata; returns `out`.

    Choices, measured on the seed model at 640 (frames 640x480, 2 threads, 32 calibration
    frames, mAP50-95 on 100 baseline test frames): fp32 runs in 33 ms at mAP 42.7. Quantising
    every node scores mAP 0.0; keeping the head's decoding in fp32 (`head_decode_nodes`) runs in
    20 ms at mAP 42.7 and costs no measurable time against quantising all. Also tried: the DFL
    softmax quantised (no faster, -0.9 mAP); SiLU's Sigmoid/Mul kept fp32 (+5 ms). MinMax
    calibration loses nothing, so Percentile and Entropy were not needed. QInt8 per-channel
    weights with QUInt8 activations is ONNX Runtime's advice for x86 CPUs. Weights keep 7 bits
    (`reduce_range`): on an x86 CPU without VNNI (AVX2 only, as this project's CI machine) ONNX
    Runtime's fused u8 x s8 kernel adds pairs of products in int16 and saturates with full-range
    weights (measured on a 1x1 conv: 25% of the output range wrong; 0.8% with 7 bits).
    """
    if not calibration_images:
        raise ValueError("int8 quantisation needs at least one calibration image")
    check_onnx(fp32)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".int8-") as work:
        prepared, quantized = Path(work) / "prepared.onnx", Path(work) / "int8.onnx"
        # Symbolic shape inference fails on a dynamic input size; ONNX's own inference suffices.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            LetterboxCalibration(fp32, calibration_images, imgsz),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            reduce_range=True,
            nodes_to_exclude=head_decode_nodes(onnx.load(str(prepared))),
        )
        copy_metadata(fp32, quantized)
        os.replace(quantized, out)
    return out


def head_decode_nodes(model: onnx.ModelProto) -> list[str]:
    """The detection head's nodes that turn its conv outputs into boxes and scores.

    Quantised, they wreck the output: the last Concat joins boxes (0..imgsz pixels) and scores
    (0..1) under one uint8 scale, which rounds every score to 0, and the DFL's fixed 0..15
    weights lose up to a pixel per side. The head is the module (node-name prefix such as
    "/model.23/", as Ultralytics' export names nodes) that produces the first output; its
    per-level conv branches (cv2.*, cv3.*) hold nearly all its compute and stay quantised.
    """
    output = model.graph.output[0].name
    producer = next((n for n in model.graph.node if output in n.output), None)
    if producer is None or "/" not in producer.name.strip("/"):
        raise ExportCheckError(f"cannot find the detection head: output {output!r} is not made "
                               f"by a node named like Ultralytics' '/model.N/...'")
    head = producer.name.rsplit("/", 1)[0] + "/"
    branches = (f"{head}cv2.", f"{head}cv3.")
    return [n.name for n in model.graph.node
            if n.name.startswith(head) and not n.name.startswith(branches)]


def check_onnx(path: Path) -> None:
    """Raise ExportCheckError unless `path` is a valid ONNX model whose metadata names classes."""
    if not path.is_file():
        raise ExportCheckError(f"model file {path} does not exist")
    try:
        onnx.checker.check_model(str(path))  # by path: also works past protobuf's 2 GB limit
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises ValidationError, DecodeError, ... on a bad file
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportCheckError(f"{path} is not a valid ONNX model: {reason}") from error
    names = {p.key: p.value for p in model.metadata_props}.get("names", "")
    try:
        parsed = ast.literal_eval(names) if names else None
    except (ValueError, SyntaxError):
        parsed = None
    if not isinstance(parsed, dict) or not parsed:
        raise ExportCheckError(f"{path} has no class names in its metadata (names={names!r})")


def torch_parity(weights: Path, onnx_path: Path, images: Sequence[np.ndarray], imgsz: int
                 ) -> ParityReport:
    """ONNX Runtime's raw first output against the PyTorch weights' on the same letterboxed
    `images` (BGR uint8), as the largest absolute differences of box coordinates and scores."""
    import onnxruntime as ort
    import torch

    if not images:
        raise ValueError("torch parity needs at least one image")
    model = load_torch_model(weights)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    box_diff = score_diff = 0.0
    for tensor in network_inputs(onnx_path, images, imgsz):
        with torch.inference_mode():
            expected = model(torch.from_numpy(tensor))[0].numpy()
        got = session.run(None, {name: tensor})[0]
        if got.shape != expected.shape:
            raise ExportCheckError(f"{onnx_path} outputs {got.shape}, the weights "
                                   f"{expected.shape}")
        diff = np.abs(got - expected)
        box_diff = max(box_diff, float(diff[:, :4].max()))
        score_diff = max(score_diff, float(diff[:, 4:].max()))
    return ParityReport(len(images), box_diff, score_diff)


def load_torch_model(weights: Path) -> torch.nn.Module:
    """The graph Ultralytics exports: float weights, BatchNorm fused into convs, eval mode.
    Called on a (1, 3, H, W) tensor it returns a tuple whose [0] is (1, 4 + nc, n)."""
    import torch
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect").model
    if not isinstance(model, torch.nn.Module):
        raise ExportCheckError(f"{weights} holds no PyTorch detection model")
    fused: torch.nn.Module = model.float().fuse(verbose=False).eval()
    fused.requires_grad_(False)
    return fused


def copy_metadata(source: Path, target: Path) -> None:
    """Give `target` every metadata entry of `source` that it lacks."""
    wanted = {p.key: p.value
              for p in onnx.load(str(source), load_external_data=False).metadata_props}
    model = onnx.load(str(target))
    present = {p.key: p.value for p in model.metadata_props}
    if wanted.keys() - present.keys():
        onnx.helper.set_model_props(model, {**wanted, **present})
        onnx.save(model, str(target))


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"image {path} cannot be read")
    return image
