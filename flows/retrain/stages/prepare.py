"""Stage `prepare`: the seed set merged with every labelled increment (flows.retrain.prepare)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flows.retrain.prepare import (
    SLICES,
    PrepareError,
    PrepareSettings,
    class_names,
    plan_dataset,
    read_increments,
    read_seed_dataset,
    read_yolo_folder,
    write_plan,
)
from flows.retrain.stages.params import ParamsError, stage_params
from flows.yolo_dataset import DatasetError, read_dataset

KEYS = {"replay_share", "val_share", "group_frames", "seed", "golden_share"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--seed-data", type=Path, default=Path("data/seed"),
                        help="the simulator's seed set: train/, val/, test_baseline/")
    parser.add_argument("--seed-yaml", type=Path, default=None,
                        help="a team's seed set, as its Ultralytics data.yaml lays it out "
                             "(instead of --seed-data)")
    parser.add_argument("--seed-root", type=Path, default=None,
                        help="where that data.yaml's splits start (its copy in the project)")
    parser.add_argument("--labelled", type=Path, default=Path("data/labelled"))
    parser.add_argument("--out", type=Path, default=Path("data/prepared"))
    parser.add_argument("--summary", type=Path, default=Path("metrics/prepare.json"))
    args = parser.parse_args(argv)
    try:
        settings = PrepareSettings(**stage_params(args.params, "prepare", KEYS))
        if args.seed_yaml is not None:
            dataset = read_dataset(args.seed_yaml, root=args.seed_root)
            names = list(dataset.names)
            train, val, golden = read_seed_dataset(dataset, settings.golden_share,
                                                   settings.seed)
        else:
            names = class_names(args.seed_data / "data.yaml")
            train = read_yolo_folder(args.seed_data / "train", "seed")
            val = read_yolo_folder(args.seed_data / "val", "seed")
            golden = read_yolo_folder(args.seed_data / "test_baseline", "seed")
        plan = plan_dataset(train, val, golden,
                            read_increments(args.labelled, names, settings.group_frames),
                            settings)
    except (PrepareError, ParamsError, DatasetError) as exc:
        raise SystemExit(f"prepare: {exc}") from None
    report = write_plan(plan, args.out, names)
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(report, indent=2) + "\n")
    counts = ", ".join(f"{name} {len(plan.slice(name))}" for name in SLICES)
    print(f"prepared {args.out}: {counts} (drift slice from {plan.newest}, "
          f"{plan.replayed} old frames replayed)", flush=True)

if __name__ == "__main__":
    main()
