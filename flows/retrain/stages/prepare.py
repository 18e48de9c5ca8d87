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
    read_yolo_folder,
    write_plan,
)
from flows.retrain.stages.params import ParamsError, stage_params

KEYS = {"replay_share", "val_share", "group_frames", "seed"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--seed-data", type=Path, default=Path("data/seed"))
    parser.add_argument("--labelled", type=Path, default=Path("data/labelled"))
    parser.add_argument("--out", type=Path, default=Path("data/prepared"))
    parser.add_argument("--summary", type=Path, default=Path("metrics/prepare.json"))
    args = parser.parse_args()
    try:
        settings = PrepareSettings(**stage_params(args.params, "prepare", KEYS))
        names = class_names(args.seed_data / "data.yaml")
        plan = plan_dataset(read_yolo_folder(args.seed_data / "train", "seed"),
                            read_yolo_folder(args.seed_data / "val", "seed"),
                            read_yolo_folder(args.seed_data / "test_baseline", "seed"),
                            read_increments(args.labelled, names, settings.group_frames),
                            settings)
    except (PrepareError, ParamsError) as exc:
        raise SystemExit(f"prepare: {exc}") from None
    report = write_plan(plan, args.out, names)
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(report, indent=2) + "\n")
    counts = ", ".join(f"{name} {len(plan.slice(name))}" for name in SLICES)
    print(f"prepared {args.out}: {counts} (drift slice from {plan.newest}, "
          f"{plan.replayed} old frames replayed)", flush=True)

if __name__ == "__main__":
    main()
