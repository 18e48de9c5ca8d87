"""The retrain's dataset: the seed set merged with every labelled increment, with a replay share
of old frames so the model does not forget, split so that neighbouring frames never straddle
train and validation.

Slices written by `write_plan` (each a YOLO folder, `images/` + `labels/`):
- `train`: the newest increment's training groups plus a random replay of old frames (seed
  train and earlier increments' training groups) making up `replay_share` of the set;
- `val`: seed val plus every increment's held-out groups (Ultralytics picks `best.pt` on it);
- `drift`: the newest increment's held-out groups, the current drift slice the gate scores
  (the newest increments together, when the newest alone is a single group);
- `golden`: the seed test set plus every earlier increment's held-out groups, the regression
  set a challenger must not lose on;
- `current`: every frame of the newest increment(s), training and held-out groups: the line as
  the latest labels show it, which the release's reference profile replays (its canary compares
  the devices' frames with that, not with the old domain).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from flows.yolo_dataset import YoloDataset, golden_split

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MANIFEST = "manifest.json"
SLICES = ("train", "val", "drift", "golden", "current")


class PrepareError(ValueError):
    """The inputs cannot make a retrain dataset; the message says which and why."""


@dataclass(frozen=True)
class PrepareSettings:
    replay_share: float = 0.8  # share of the training set drawn from old frames
    val_share: float = 0.3  # share of each increment's frames held out (whole groups)
    group_frames: int = 150  # frame ids this close on one device are one group (5 s at 30 fps)
    seed: int = 0
    golden_share: float = 0.2  # of a team's val split, when its dataset has no test split

    def __post_init__(self) -> None:
        if not 0.0 <= self.replay_share < 1.0:
            raise PrepareError(f"replay_share must be in [0, 1), got {self.replay_share}")
        if not 0.0 < self.val_share < 1.0:
            raise PrepareError(f"val_share must be in (0, 1), got {self.val_share}")
        if not 0.0 < self.golden_share < 1.0:
            raise PrepareError(f"golden_share must be in (0, 1), got {self.golden_share}")
        if self.group_frames < 1:
            raise PrepareError(f"group_frames must be >= 1, got {self.group_frames}")


@dataclass(frozen=True)
class Frame:
    image: Path
    label: Path | None  # None: a negative frame with nothing to find
    source: str  # "seed" or the increment's batch name
    group: str  # the unit that goes wholly to train or to validation
    stem: str = ""  # its file name in the prepared set; "": the image's own stem


@dataclass(frozen=True)
class Increment:
    name: str
    created_at: str
    frames: tuple[Frame, ...]


@dataclass(frozen=True)
class Plan:
    train: tuple[Frame, ...]
    val: tuple[Frame, ...]
    drift: tuple[Frame, ...]
    golden: tuple[Frame, ...]
    current: tuple[Frame, ...]
    replayed: int  # old frames in train
    newest: str  # the increment(s) whose held-out groups are the drift slice

    def slice(self, name: str) -> tuple[Frame, ...]:
        return {"train": self.train, "val": self.val, "drift": self.drift,
                "golden": self.golden, "current": self.current}[name]


# -- pure planning ----------------------------------------------------------------------------

def group_of(batch: str, record_id: str, group_frames: int) -> str:
    """`device/frame_id` -> the group: one device's frames within `group_frames` ids."""
    device, _, frame = record_id.rpartition("/")
    if not device or not frame.isdigit():
        raise PrepareError(f"{batch}: record id {record_id!r} is not 'device/frame_id'")
    return f"{batch}/{device}/{int(frame) // group_frames}"


def split_groups(frames: Sequence[Frame], val_share: float, seed: int
                 ) -> tuple[list[Frame], list[Frame]]:
    """(train, held out): whole groups, in an order fixed by a hash of (seed, group), held out
    until `val_share` of the frames is; each side keeps a group when there are two or more."""
    groups: dict[str, list[Frame]] = {}
    for frame in frames:
        groups.setdefault(frame.group, []).append(frame)
    order = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    held: list[Frame] = []
    taken = 0
    for group in order[:-1] if len(order) > 1 else []:
        if held and len(held) >= val_share * len(frames):
            break
        held.extend(groups[group])
        taken += 1
    train = [f for g in order[taken:] for f in groups[g]]
    return train, held


def recent_increments(ordered: Sequence[Increment]) -> int:
    """How many of the newest increments make the current domain: the newest, and older ones
    merged in until their frames hold two groups (a webhook collects whatever annotators
    finished, one frame at times: too little alone to hold a drift slice out of)."""
    groups: set[str] = set()
    for count, increment in enumerate(reversed(ordered), start=1):
        groups.update(f.group for f in increment.frames)
        if len(groups) >= 2:
            return count
    return len(ordered)


def plan_dataset(seed_train: Sequence[Frame], seed_val: Sequence[Frame],
                 seed_test: Sequence[Frame], increments: Sequence[Increment],
                 settings: PrepareSettings) -> Plan:
    if not increments:
        raise PrepareError("no labelled increments: collect labels before a retrain")
    ordered = sorted(increments, key=lambda i: (i.created_at, i.name))
    recent = recent_increments(ordered)
    earlier, newest = ordered[:-recent], ordered[-recent:]
    splits = [split_groups(i.frames, settings.val_share, settings.seed) for i in earlier]
    new_train, drift = split_groups([f for i in newest for f in i.frames], settings.val_share,
                                    settings.seed)
    if not new_train or not drift:
        frames = sum(len(i.frames) for i in newest)
        raise PrepareError(f"the labelled increments hold {frames} frames in one group (frame "
                           f"ids within prepare.group_frames={settings.group_frames} of one "
                           "device): too few to hold out a drift slice and still train on "
                           "it; label more frames, or lower group_frames for a slow camera")
    old_pool = [*seed_train, *(f for train, _ in splits for f in train)]
    share = settings.replay_share
    wanted = round(len(new_train) * share / (1.0 - share))
    rng = np.random.default_rng(settings.seed)
    picked = sorted(rng.choice(len(old_pool), min(wanted, len(old_pool)), replace=False))
    replay = [old_pool[i] for i in picked]
    held_earlier = [f for _, held in splits for f in held]
    return Plan(train=(*new_train, *replay),
                val=(*seed_val, *held_earlier, *drift),
                drift=tuple(drift), golden=(*seed_test, *held_earlier),
                current=(*new_train, *drift), replayed=len(replay),
                newest=", ".join(i.name for i in newest))


# -- reading and writing ----------------------------------------------------------------------

def read_yolo_folder(folder: Path, source: str) -> list[Frame]:
    """Every image of a YOLO folder (images/ + labels/), each its own group."""
    images = sorted(p for p in (folder / "images").glob("*") if p.suffix.lower()
                    in IMAGE_SUFFIXES)
    if not images:
        raise PrepareError(f"{folder} has no images under images/")
    frames = []
    for image in images:
        label = folder / "labels" / f"{image.stem}.txt"
        frames.append(Frame(image, label if label.is_file() else None, source,
                            f"{source}/{image.stem}"))
    return frames


def read_seed_dataset(dataset: YoloDataset, golden_share: float, seed: int = 0
                      ) -> tuple[list[Frame], list[Frame], list[Frame]]:
    """(train, val, golden) frames of a team's dataset as its data.yaml lays it out; golden is
    its test split, or a fixed share of val when it has none. Each image is its own group."""
    val, golden = golden_split(dataset, golden_share, seed)

    def frames(images: Sequence[Path]) -> list[Frame]:
        out = []
        for image in images:
            relative = (image.relative_to(dataset.root) if image.is_relative_to(dataset.root)
                        else Path(image.name))
            stem = relative.with_suffix("").as_posix().replace("/", "__")
            label = dataset.label_of(image)
            out.append(Frame(image, label if label.is_file() else None, "seed", f"seed/{stem}",
                             stem))
        return out

    return frames(dataset.splits["train"]), frames(val), frames(golden)


def read_increment(folder: Path, names: Sequence[str], group_frames: int) -> Increment:
    """A labelled increment written by `collect_labels`: its manifest names every frame."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PrepareError(f"{folder}: unreadable {MANIFEST}: {exc}") from exc
    classes = manifest.get("classes")
    if classes is not None and list(classes) != list(names):
        raise PrepareError(f"{folder.name}: classes {classes} differ from the dataset's "
                           f"{list(names)} (class ids would be wrong)")
    frames = []
    for item in manifest.get("items", []):
        image, label = folder / item["image"], folder / item["label"]
        if not image.is_file():
            raise PrepareError(f"{folder.name}: {item['image']} is missing")
        frames.append(Frame(image, label if label.is_file() else None, folder.name,
                            group_of(folder.name, item["record_id"], group_frames)))
    if not frames:
        raise PrepareError(f"{folder.name}: the manifest lists no frames")
    return Increment(folder.name, str(manifest.get("created_at", "")), tuple(frames))


def read_increments(labelled: Path, names: Sequence[str], group_frames: int
                    ) -> list[Increment]:
    folders = sorted(p.parent for p in labelled.glob(f"*/{MANIFEST}")) if labelled.is_dir() \
        else []
    return [read_increment(f, names, group_frames) for f in folders]


def class_names(data_yaml: Path) -> list[str]:
    spec = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    names = spec.get("names") if isinstance(spec, dict) else None
    if isinstance(names, dict):
        return [str(names[i]) for i in sorted(names)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise PrepareError(f"{data_yaml} has no class names")


def write_plan(plan: Plan, out: Path, names: Sequence[str]) -> dict[str, object]:
    """Copies every slice into `out/<slice>/{images,labels}` (names prefixed by their source,
    so stems never collide), writes `out/data.yaml`; returns the summary."""
    shutil.rmtree(out, ignore_errors=True)
    for name in SLICES:
        images, labels = out / name / "images", out / name / "labels"
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        for frame in plan.slice(name):
            stem = f"{frame.source}__{frame.stem or frame.image.stem}"
            shutil.copyfile(frame.image, images / f"{stem}{frame.image.suffix.lower()}")
            text = frame.label.read_text(encoding="utf-8") if frame.label else ""
            (labels / f"{stem}.txt").write_text(text, encoding="utf-8")
    spec = {"train": "train/images", "val": "val/images", "test": "drift/images",
            "names": dict(enumerate(names))}
    (out / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return summary(plan)


def summary(plan: Plan) -> dict[str, object]:
    def by_source(frames: Sequence[Frame]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for frame in frames:
            counts[frame.source] = counts.get(frame.source, 0) + 1
        return dict(sorted(counts.items()))

    return {"newest_increment": plan.newest, "replayed_old_frames": plan.replayed,
            "frames": {name: len(plan.slice(name)) for name in SLICES},
            "sources": {name: by_source(plan.slice(name)) for name in SLICES}}
