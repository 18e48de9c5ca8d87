"""The fine-tune recipe, side by side: how much of the drifted domain each recipe wins back, what
it costs on the old data, and how long it trains (issue 19: >= 95% of the pre-drift mAP50).

One seed set (the demo's sizes), one labelled increment of `--labels` frames of the drifted
scenario with the simulator's labels, the seed model as champion. Each recipe (a JSON object of
`finetune` params, plus `replay_share`) is prepared (`flows.retrain.prepare`), fine-tuned
(`flows.retrain.ultralytics_yolo.train`), exported to fp32 ONNX and scored through the device's
detector on held-out frames: mAP50 on the drifted and the baseline domain (the demo's measure, its
seed), mAP50-95 on the golden set (the gate's measure). Prints JSON.

    .venv/bin/python bench/retrain_recipe.py --json \\
        --recipe '{}' --recipe '{"replay_share": 0.5, "epochs": 15}'
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows.offline import use_offline_environment  # noqa: E402

EVAL_SEED = 9001  # the demo's held-out frames (demo.loop.EVAL_SEED)
INCREMENT_SEED = 5151  # the labelled frames: neither the eval nor the seed set's


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", action="append", default=None,
                   help="JSON object: finetune params and/or replay_share, over params.yaml "
                        "(repeat for several; default: params.yaml as it is)")
    p.add_argument("--scenario", default="new_variant", help="the drift the labels show")
    p.add_argument("--labels", type=int, default=100, help="labelled frames of the drift")
    p.add_argument("--labelled", type=Path, default=None,
                   help="a project's data/labelled (increments as the collect flow writes them, "
                        "e.g. a demo run's) instead of rendered frames")
    p.add_argument("--eval-frames", type=int, default=100, help="held-out frames per domain")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    p.add_argument("--champion", type=Path, default=ROOT / "tests/fixtures/seed_best.pt")
    p.add_argument("--work", type=Path, default=ROOT / "var/bench/retrain_recipe")
    p.add_argument("--json", action="store_true",
                   help="accepted for the benches' common form: stdout is always one JSON object")
    return p.parse_args(argv)


def render_inputs(args: argparse.Namespace, imgsz: int) -> dict[str, Path]:
    """The seed set, the labelled increment and the eval folders (kept between runs)."""
    from sim.dataset import render_dataset, render_labelled_increment
    from sim.seed_dataset import SeedSet, render_seed_dataset

    sizes = SeedSet(imgsz=imgsz, seed_train=12, seed_val=6, seed_test=8) if args.quick \
        else SeedSet(imgsz=imgsz)
    tag = f"{imgsz}-{sizes.seed_train}"
    seed = args.work / f"seed-{tag}"
    if not (seed / "data.yaml").is_file():
        render_seed_dataset(seed, sizes)
    increment = args.work / f"labelled-{args.scenario}-{args.labels}-{imgsz}" / "batch-1"
    if args.labelled is None and not (increment / "manifest.json").is_file():
        render_labelled_increment(increment, args.scenario, args.labels, INCREMENT_SEED,
                                  width=imgsz, created_at="2026-01-02T00:00:00+00:00")
    folders = {"seed": seed, "labelled": args.labelled or increment.parent}
    for domain in ("baseline", args.scenario):
        folder = args.work / f"eval-{domain}-{args.eval_frames}-{imgsz}"
        if not (folder / "images").is_dir():
            render_dataset(folder, domain, args.eval_frames, EVAL_SEED, imgsz, split="eval")
        folders[f"eval_{domain}"] = folder
    return folders


def prepare(folders: dict[str, Path], replay_share: float, out: Path) -> dict[str, Any]:
    from flows.retrain.prepare import (
        PrepareSettings,
        class_names,
        plan_dataset,
        read_increments,
        read_yolo_folder,
        write_plan,
    )

    seed = folders["seed"]
    names = class_names(seed / "data.yaml")
    settings = PrepareSettings(replay_share=replay_share)
    plan = plan_dataset(read_yolo_folder(seed / "train", "seed"),
                        read_yolo_folder(seed / "val", "seed"),
                        read_yolo_folder(seed / "test_baseline", "seed"),
                        read_increments(folders["labelled"], names, settings.group_frames),
                        settings)
    return write_plan(plan, out, names)


def run_recipe(recipe: dict[str, Any], base: dict[str, Any], folders: dict[str, Path],
               work: Path, scenario: str) -> dict[str, Any]:
    from flows.retrain.ultralytics_yolo import TrainSettings, export_onnx, train

    recipe = dict(recipe)
    replay = float(recipe.pop("replay_share", base["prepare"]["replay_share"]))
    params = {**base["finetune"], **recipe}
    prepared = prepare(folders, replay, work / "prepared")
    settings = TrainSettings(model=str(params.pop("weights")), **params)
    started = time.monotonic()
    weights = train(work / "prepared" / "data.yaml", work / "model", settings, work / "runs")
    train_s = time.monotonic() - started
    onnx = export_onnx(weights, work / "model" / "model.onnx", settings.imgsz)
    return {"train_frames": prepared["frames"]["train"], "train_s": round(train_s, 1),
            **scores(onnx, folders, scenario, work / "prepared" / "golden")}


def scores(onnx: Path, folders: dict[str, Path], scenario: str, golden: Path
           ) -> dict[str, Any]:
    """mAP50 and mAP50-95 of `onnx` on the drifted and baseline eval sets and the golden set."""
    from flows.retrain.onnx_eval import evaluate_slices

    results = evaluate_slices(onnx, {scenario: folders[f"eval_{scenario}"],
                                     "baseline": folders["eval_baseline"], "golden": golden})
    return {"map50": {k: round(v.scores.map50, 4) for k, v in results.items()},
            "map50_95": {k: round(v.scores.map50_95, 4) for k, v in results.items()}}


def champion_scores(champion: Path, folders: dict[str, Path], work: Path, imgsz: int,
                    scenario: str) -> dict[str, Any]:
    from flows.retrain.ultralytics_yolo import export_onnx

    onnx = work / "champion.onnx"
    if not onnx.is_file():
        export_onnx(champion, onnx, imgsz)
    return scores(onnx, folders, scenario, folders["seed"] / "test_baseline")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    use_offline_environment(ROOT / "var")
    with contextlib.redirect_stdout(sys.stderr):  # Ultralytics prints: stdout is the JSON's
        report = measure(args)
    print(json.dumps(report))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    base["finetune"]["weights"] = str(args.champion)
    if args.quick:
        base["finetune"].update(imgsz=128, epochs=1, batch=8)
        args.labels, args.eval_frames = 8, 4
    imgsz = int(base["finetune"]["imgsz"])
    args.work.mkdir(parents=True, exist_ok=True)
    folders = render_inputs(args, imgsz)
    champion = champion_scores(args.champion, folders, args.work, imgsz, args.scenario)
    results = []
    for i, text in enumerate(args.recipe or ["{}"]):
        recipe = json.loads(text)
        outcome = run_recipe(recipe, base, folders, args.work / f"recipe-{i}", args.scenario)
        before = champion["map50"]["baseline"]
        outcome["recipe"] = recipe
        outcome["recovered_share"] = round(outcome["map50"][args.scenario] / before, 4) \
            if before else None
        outcome["golden_loss_points"] = round(
            100 * (champion["map50_95"]["golden"] - outcome["map50_95"]["golden"]), 2)
        results.append(outcome)
        print(json.dumps(outcome), file=sys.stderr, flush=True)
    return {"bench": "retrain_recipe", "scenario": args.scenario, "labels": args.labels,
            "champion": champion, "recipes": results}


if __name__ == "__main__":
    main()
