"""One retrain cycle at the demo's sizes, timed stage by stage: fine-tune + export + evaluate
(target: under 10 minutes on this 2-core machine), with the gate's verdict.

Builds a throwaway data project as a team makes one, with `edgeloop init`: the simulator's seed
set (baseline, as the example project's seed pipeline renders it) and the seed model as champion;
then one labelled increment of the `new_variant` scenario with the simulator's exact labels (what
one labelling round returns); runs `dvc repro profile` and reads DVC's stage starts off its
output. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.dvc_dataset import commit_folder  # noqa: E402
from flows.offline import pin_offline_environment  # noqa: E402
from sim.dataset import render_labelled_increment  # noqa: E402
from sim.seed_dataset import SeedSet, render_seed_dataset  # noqa: E402

BIN = Path(sys.executable).parent
AUTHOR = ("-c", "user.name=bench", "-c", "user.email=bench@edgeloop.invalid")
CYCLE = ("train", "export", "evaluate")
TARGET_S = 600.0
# --quick: the seed set and sizes of the retrain pipeline's own test, a smoke run of every stage
QUICK_SEED_SET = SeedSet(imgsz=128, seed_train=12, seed_val=6, seed_test=8)
QUICK_PARAMS = {"finetune": {"imgsz": 128, "batch": 8},
                "release_export": {"imgsz": 128, "calibration_frames": 8, "parity_frames": 2},
                "release_evaluate": {"imgsz": 128}, "profile": {"imgsz": 128}}


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed: {done.stderr[-2000:]}{done.stdout[-2000:]}")
    return done.stdout


def build_project(work: Path, args: argparse.Namespace, env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="edgeloop-seed-") as seed:
        dataset = render_seed_dataset(Path(seed) / "seed",
                                      QUICK_SEED_SET if args.quick else SeedSet())
        run([str(BIN / "edgeloop"), "init", str(work), "--model", str(args.champion), "--data",
             str(dataset), "--fleet", "line-1"], work.parent, env)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["finetune"]["epochs"] = args.epochs
    for section, values in (QUICK_PARAMS if args.quick else {}).items():
        params[section].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", *AUTHOR, "commit", "-qam", "bench: epochs"], work, env)
    folder = render_labelled_increment(work / "data" / "labelled" / "round-1", "new_variant",
                                       args.labelled, seed=21,
                                       width=params["finetune"]["imgsz"])
    commit_folder(work, folder, "labels: round-1")


def timed_repro(work: Path, env: dict[str, str]) -> tuple[dict[str, float], float]:
    """Seconds per stage (from one stage's start to the next's) of `dvc repro profile`."""
    started = time.monotonic()
    process = subprocess.Popen([str(BIN / "dvc"), "repro", "profile"], cwd=work, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: list[tuple[str, float]] = []
    tail: list[str] = []
    for line in process.stdout or []:
        tail = [*tail[-30:], line]
        match = re.match(r"Running stage '([\w-]+)'", line)
        if match:
            marks.append((match.group(1), time.monotonic()))
            print(f"  stage {match.group(1)} at {marks[-1][1] - started:.0f} s", file=sys.stderr)
    if process.wait() != 0:
        raise SystemExit("dvc repro failed:\n" + "".join(tail))
    end = time.monotonic()
    stops = [t for _, t in marks[1:]] + [end]
    return {name: round(stop - t, 1) for (name, t), stop in zip(marks, stops, strict=True)}, \
        end - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--champion", type=Path, default=ROOT / "tests/fixtures/seed_best.pt")
    parser.add_argument("--labelled", type=int, default=50,
                        help="frames in the labelled increment (one labelling round)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true",
                        help="a seed set of a few dozen frames at imgsz 128: a smoke run of every "
                             "stage (the tests), not the demo's sizes")
    parser.add_argument("--keep", type=Path, default=None, help="build the project here")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    env = {**os.environ, **pin_offline_environment(ROOT / "var" / "bench"),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    work = args.keep or Path(tempfile.mkdtemp(prefix="edgeloop-retrain-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"building the project in {work}", file=sys.stderr)
    build_project(work, args, env)
    print("prepare (not timed as the cycle)", file=sys.stderr)
    stages, total = timed_repro(work, env)
    cycle = sum(stages.get(s, 0.0) for s in CYCLE)
    gate = json.loads((work / "metrics" / "gate.json").read_text())
    prepared = json.loads((work / "metrics" / "prepare.json").read_text())
    evaluation = json.loads((work / "metrics" / "evaluate.json").read_text())
    result: dict[str, Any] = {
        "quick": args.quick, "labelled_frames": args.labelled, "epochs": args.epochs,
        "cpu_cores": os.cpu_count(),
        "prepared_frames": prepared["frames"], "stage_s": stages, "repro_s": round(total, 1),
        "cycle_s": round(cycle, 1), "cycle_stages": list(CYCLE),
        "target_cycle_s": TARGET_S, "met": cycle < TARGET_S,
        "gate": {"ship": gate["ship"], "artefact": gate["artefact"], "reasons": gate["reasons"]},
        "map50_95": {m: {s: round(evaluation["models"][m][s]["map50_95"], 4)
                         for s in ("golden", "drift")} for m in evaluation["models"]},
        "project": str(work)}
    print(json.dumps(result, indent=None if args.json else 2))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
