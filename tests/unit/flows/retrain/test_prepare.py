"""The retrain dataset: replay share, whole groups per split, slices, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from flows.retrain.prepare import (
    Frame,
    Increment,
    PrepareError,
    PrepareSettings,
    class_names,
    group_of,
    plan_dataset,
    read_increments,
    read_yolo_folder,
    split_groups,
    write_plan,
)

NAMES = ["nut", "washer", "bolt"]


def seed_frames(n: int, kind: str) -> list[Frame]:
    return [Frame(Path(f"seed/{kind}/{i}.jpg"), None, "seed", f"seed/{kind}{i}")
            for i in range(n)]


def increment(name: str, frames: int, per_group: int = 5, created: str = "") -> Increment:
    return Increment(name, created or name, tuple(
        Frame(Path(f"{name}/{i}.jpg"), None, name, f"{name}/cam/{i // per_group}")
        for i in range(frames)))


def test_group_of_puts_neighbouring_frames_of_one_device_together() -> None:
    assert group_of("b1", "cam-1/1050", 150) == group_of("b1", "cam-1/1199", 150)
    assert group_of("b1", "cam-1/1050", 150) != group_of("b1", "cam-1/1200", 150)
    assert group_of("b1", "cam-1/1000", 150) != group_of("b1", "cam-2/1000", 150)
    with pytest.raises(PrepareError, match="not 'device/frame_id'"):
        group_of("b1", "no-frame-id", 150)


def test_split_keeps_every_group_whole_and_is_deterministic() -> None:
    frames = list(increment("b1", 60, per_group=5).frames)
    train, held = split_groups(frames, 0.3, seed=0)
    assert {f.group for f in train}.isdisjoint({f.group for f in held})
    assert len(train) + len(held) == 60 and 18 <= len(held) <= 25
    assert split_groups(frames, 0.3, seed=0) == (train, held)
    assert split_groups(frames, 0.3, seed=1) != (train, held)


def test_a_single_group_cannot_be_split() -> None:
    train, held = split_groups(list(increment("b1", 4, per_group=10).frames), 0.3, seed=0)
    assert (len(train), len(held)) == (4, 0)


def test_replay_share_of_old_frames_in_train() -> None:
    settings = PrepareSettings(replay_share=0.75, val_share=0.3, seed=0)
    plan = plan_dataset(seed_frames(600, "train"), seed_frames(50, "val"),
                        seed_frames(40, "test"), [increment("b1", 60)], settings)
    new = [f for f in plan.train if f.source == "b1"]
    assert plan.replayed == 3 * len(new)
    assert len(plan.train) == len(new) + plan.replayed
    assert {f.source for f in plan.drift} == {"b1"} and plan.newest == "b1"
    assert {f.group for f in plan.drift}.isdisjoint({f.group for f in plan.train})
    assert len(plan.val) == 50 + len(plan.drift)
    assert len(plan.golden) == 40


def test_earlier_increments_feed_replay_and_golden_the_newest_is_the_drift_slice() -> None:
    settings = PrepareSettings(replay_share=0.5, val_share=0.3, seed=3)
    older, newer = increment("b1", 40, created="2026-01-01"), increment("b0", 40,
                                                                        created="2026-02-01")
    plan = plan_dataset(seed_frames(10, "train"), seed_frames(5, "val"),
                        seed_frames(5, "test"), [newer, older], settings)
    assert plan.newest == "b0"  # by creation time, not by name
    assert {f.source for f in plan.golden} == {"seed", "b1"}
    assert {f.source for f in plan.drift} == {"b0"}
    assert {f.source for f in plan.val} == {"seed", "b0", "b1"}


def test_a_small_newest_increment_is_merged_with_the_ones_before_it() -> None:
    settings = PrepareSettings(replay_share=0.5, val_share=0.3, seed=0)
    first, second, third = (increment(name, frames, created=f"2026-01-0{day}") for
                            name, frames, day in (("b1", 40, 1), ("b2", 3, 2), ("b3", 1, 3)))
    plan = plan_dataset(seed_frames(10, "train"), seed_frames(5, "val"), seed_frames(5, "test"),
                        [third, first, second], settings)
    assert plan.newest == "b2, b3"  # one group each: together they hold one out
    new = {f.group for f in plan.train if f.source in ("b2", "b3")}
    assert len(new) == 1 and len({f.group for f in plan.drift}) == 1
    assert {f.source for f in plan.drift} <= {"b2", "b3"}
    assert "b1" in {f.source for f in plan.golden}  # the earlier increment's held-out groups


def test_labels_in_a_single_group_cannot_make_a_drift_slice() -> None:
    with pytest.raises(PrepareError, match=r"4 frames in one group.*lower group_frames"):
        plan_dataset(seed_frames(5, "train"), [], [], [increment("b1", 4, per_group=10)],
                     PrepareSettings())


def test_without_increments_there_is_nothing_to_retrain_on() -> None:
    with pytest.raises(PrepareError, match="no labelled increments"):
        plan_dataset(seed_frames(5, "train"), [], [], [], PrepareSettings())


def test_bad_settings_are_refused() -> None:
    with pytest.raises(PrepareError, match="replay_share"):
        PrepareSettings(replay_share=1.0)
    with pytest.raises(PrepareError, match="val_share"):
        PrepareSettings(val_share=0.0)


def write_yolo(folder: Path, stems: list[str]) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for i, stem in enumerate(stems):
        (folder / "images" / f"{stem}.jpg").write_bytes(b"jpeg")
        (folder / "labels" / f"{stem}.txt").write_text(f"{i % 3} 0.5 0.5 0.1 0.1\n")


def write_increment(labelled: Path, name: str, frames: int, classes: list[str]) -> None:
    folder = labelled / name
    stems = [f"cam-1_{1000 + 40 * i}" for i in range(frames)]
    write_yolo(folder, stems)
    items = [{"record_id": s.replace("_", "/"), "image": f"images/{s}.jpg",
              "label": f"labels/{s}.txt"} for s in stems]
    (folder / "manifest.json").write_text(json.dumps(
        {"batch": name, "created_at": "2026-11-28T00:00:00+00:00", "classes": classes,
         "items": items}))


def test_write_plan_copies_every_slice_with_its_labels(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    for split in ("train", "val", "test_baseline"):
        write_yolo(seed / split, [f"{split}_{i}" for i in range(20)])
    (seed / "data.yaml").write_text(yaml.safe_dump({"names": dict(enumerate(NAMES))}))
    write_increment(tmp_path / "labelled", "ls1-a", 40, NAMES)
    settings = PrepareSettings(replay_share=0.5, val_share=0.3, group_frames=150)
    names = class_names(seed / "data.yaml")
    plan = plan_dataset(read_yolo_folder(seed / "train", "seed"),
                        read_yolo_folder(seed / "val", "seed"),
                        read_yolo_folder(seed / "test_baseline", "seed"),
                        read_increments(tmp_path / "labelled", names, 150), settings)
    report = write_plan(plan, tmp_path / "out", names)
    out = tmp_path / "out"
    for name, count in report["frames"].items():  # type: ignore[attr-defined]
        assert len(list((out / name / "images").iterdir())) == count
        assert len(list((out / name / "labels").iterdir())) == count
    label = out / "drift" / "labels" / f"ls1-a__{plan.drift[0].image.stem}.txt"
    assert label.read_text() == plan.drift[0].label.read_text()  # type: ignore[union-attr]
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == dict(enumerate(NAMES))


def test_an_increment_with_other_classes_is_refused(tmp_path: Path) -> None:
    write_increment(tmp_path, "ls1-a", 5, ["bolt", "nut", "washer"])
    with pytest.raises(PrepareError, match="differ from the dataset"):
        read_increments(tmp_path, NAMES, 150)
