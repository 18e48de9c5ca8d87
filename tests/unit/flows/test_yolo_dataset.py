"""A team's Ultralytics dataset read through its data.yaml, whatever its folder layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.yolo_dataset import (
    DatasetError,
    check_same_classes,
    golden_split,
    label_path,
    read_dataset,
)


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def layout(root: Path, splits: dict[str, int]) -> None:
    for split, count in splits.items():
        for i in range(count):
            touch(root / "images" / split / f"f{i}.jpg", "jpeg")
            touch(root / "labels" / split / f"f{i}.txt", "0 0.5 0.5 0.1 0.1\n")


def test_the_ultralytics_layout_reads_with_its_names_and_labels(tmp_path: Path) -> None:
    layout(tmp_path / "ds", {"train": 4, "val": 3, "test": 2})
    yaml_path = touch(tmp_path / "ds" / "data.yaml", "path: .\ntrain: images/train\n"
                      "val: images/val\ntest: images/test\nnames: {0: gear, 1: cog}\n")
    dataset = read_dataset(yaml_path)
    assert dataset.names == ("gear", "cog")
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 4, "val": 3, "test": 2}
    image = dataset.splits["val"][0]
    assert dataset.label_of(image) == tmp_path / "ds" / "labels" / "val" / image.with_suffix(
        ".txt").name
    assert golden_split(dataset, 0.2) == (dataset.splits["val"], dataset.splits["test"])


def test_lists_of_folders_and_txt_lists_and_a_root_elsewhere(tmp_path: Path) -> None:
    layout(tmp_path / "copy", {"a": 2, "b": 1, "v": 5})
    touch(tmp_path / "copy" / "val.txt", "images/v/f0.jpg\nimages/v/f1.jpg\n\nimages/v/f2.jpg\n")
    yaml_path = touch(tmp_path / "data.yaml", "path: /where/it/was\ntrain: [images/a, images/b]"
                      "\nval: val.txt\nnames: [gear, cog, spring]\n")
    dataset = read_dataset(yaml_path, root=tmp_path / "copy")
    assert len(dataset.splits["train"]) == 3 and len(dataset.splits["val"]) == 3
    assert "test" not in dataset.splits


def test_without_a_test_split_golden_is_a_fixed_share_of_val(tmp_path: Path) -> None:
    layout(tmp_path, {"train": 2, "val": 10})
    yaml_path = touch(tmp_path / "data.yaml", "train: images/train\nval: images/val\n"
                      "names: [gear]\n")
    dataset = read_dataset(yaml_path)
    val, golden = golden_split(dataset, 0.2)
    assert len(golden) == 2 and len(val) == 8 and not set(val) & set(golden)
    assert golden_split(read_dataset(yaml_path), 0.2) == (val, golden)  # never moves


@pytest.mark.parametrize(("text", "message"), [
    ("- a\n", "must be a mapping"),
    ("train: images/train\nval: images/val\n", "no class names"),
    ("train: images/train\nnames: [a]\n", "no `val:` split"),
    ("train: images/nowhere\nval: images/val\nnames: [a]\n", "neither a folder nor"),
    ("train: images/train\nval: images/val\nnames: {0: a, 2: b}\n", "numbered 0..1"),
    ("path: gone\ntrain: images/train\nval: images/val\nnames: [a]\n", "is not a folder"),
    ("train: images/train\nval: missing.txt\nnames: [a]\n", "neither a folder nor"),
])
def test_a_broken_dataset_is_refused_naming_what_is_wrong(tmp_path: Path, text: str,
                                                          message: str) -> None:
    layout(tmp_path, {"train": 1, "val": 1})
    with pytest.raises(DatasetError, match=message):
        read_dataset(touch(tmp_path / "data.yaml", text))


def test_labels_sit_where_ultralytics_looks_for_them() -> None:
    assert label_path(Path("/d/images/train/x.png")) == Path("/d/labels/train/x.txt")
    assert label_path(Path("/images/d/images/a/x.jpg")) == Path("/images/d/labels/a/x.txt")
    assert label_path(Path("/d/frames/x.jpg")) == Path("/d/frames/x.txt")


def test_other_class_names_or_order_are_refused() -> None:
    check_same_classes(["gear", "cog"], ["gear", "cog"], "data.yaml")
    with pytest.raises(DatasetError, match="not the model's"):
        check_same_classes(["gear", "cog"], ["cog", "gear"], "data.yaml")
