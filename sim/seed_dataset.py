"""The simulator's seed set as a team's Ultralytics dataset would be: baseline frames in train/,
val/ and test_baseline/ (its test split) with a data.yaml naming them, and test sets of the drift
scenarios to score the seed model on. The repository's example project (sim/dvc.yaml) and the
demo's project are made from it."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sim.dataset import data_yaml, render_dataset
from sim.scenarios import get_scenario

SEED = 7  # the seed set's render seed: the example project and the demo render the same frames
BASELINE = "baseline"  # the line the seed model learns; its test split is the seed set's own


class SeedSetError(ValueError):
    """A scenario list the seed set's test sets cannot be rendered from."""


class SeedSizes(Protocol):
    """Frames per split of the seed set, and their width in pixels."""

    @property
    def imgsz(self) -> int: ...
    @property
    def seed_train(self) -> int: ...
    @property
    def seed_val(self) -> int: ...
    @property
    def seed_test(self) -> int: ...


@dataclass(frozen=True)
class SeedSet:
    imgsz: int = 320
    seed_train: int = 600
    seed_val: int = 150
    seed_test: int = 200


def render_seed_dataset(out: Path, sizes: SeedSizes, seed: int = SEED) -> Path:
    """Render the seed set into `out` (replacing what is there); returns its data.yaml."""
    shutil.rmtree(out, ignore_errors=True)
    for split, frames in (("train", sizes.seed_train), ("val", sizes.seed_val),
                          (f"test_{BASELINE}", sizes.seed_test)):
        render_dataset(out / split, BASELINE, frames, seed, sizes.imgsz, split=split)
    (out / "data.yaml").write_text(data_yaml("train/images", "val/images",
                                             f"test_{BASELINE}/images"))
    return out / "data.yaml"


def render_scenario_tests(out: Path, scenarios: Sequence[str], frames: int, imgsz: int,
                          seed: int = SEED) -> list[Path]:
    """A test set per drift scenario in `out/test_<scenario>/` (replacing what is there);
    returns their data.yaml files. The baseline's test set is the seed set's test split."""
    for name in scenarios:
        if name == BASELINE:
            raise SeedSetError(f"{BASELINE!r} is the seed set's own test split, not a drift "
                             "scenario: leave it out of the list")
        get_scenario(name)  # an unknown name is refused before anything is rendered
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return [render_dataset(out / f"test_{name}", name, frames, seed, imgsz, split=f"test_{name}")
            for name in scenarios]
