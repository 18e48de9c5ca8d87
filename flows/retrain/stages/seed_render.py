"""Stage `seed_render`: the seed dataset: baseline train/val and a test set per scenario."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from flows.retrain.stages.params import stage_params
from sim.dataset import data_yaml, render_dataset
from sim.scenarios import get_scenario

KEYS = {"seed", "imgsz", "train_frames", "val_frames", "test_frames", "scenarios"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("data/seed"))
    args = parser.parse_args(argv)
    p = stage_params(args.params, "render", KEYS)
    for name in p["scenarios"]:
        get_scenario(name)  # refuse an unknown name before rendering anything
    shutil.rmtree(args.out, ignore_errors=True)
    sets = [("train", "baseline", p["train_frames"]), ("val", "baseline", p["val_frames"])]
    sets += [(f"test_{name}", name, p["test_frames"]) for name in p["scenarios"]]
    for split, scenario, frames in sets:
        print(f"rendering {split}: {frames} frames of {scenario}", flush=True)
        render_dataset(args.out / split, scenario, frames, p["seed"], p["imgsz"], split=split)
    (args.out / "data.yaml").write_text(
        data_yaml("train/images", "val/images", "test_baseline/images"))


if __name__ == "__main__":
    main()
