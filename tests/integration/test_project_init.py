"""`edgeloop init` as a team meets it, from a folder outside the checkout: its own 3-class model
(other names, 640 px) and dataset (its own layout, no test split), then the first stage of the
retrain run by the real `dvc repro`; the team's data is never written to."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from tests.support.paths import ROOT

pytestmark = pytest.mark.slow
NAMES = {0: "gear", 1: "cog", 2: "spring"}
EDGELOOP = str(ROOT / ".venv" / "bin" / "edgeloop")


def their_dataset(root: Path, train: int = 6, val: int = 10) -> Path:
    """A dataset laid out as the team keeps it: images/ and labels/ per split, 640x480."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            image = np.full((480, 640, 3), 90, np.uint8)
            x, y = int(rng.integers(50, 500)), int(rng.integers(50, 350))
            cls = i % 3
            cv2.rectangle(image, (x, y), (x + 80, y + 60), (40 + 80 * cls, 200, 90), -1)
            cv2.imwrite(str(root / "images" / split / f"shot_{i:03d}.jpg"), image)
            (root / "labels" / split / f"shot_{i:03d}.txt").write_text(
                f"{cls} {(x + 40) / 640:.4f} {(y + 30) / 480:.4f} {80 / 640:.4f} {60 / 480:.4f}\n")
    (root / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(root), "train": "images/train", "val": "images/val", "names": NAMES}))
    return root / "data.yaml"


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


def test_init_makes_a_project_from_a_teams_model_and_data_and_never_touches_its_data(
        tmp_path: Path, offline_env: dict[str, str]) -> None:
    data_yaml = their_dataset(tmp_path / "their-data")
    weights = their_model(tmp_path / "best.pt")
    before = digest(tmp_path / "their-data")
    made = subprocess.run([EDGELOOP, "init", "line-7", "--model", str(weights), "--data",
                           str(data_yaml), "--fleet", "line-7"], cwd=tmp_path, env=offline_env,
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr
    assert "3 classes (gear, cog, spring), 640 px" in made.stdout
    project = tmp_path / "line-7"
    assert digest(project / "data" / "seed") == before == digest(tmp_path / "their-data")
    assert (project / "models" / "champion" / "model.onnx").is_file()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True,
                            text=True, check=True)
    assert status.stdout == ""  # everything init made is committed (the data through DVC)
    assert yaml.safe_load((project / "edgeloop.yaml").read_text())["labelling"]["classes"] == [
        "gear", "cog", "spring"]

    increment(project)
    seed_before = digest(project / "data" / "seed")
    repro = subprocess.run([str(ROOT / ".venv" / "bin" / "dvc"), "repro", "prepare"],
                           cwd=project, env=offline_env, capture_output=True, text=True,
                           timeout=600)
    assert repro.returncode == 0, repro.stdout + repro.stderr
    summary = json.loads((project / "metrics" / "prepare.json").read_text())
    assert summary["frames"]["golden"] == 2  # 20% of val: the dataset has no test split
    assert summary["sources"]["golden"] == {"seed": 2}
    assert summary["sources"]["val"]["seed"] == 8  # the rest of val stays validation
    assert summary["sources"]["train"]["batch-0001"] >= 1
    assert digest(project / "data" / "seed") == seed_before  # the stage only read it
    prepared = yaml.safe_load((project / "data" / "prepared" / "data.yaml").read_text())
    assert prepared["names"] == NAMES


def test_a_dataset_with_other_classes_than_the_model_is_refused_and_nothing_is_made(
        tmp_path: Path, offline_env: dict[str, str]) -> None:
    data_yaml = their_dataset(tmp_path / "their-data", train=1, val=2)
    refused = subprocess.run([EDGELOOP, "init", "line-7", "--model",
                              str(ROOT / "tests" / "fixtures" / "seed_best.pt"), "--data",
                              str(data_yaml)], cwd=tmp_path, env=offline_env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr  # one line, no traceback
    assert "['gear', 'cog', 'spring'] are not the model's ['nut', 'washer', 'bolt']" in \
        refused.stderr
    assert not (tmp_path / "line-7").exists()
