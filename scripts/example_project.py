"""Writes the repository's own data project files (dvc.yaml, params.yaml, edgeloop.yaml) as
`edgeloop init` writes them for the simulator's seed model; `--check` only says which differ.
Run it from the repository root after a change to what init writes or to edgeloop's version.

The example project's seed set and champion are made by the simulator's pipeline, sim/dvc.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from flows.project import ModelFacts, project_files
from flows.retrain.stages.cli import installed_version
from sim.parts import CLASS_NAMES

FLEET = "line-1"  # the demo's fleet too
FILES = ("dvc.yaml", "params.yaml", "edgeloop.yaml")


def seed_model(root: Path) -> ModelFacts:
    """What init would read from the seed model: the simulator's classes, at the input size
    the seed pipeline trains it at."""
    params = yaml.safe_load((root / "sim" / "params.yaml").read_text(encoding="utf-8"))
    return ModelFacts(tuple(CLASS_NAMES), int(params["train"]["imgsz"]))


def example_files(root: Path) -> dict[str, str]:
    files = project_files(seed_model(root), installed_version(), FLEET)
    return {name: files[name] for name in FILES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on a diff")
    args = parser.parse_args(argv)
    stale = [name for name, text in example_files(args.root).items()
             if not (args.root / name).is_file()
             or (args.root / name).read_text(encoding="utf-8") != text]
    if args.check:
        for name in stale:
            print(f"{args.root / name} is not what edgeloop init writes", file=sys.stderr)
        return 1 if stale else 0
    for name, text in example_files(args.root).items():
        if name in stale:
            (args.root / name).write_text(text, encoding="utf-8")
            print(f"wrote {args.root / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
