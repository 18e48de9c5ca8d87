"""Stage `evaluate`: the champion's and the candidate's ONNX files, scored through the edge
runtime's own detector on the golden regression set and the current drift slice, with latency.

Writes the metrics JSON the gate reads and a per-class AP50 table for `dvc plots`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flows.retrain.stages.params import stage_params

KEYS = {"imgsz", "threads"}
SLICES = ("golden", "drift")
PAIRED_FRAMES = 60  # frames each file is timed on, interleaved with the others


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--section", default="release_evaluate")
    parser.add_argument("--champion", type=Path, required=True, help="the champion's .onnx")
    parser.add_argument("--fp32", type=Path, required=True, help="the candidate's fp32 .onnx")
    parser.add_argument("--int8", type=Path, required=True, help="the candidate's int8 .onnx")
    parser.add_argument("--data", type=Path, required=True, help="folder holding golden/, drift/")
    parser.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--plots", type=Path, required=True, help="per-class AP table to write")
    args = parser.parse_args(argv)
    from flows.retrain.onnx_eval import evaluate_slices, list_images, paired_latency

    p = stage_params(args.params, args.section, KEYS)
    slices = {name: args.data / name for name in SLICES}
    files = {"champion": args.champion, "fp32": args.fp32, "int8": args.int8}
    results: dict[str, dict[str, object]] = {}
    rows = []
    for model, path in files.items():
        scored = evaluate_slices(path, slices, imgsz=p["imgsz"], threads=p["threads"])
        results[model] = {"file": str(path), **{s: r.as_dict() for s, r in scored.items()}}
        for name, result in scored.items():
            s = result.scores
            print(f"{model:>8} {name:>6}: mAP50 {s.map50:.3f}  mAP50-95 {s.map50_95:.3f}  "
                  f"infer p95 {result.infer.p95_ms:.1f} ms", file=sys.stderr, flush=True)
            rows += [{"model": model, "slice": name, "class": c, "ap50": ap}
                     for c, ap in s.ap50_per_class.items()]
    # The gate's latency ratio: the files timed side by side, on the same frames.
    timed = [i for folder in slices.values() for i in list_images(folder)][:PAIRED_FRAMES]
    for model, stats in paired_latency(files, timed, imgsz=p["imgsz"],
                                       threads=p["threads"]).items():
        results[model]["paired_latency"] = stats.as_dict()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"imgsz": p["imgsz"], "models": results}, indent=2) + "\n")
    args.plots.parent.mkdir(parents=True, exist_ok=True)
    args.plots.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
