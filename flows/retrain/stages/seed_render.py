"""Stage `seed-render` (the simulator's example project, sim/dvc.yaml): the seed set as a team's
dataset, laid out as `edgeloop init` copies one (the folder, and its data.yaml beside it), and a
test set per drift scenario for the seed model's scorecard."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from flows.retrain.stages.params import stage_params
from sim.scenarios import UnknownScenarioError
from sim.seed_dataset import SeedSet, SeedSetError, render_scenario_tests, render_seed_dataset

KEYS = {"seed", "imgsz", "train_frames", "val_frames", "test_frames", "scenarios"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("data/seed"), help="the seed set")
    parser.add_argument("--data-yaml", type=Path, default=Path("data/seed.yaml"),
                        help="a copy of the seed set's data.yaml, as init keeps a team's")
    parser.add_argument("--scenarios-out", type=Path, default=Path("data/scenarios"),
                        help="folder of the drift scenarios' test_<scenario>/ sets")
    args = parser.parse_args(argv)
    p = stage_params(args.params, "render", KEYS)
    sizes = SeedSet(imgsz=p["imgsz"], seed_train=p["train_frames"], seed_val=p["val_frames"],
                    seed_test=p["test_frames"])
    try:
        print(f"rendering {args.scenarios_out}: {p['test_frames']} frames of each of "
              f"{', '.join(p['scenarios'])}", flush=True)
        render_scenario_tests(args.scenarios_out, p["scenarios"], p["test_frames"], p["imgsz"],
                              p["seed"])
    except (SeedSetError, UnknownScenarioError) as exc:
        raise SystemExit(f"seed-render: {args.params} [render] scenarios: {exc}") from None
    print(f"rendering {args.out}: {sizes.seed_train} train, {sizes.seed_val} val, "
          f"{sizes.seed_test} test frames of the baseline", flush=True)
    spec = render_seed_dataset(args.out, sizes, p["seed"])
    args.data_yaml.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec, args.data_yaml)


if __name__ == "__main__":
    main()
