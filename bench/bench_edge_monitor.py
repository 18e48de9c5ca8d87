"""Monitoring overhead and pipelined throughput of the edge agent with the seed model.

Runs `edgeloop edge bench` at imgsz 320 and 640 and prints one JSON line each: in the steady
state (the sampler's hourly budgets spent, as a device runs nearly all the time), then with
--burst (the first frames of an hour, every budget open: kept frames are JPEG-encoded on the
spool writer's thread). Needs the seed model (`make seed` writes models/champion/model.onnx);
pass another with --model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=ROOT / "models/champion/model.onnx")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--imgsz", default="320,640", help="input sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=5,
                        help="runs of the pipelined loop per line (`edge bench --runs`)")
    parser.add_argument("--json", action="store_true",
                        help="accepted for `make bench`: the output is JSON lines anyway")
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"bench_edge_monitor: {args.model} is missing; run `make seed` first")
    edgeloop = Path(sys.executable).parent / "edgeloop"
    sizes = [int(s) for s in args.imgsz.split(",")]
    for mode, imgsz in [(m, i) for m in ([], ["--burst"]) for i in sizes]:
        result = subprocess.run(
            [str(edgeloop), "edge", "bench", "--model", str(args.model), "--imgsz", str(imgsz),
             "--frames", str(args.frames), "--runs", str(args.runs), "--json", *mode],
            cwd=ROOT, capture_output=True, text=True, check=True)
        figures = json.loads(result.stdout)
        print(json.dumps({"bench": "edge_monitor", **figures}))


if __name__ == "__main__":
    main()
