"""Stage `export`: the candidate's weights to ONNX fp32 and static int8 (QDQ), each checked.

Writes `model.onnx` and `model.int8.onnx` beside the weights' output folder and a report with
onnx.checker's verdict on each file and the fp32 file's difference from the PyTorch weights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from flows.offline import use_offline_environment
from flows.retrain.stages.params import stage_params

KEYS = {"imgsz", "dynamic", "calibration_frames", "parity_frames"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def evenly_spaced(folder: Path, count: int) -> list[Path]:
    """`count` images spread over the folder's name order (the same ones every run)."""
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SystemExit(f"export: no images in {folder}")
    step = max(len(images) / count, 1.0)
    return [images[int(i * step)] for i in range(min(count, len(images)))]


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise SystemExit(f"export: cannot read image {path}")
    return image


def checker_error(path: Path) -> str | None:
    from flows.retrain.onnx_export import ExportCheckError, check_onnx

    try:
        check_onnx(path)
    except ExportCheckError as exc:
        return str(exc)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--section", default="release_export")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for the .onnx files")
    parser.add_argument("--calibration", type=Path, required=True,
                        help="image folder to calibrate int8 on (training images)")
    parser.add_argument("--parity", type=Path, required=True,
                        help="image folder to compare ONNX with PyTorch on")
    parser.add_argument("--report", type=Path, required=True, help="JSON report to write")
    parser.add_argument("--var", type=Path, default=Path("var"))
    args = parser.parse_args(argv)
    use_offline_environment(args.var)
    from flows.retrain.onnx_export import quantize_int8, torch_parity
    from flows.retrain.ultralytics_yolo import export_onnx

    p = stage_params(args.params, args.section, KEYS)
    fp32 = export_onnx(args.weights, args.out_dir / "model.onnx", p["imgsz"],
                       dynamic=p["dynamic"])
    report: dict[str, object] = {"imgsz": p["imgsz"]}
    parity_images = [read_image(x) for x in evenly_spaced(args.parity, p["parity_frames"])]
    parity = torch_parity(args.weights, fp32, parity_images, p["imgsz"])
    report["fp32"] = {"file": str(fp32), "checker_error": checker_error(fp32),
                      "parity": {"frames": parity.frames, "box_max_abs_px": parity.box_max_abs,
                                 "score_max_abs": parity.score_max_abs}}
    print(f"fp32 {fp32}: ONNX vs PyTorch max diff boxes {parity.box_max_abs:.2e} px, "
          f"scores {parity.score_max_abs:.2e}", flush=True)
    calibration = evenly_spaced(args.calibration, p["calibration_frames"])
    int8 = quantize_int8(fp32, args.out_dir / "model.int8.onnx", calibration, p["imgsz"])
    report["int8"] = {"file": str(int8), "checker_error": checker_error(int8),
                      "calibration_frames": len(calibration)}
    print(f"int8 {int8}: calibrated on {len(calibration)} training frames", flush=True)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
