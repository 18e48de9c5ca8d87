"""Stage `seed-export`: export trained weights to ONNX (dynamic input size by default)."""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.offline import use_offline_environment
from flows.retrain.stages.params import stage_params

KEYS = {"imgsz", "dynamic"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--section", default="export")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="path of the .onnx file")
    parser.add_argument("--var", type=Path, default=Path("var"))
    args = parser.parse_args(argv)
    use_offline_environment(args.var)
    from flows.retrain.ultralytics_yolo import export_onnx

    p = stage_params(args.params, args.section, KEYS)
    path = export_onnx(args.weights, args.out, p["imgsz"], dynamic=p.get("dynamic", True))
    print(f"exported {path}")


if __name__ == "__main__":
    main()
