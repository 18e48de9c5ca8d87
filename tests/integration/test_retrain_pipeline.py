"""The retrain, tiny and real: `edgeloop flows retrain` runs the Prefect flow, which runs
`dvc repro` of prepare -> train -> export (fp32 + int8) -> evaluate -> gate -> profile in a
throwaway git + DVC project, offline; and a candidate trained on shuffled labels is refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
import yaml

from edge_runtime.detector import Detector
from flows.dvc_dataset import commit_folder
from flows.project import SEED_DIR, SEED_YAML
from flows.retrain.run import STAGES, RetrainError, pin_dataset
from flows.retrain.stages.cli import installed_version
from sim.dataset import data_yaml, render_dataset, render_labelled_increment
from sim.parts import CLASS_NAMES
from sim.seed_dataset import SeedSet, render_seed_dataset
from tests.support.netguard import SITE_DIR

pytestmark = pytest.mark.slow

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
AUTHOR = ("-c", "user.name=test", "-c", "user.email=test@edgeloop.invalid")
TINY = {
    "edgeloop": {"version": installed_version()},
    "champion": {"weights": "champion/best.pt", "onnx": "champion/model.onnx"},
    "prepare": {"replay_share": 0.5, "val_share": 0.3, "group_frames": 150, "seed": 0},
    "finetune": {"imgsz": 128, "epochs": 1, "batch": 8, "seed": 0, "patience": 100,
                 "threads": 0, "cache": True, "augment": {}},
    "release_export": {"imgsz": 128, "dynamic": True, "calibration_frames": 8,
                       "parity_frames": 2},
    "release_evaluate": {"imgsz": 128, "threads": 0},
    "profile": {"imgsz": 128},
}
SEED_SET = SeedSet(imgsz=128, seed_train=12, seed_val=6, seed_test=8)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *AUTHOR, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def project(tmp_path: Path, repo_root: Path, seed_model: Path) -> Path:
    """A git + DVC project with the example project's pipeline and settings, tiny params, the
    simulator's seed set (`dvc add`ed, as init adds a team's), the seed model as champion and
    one labelled increment of the new part variant, committed and `dvc add`ed."""
    work = tmp_path / "project"
    work.mkdir()
    for name in ("dvc.yaml", "edgeloop.yaml", ".dvcignore"):
        shutil.copy(repo_root / name, work / name)
    (work / "params.yaml").write_text(yaml.safe_dump(TINY))
    spec = render_seed_dataset(work / SEED_DIR, SEED_SET, seed=1)
    shutil.copy(spec, work / SEED_YAML)
    (work / "champion").mkdir()
    for name in ("best.pt", "model.onnx"):
        shutil.copy(seed_model.parent / name, work / "champion" / name)
    git(work, "init", "-q")
    for args in (["init", "-q"], ["add", "-q", SEED_DIR]):
        subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=work, check=True)
    git(work, "add", ".")
    git(work, "commit", "-qm", "pipeline")
    increment = render_labelled_increment(work / "data" / "labelled" / "ls1-a", "new_variant",
                                          16, seed=5, width=128)
    commit_folder(work, increment, "labels: ls1-a")
    return work


def test_tiny_retrain_runs_every_stage_through_the_flow_offline(
        project: Path, offline_env: dict[str, str], tmp_path: Path, repo_root: Path) -> None:
    log = tmp_path / "net.log"
    env = dict(offline_env, PYTHONPATH=f"{SITE_DIR}{os.pathsep}{repo_root}",
               EDGELOOP_NETGUARD_LOG=str(log))
    result = subprocess.run([EDGELOOP, "flows", "retrain", "--repo", str(project), "--var",
                             str(tmp_path / "var"), "--json"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode in (0, 1) and result.stdout, result.stderr[-4000:]
    report = json.loads(result.stdout.splitlines()[0])
    assert (result.returncode == 0) == report["ship"]
    assert report["dataset"]["increments"].keys() == {"data/labelled/ls1-a"}
    names = {c["name"] for c in report["checks"]}
    assert {"fp32_onnx_valid", "torch_parity_boxes", "int8_accuracy", "drift_gain",
            "golden_loss", "latency"} <= names
    assert "retrain: profile" in result.stderr  # the progress bar reached the last stage
    for stage in STAGES:
        assert f"'{stage}'" in result.stderr or stage in result.stderr
    assert not log.exists(), log.read_text()

    candidate = project / "models" / "candidate"
    for name in ("best.pt", "model.onnx", "model.int8.onnx", "reference.parquet"):
        assert (candidate / name).stat().st_size > 0, name
    prepared = json.loads((project / "metrics" / "prepare.json").read_text())
    assert prepared["frames"]["drift"] > 0 and prepared["sources"]["drift"].keys() == {"ls1-a"}
    evaluation = json.loads((project / "metrics" / "evaluate.json").read_text())
    assert evaluation["models"].keys() == {"champion", "fp32", "int8"}
    # The reference: the candidate on the newest labelled frames, with their labels and the
    # champion's detections on each (the canary's ratio of the two).
    reference = pd.read_parquet(candidate / "reference.parquet")
    assert len(reference) == prepared["frames"]["current"] > 0
    assert reference["labelled_objects"].notna().all()
    assert reference["previous_detections"].notna().all()

    int8 = Detector(candidate / "model.int8.onnx", imgsz=128)
    assert int8.info.names == tuple(CLASS_NAMES)
    image = cv2.imread(str(next((project / "data/prepared/drift/images").iterdir())))
    assert int8(image).detections.boxes.shape[1] == 4

    status = subprocess.run([str(Path(sys.executable).parent / "dvc"), "status", "profile"],
                            cwd=project, env=env, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout


def test_a_working_tree_that_differs_from_the_named_dataset_is_refused(project: Path) -> None:
    first = pin_dataset(project)
    assert first.increments.keys() == {"data/labelled/ls1-a"}
    render_labelled_increment(project / "data" / "labelled" / "ls1-b", "dusk", 4, seed=6,
                              width=128, created_at="2026-02-01T00:00:00+00:00")
    commit_folder(project, project / "data" / "labelled" / "ls1-b", "labels: ls1-b")
    with pytest.raises(RetrainError, match=r"ls1-b\.dvc differ"):
        pin_dataset(project, first.commit)
    assert pin_dataset(project).increments.keys() == {"data/labelled/ls1-a",
                                                      "data/labelled/ls1-b"}


def shuffled_labels(folder: Path, seed: int) -> None:
    """Every image gets another image's labels: a deliberately broken training set."""
    labels = sorted((folder / "labels").iterdir())
    texts = [p.read_text() for p in labels]
    order = np.random.default_rng(seed).permutation(len(labels))
    for k, i in enumerate(order):  # a cycle through a random order: nobody keeps their own
        labels[i].write_text(texts[order[(k + 1) % len(order)]])


def test_a_candidate_trained_on_shuffled_labels_is_refused(
        seed_model: Path, tmp_path: Path, repo_root: Path, offline_env: dict[str, str]) -> None:
    data = tmp_path / "data"
    render_dataset(data / "train", "baseline", 48, seed=11, width=320, split="bad")
    shuffled_labels(data / "train", seed=0)
    render_dataset(data / "val", "baseline", 8, seed=12, width=320, split="val")
    render_dataset(data / "golden", "baseline", 24, seed=13, width=320, split="golden")
    render_dataset(data / "drift", "new_variant", 24, seed=14, width=320, split="drift")
    (data / "data.yaml").write_text(data_yaml("train/images", "val/images"))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "finetune": {"imgsz": 320, "epochs": 3, "batch": 16, "seed": 0, "patience": 100,
                     "threads": 0, "cache": True, "augment": {}},
        "release_export": {"imgsz": 320, "dynamic": True, "calibration_frames": 16,
                           "parity_frames": 2},
        "release_evaluate": {"imgsz": 320, "threads": 0}}))
    out, metrics = tmp_path / "candidate", tmp_path / "metrics"

    def stage(module: str, *args: str) -> None:
        done = subprocess.run([sys.executable, "-m", f"flows.retrain.stages.{module}", *args],
                              cwd=repo_root, env=offline_env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{module}: {done.stdout[-2000:]}{done.stderr[-3000:]}"

    var = ["--var", str(tmp_path / "var")]
    stage("train", "--params", str(params), "--section", "finetune", "--weights",
          str(seed_model.parent / "best.pt"), "--data", str(data / "data.yaml"),
          "--out", str(out), *var)
    stage("export_candidate", "--params", str(params), "--weights", str(out / "best.pt"),
          "--out-dir", str(out), "--calibration", str(data / "train" / "images"),
          "--parity", str(data / "val" / "images"), "--report", str(metrics / "export.json"),
          *var)
    stage("evaluate_candidate", "--params", str(params), "--champion", str(seed_model),
          "--fp32", str(out / "model.onnx"), "--int8", str(out / "model.int8.onnx"),
          "--data", str(data), "--out", str(metrics / "evaluate.json"),
          "--plots", str(metrics / "ap.json"))
    stage("gate", "--evaluation", str(metrics / "evaluate.json"), "--export",
          str(metrics / "export.json"), "--out", str(metrics / "gate.json"))
    gate = json.loads((metrics / "gate.json").read_text())
    failed = {c["name"] for c in gate["checks"] if not c["passed"]}
    assert gate["ship"] is False
    assert "golden_loss" in failed, gate["reasons"]
    golden = next(c for c in gate["checks"] if c["name"] == "golden_loss")
    assert golden["value"] > 10.0, "shuffled labels should cost the old data many points"
