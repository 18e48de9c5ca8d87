"""Stage `seed-evaluate`: mAP of a model on every scenario's test set, as one JSON file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flows.offline import use_offline_environment
from flows.retrain.stages.params import stage_params

KEYS = {"imgsz"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--section", default="evaluate")
    parser.add_argument("--model", type=Path, required=True, help=".pt or .onnx model")
    parser.add_argument("--data", type=Path, required=True, action="append",
                        help="folder holding test_<scenario>/ sets (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--var", type=Path, default=Path("var"))
    args = parser.parse_args(argv)
    use_offline_environment(args.var)
    from flows.retrain.ultralytics_yolo import evaluate

    p = stage_params(args.params, args.section, KEYS)
    tests = sorted((spec for folder in args.data for spec in folder.glob("test_*/data.yaml")),
                   key=lambda spec: spec.parent.name)
    if not tests:
        raise SystemExit(f"no test_*/data.yaml under {', '.join(map(str, args.data))}")
    names = [spec.parent.name for spec in tests]
    if len(set(names)) < len(names):
        raise SystemExit(f"two test sets of one scenario under {', '.join(map(str, args.data))}")
    results = {}
    for spec in tests:
        scenario = spec.parent.name.removeprefix("test_")
        metrics = evaluate(args.model, spec, p["imgsz"], args.var / "runs" / "evaluate")
        results[scenario] = metrics.as_dict()
        print(f"{scenario:>14}: mAP50 {metrics.map50:.3f}  mAP50-95 {metrics.map50_95:.3f}  "
              f"AP50 {metrics.ap50_per_class}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
