"""The simulator's seed set reads as a team's Ultralytics dataset (train, val, and
test_baseline as its test split); the drift scenarios' test sets refuse a wrong list up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.yolo_dataset import read_dataset
from sim.parts import CLASS_NAMES
from sim.scenarios import UnknownScenarioError
from sim.seed_dataset import SeedSet, SeedSetError, render_scenario_tests, render_seed_dataset

TINY = SeedSet(imgsz=64, seed_train=3, seed_val=2, seed_test=2)


def test_the_seed_set_reads_as_a_teams_dataset_with_a_test_split(tmp_path: Path) -> None:
    spec = render_seed_dataset(tmp_path / "seed", TINY)
    dataset = read_dataset(spec)
    assert list(dataset.names) == list(CLASS_NAMES)
    assert {split: len(images) for split, images in dataset.splits.items()} == {
        "train": 3, "val": 2, "test": 2}
    assert {p.parent.parent.name for p in dataset.splits["test"]} == {"test_baseline"}


def test_the_same_seed_renders_the_same_bytes_and_replaces_what_was_there(tmp_path: Path) -> None:
    first = render_seed_dataset(tmp_path / "a", TINY).parent
    (first / "stale.txt").write_text("old")
    render_seed_dataset(first, TINY)
    second = render_seed_dataset(tmp_path / "b", TINY).parent
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


@pytest.mark.parametrize(("scenarios", "error"), [
    (["dusk", "baseline"], SeedSetError), (["dusk", "dawn"], UnknownScenarioError)])
def test_a_wrong_scenario_list_is_refused_before_anything_is_rendered(
        tmp_path: Path, scenarios: list[str], error: type[Exception]) -> None:
    with pytest.raises(error):
        render_scenario_tests(tmp_path / "tests", scenarios, 2, 64)
    assert not (tmp_path / "tests").exists()


def test_each_drift_scenario_gets_its_own_test_set(tmp_path: Path) -> None:
    specs = render_scenario_tests(tmp_path / "tests", ["dusk", "new_variant"], 2, 64)
    assert [s.parent.name for s in specs] == ["test_dusk", "test_new_variant"]
    assert all(len(list((s.parent / "images").iterdir())) == 2 for s in specs)
