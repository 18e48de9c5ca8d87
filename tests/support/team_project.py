"""A team's own model and dataset, made by the tests: 3 classes that are not the simulator's
(gear, cog, spring), 640x480 frames, the Ultralytics layout (images/ and labels/ per split)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import yaml

NAMES = {0: "gear", 1: "cog", 2: "spring"}


def their_shot(rng: np.random.Generator, index: int, background: int = 90
               ) -> tuple[np.ndarray, str]:
    """One of the team's 640x480 frames (a part on a plain belt) and its YOLO label line."""
    image = np.full((480, 640, 3), background, np.uint8)
    image += rng.integers(0, 12, image.shape, dtype=np.uint8)  # sensor noise
    x, y = int(rng.integers(50, 500)), int(rng.integers(50, 350))
    cls = index % 3
    cv2.rectangle(image, (x, y), (x + 80, y + 60), (40 + 80 * cls, 200, 90), -1)
    return image, f"{cls} {(x + 40) / 640:.4f} {(y + 30) / 480:.4f} {80 / 640:.4f} {60 / 480:.4f}\n"


def their_dataset(root: Path, train: int = 6, val: int = 10, test: int = 0) -> Path:
    """A dataset laid out as the team keeps it: images/ and labels/ per split, 640x480 (a test
    split only when `test`)."""
    rng = np.random.default_rng(0)
    splits = {"train": train, "val": val, **({"test": test} if test else {})}
    for split, count in splits.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            image, label = their_shot(rng, i)
            cv2.imwrite(str(root / "images" / split / f"shot_{i:03d}.jpg"), image)
            (root / "labels" / split / f"shot_{i:03d}.txt").write_text(label)
    (root / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(root), **{split: f"images/{split}" for split in splits}, "names": NAMES}))
    return root / "data.yaml"


def their_camera(folder: Path, frames: int, background: int = 90) -> Path:
    """What one of the team's cameras sees, as an image folder (`edge run --source`);
    `background` below the dataset's 90: the line's lights dimmed."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for i in range(frames):
        cv2.imwrite(str(folder / f"frame_{i:05d}.jpg"), their_shot(rng, i, background)[0])
    return folder


def their_model(path: Path) -> Path:
    """An (untrained) YOLO11n checkpoint with the team's classes, trained at 640."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolo11n.yaml", nc=len(NAMES), verbose=False)
    model.names = dict(NAMES)
    model.args = {"imgsz": 640, "task": "detect"}
    torch.save({"model": model, "train_args": {"imgsz": 640, "task": "detect"}, "epoch": -1},
               path)
    return path


def digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        sha.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return sha.hexdigest()


def increment(project: Path, frames: int = 4) -> None:
    """One labelled increment as collect-labels writes it."""
    batch = project / "data" / "labelled" / "batch-0001"
    (batch / "images").mkdir(parents=True)
    (batch / "labels").mkdir()
    items = []
    for i in range(frames):
        image = np.full((480, 640, 3), 140, np.uint8)
        cv2.imwrite(str(batch / "images" / f"{i}.jpg"), image)
        (batch / "labels" / f"{i}.txt").write_text("1 0.5 0.5 0.2 0.2\n")
        items.append({"image": f"images/{i}.jpg", "label": f"labels/{i}.txt",
                      "record_id": f"cam-1/{1000 * i}"})
    (batch / "manifest.json").write_text(json.dumps(
        {"created_at": "2026-12-03T00:00:00Z", "classes": list(NAMES.values()), "items": items}))



def init_project(tmp_path: Path, edgeloop: str, env: dict[str, str], name: str = "line-7",
                 test: int = 0) -> Path:
    """`edgeloop init` of the team's model and dataset in tmp_path/name."""
    data_yaml = their_dataset(tmp_path / "their-data", test=test)
    weights = their_model(tmp_path / "best.pt")
    subprocess.run([edgeloop, "init", name, "--model", str(weights), "--data", str(data_yaml),
                    "--fleet", name], cwd=tmp_path, env=env, capture_output=True, text=True,
                   timeout=600, check=True)
    return tmp_path / name
