"""Stages `seed-train` and `train`: train YOLO on a dataset spec (from scratch, or fine-tune
the weights given by --weights); writes OUT/best.pt."""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.offline import use_offline_environment
from flows.retrain.stages.params import stage_params

KEYS = {"model", "imgsz", "epochs", "batch", "seed", "patience", "threads", "cache", "augment",
        "optimizer", "lr0", "warmup_epochs", "freeze", "val", "device"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--section", default="train", help="params.yaml section to read")
    parser.add_argument("--weights", type=Path, default=None,
                        help="fine-tune these weights (overrides the section's `model`)")
    parser.add_argument("--data", type=Path, required=True, help="data.yaml of the dataset")
    parser.add_argument("--out", type=Path, required=True, help="folder for best.pt")
    parser.add_argument("--var", type=Path, default=Path("var"))
    args = parser.parse_args(argv)
    use_offline_environment(args.var)
    from flows.retrain.torch_device import DeviceError
    from flows.retrain.ultralytics_yolo import TrainSettings, train

    values = stage_params(args.params, args.section, KEYS)
    if args.weights is not None:
        if not args.weights.is_file():
            raise SystemExit(f"train: weights {args.weights} do not exist")
        values["model"] = str(args.weights)
    try:
        settings = TrainSettings(**values)
    except ValueError as exc:  # DeviceError too: a bad params.yaml value, one line
        raise SystemExit(f"train: {args.params} [{args.section}]: {exc}") from None
    try:
        best = train(args.data, args.out, settings, args.var / "runs" / args.section)
    except DeviceError as exc:  # a device this machine lacks
        raise SystemExit(f"train: {args.params} [{args.section}]: {exc}") from None
    print(f"best weights: {best}")


if __name__ == "__main__":
    main()
