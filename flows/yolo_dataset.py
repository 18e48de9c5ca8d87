"""A team's dataset as Ultralytics describes it (a `data.yaml` with `path`, `train`, `val`, an
optional `test` and `names`), read without Ultralytics: its class names and each split's images
with their label files. Nothing here writes into the dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """The dataset YAML or the folders it names cannot be read as a detection dataset."""


@dataclass(frozen=True)
class YoloDataset:
    yaml_path: Path
    root: Path  # what the splits' relative paths start from
    names: tuple[str, ...]  # class names in class-id order
    splits: Mapping[str, tuple[Path, ...]]  # split -> its image files; "test" may be absent

    def label_of(self, image: Path) -> Path:
        return label_path(image)


def label_path(image: Path) -> Path:
    """Where Ultralytics looks for an image's labels: its last `images` folder read as `labels`,
    the suffix `.txt` (beside the image when no folder is called `images`)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


LABELLED_OBJECTS = "labelled_objects"  # the reference profile's column of labelled objects
# ... and of the previous version's detections on the same frame (the model it replaces)
PREVIOUS_DETECTIONS = "previous_detections"


def labelled_objects(image: Path) -> int | None:
    """Objects labelled in `image`: the lines of its label file; None when it has none (an
    image without a label file is not known to be empty)."""
    label = label_path(image)
    if not label.is_file():
        return None
    return sum(1 for line in label.read_text(encoding="utf-8").splitlines() if line.strip())


def add_labelled_objects(rows: Sequence[dict[str, object]], images: Sequence[Path]) -> None:
    """Give each replayed row (its `source_name`: an image's file name) the objects labelled in
    that image, so the canary knows how many objects per frame the line shows."""
    by_name = {image.name: image for image in images}
    for row in rows:
        image = by_name.get(str(row.get("source_name")))
        row[LABELLED_OBJECTS] = labelled_objects(image) if image is not None else None


def class_names(document: Mapping[str, object], where: Path) -> tuple[str, ...]:
    names = document.get("names")
    if isinstance(names, dict) and names:
        ids = sorted(names)
        if ids != list(range(len(ids))):
            raise DatasetError(f"{where}: names must be numbered 0..{len(ids) - 1}, got {ids}")
        return tuple(str(names[i]) for i in ids)
    if isinstance(names, list) and names:
        return tuple(str(n) for n in names)
    raise DatasetError(f"{where}: no class names (`names:` as a list or an id -> name mapping)")


def read_dataset(data_yaml: Path, *, root: Path | None = None) -> YoloDataset:
    """The dataset `data_yaml` describes. `root` overrides its `path:` (a copy of the dataset
    elsewhere, e.g. inside a data project); otherwise a relative `path:` starts at the YAML's
    folder, and no `path:` means the YAML's folder."""
    try:
        document = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"cannot read {data_yaml}: {exc}") from exc
    if not isinstance(document, dict):
        raise DatasetError(f"{data_yaml} must be a mapping (path, train, val, test, names)")
    names = class_names(document, data_yaml)
    if root is None:
        declared = document.get("path")
        root = data_yaml.parent if not declared else (data_yaml.parent / str(declared))
    if not root.is_dir():
        raise DatasetError(f"{data_yaml}: the dataset root {root} is not a folder")
    splits = {}
    for split in SPLITS:
        entry = document.get(split)
        if entry in (None, "", []):
            if split != "test":
                raise DatasetError(f"{data_yaml}: no `{split}:` split")
            continue
        splits[split] = split_images(root, entry, f"{data_yaml} {split}")
    return YoloDataset(data_yaml, root, names, splits)


def split_images(root: Path, entry: object, where: str) -> tuple[Path, ...]:
    """The images of one split: a folder (searched recursively), a `.txt` list of image paths,
    or a list of either."""
    entries = entry if isinstance(entry, list) else [entry]
    images: list[Path] = []
    for item in entries:
        path = root / str(item)
        if path.is_dir():
            images += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.suffix == ".txt" and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    listed = Path(line.strip())
                    images.append(listed if listed.is_absolute() else path.parent / listed)
        else:
            raise DatasetError(f"{where}: {path} is neither a folder nor a .txt list of images")
    if not images:
        raise DatasetError(f"{where}: no images found")
    missing = [p for p in images if not p.is_file()]
    if missing:
        raise DatasetError(f"{where}: {len(missing)} listed images are missing, e.g. {missing[0]}")
    return tuple(images)


def golden_split(dataset: YoloDataset, share: float, seed: int = 0
                 ) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """(val, golden): the old-domain regression slice is the test split; a dataset without one
    gives a fixed share of val (chosen by a hash of each file's path, so it never moves)."""
    if "test" in dataset.splits:
        return dataset.splits["val"], dataset.splits["test"]
    if not 0.0 < share < 1.0:
        raise DatasetError(f"golden_share must be in (0, 1), got {share}")
    val = dataset.splits["val"]

    def rank(image: Path) -> str:
        relative = image.relative_to(dataset.root) if image.is_relative_to(dataset.root) \
            else image
        return hashlib.sha256(f"{seed}:{relative.as_posix()}".encode()).hexdigest()

    ordered = sorted(val, key=rank)
    cut = max(1, round(len(ordered) * share))
    if cut >= len(ordered):
        raise DatasetError(f"{dataset.yaml_path}: val has {len(val)} images, too few to hold "
                           f"out a golden share of {share} and keep some for validation")
    golden = set(ordered[:cut])
    return tuple(p for p in val if p not in golden), tuple(p for p in val if p in golden)


def check_same_classes(model: Sequence[str], dataset: Sequence[str], where: str) -> None:
    """A dataset labels class ids; if its names are not the model's, in order, every label
    would train the wrong class."""
    if list(model) != list(dataset):
        raise DatasetError(f"{where}: the dataset's classes {list(dataset)} are not the "
                           f"model's {list(model)} (same names, same order)")
