"""The simulator's seed pipeline (sim/dvc.yaml), tiny, in a copy of the repository's example
project: the real `dvc repro` running the real Ultralytics trainer and ONNX export with every
network connection refused and recorded; then the project's own retrain (dvc.yaml, as `edgeloop
init` writes it) takes the seed set and champion from there, as a team's takes its own."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from sim.dataset import render_labelled_increment
from tests.support.netguard import SITE_DIR

pytestmark = pytest.mark.slow

TINY = {
    "render": {"seed": 1, "imgsz": 128, "train_frames": 12, "val_frames": 6, "test_frames": 6,
               "scenarios": ["dusk"]},
    "train": {"model": "yolo11n.yaml", "imgsz": 128, "epochs": 1, "batch": 8, "seed": 0,
              "patience": 100, "threads": 0, "cache": True, "augment": {}},
    "export": {"imgsz": 128, "dynamic": True},
    "evaluate": {"imgsz": 128},
}
# DVC adds each output it writes to the .gitignore beside it: the repository's list them already
IGNORES = ("data/.gitignore", "models/champion/.gitignore")


@pytest.fixture
def project(tmp_path: Path, repo_root: Path) -> Path:
    """A fresh git + DVC copy of the example project's files, the seed pipeline's params tiny;
    the renderer's code is there as the render stage's deps (the code run is this checkout's)."""
    work = tmp_path / "project"
    (work / "sim").mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", "edgeloop.yaml", ".dvcignore", "sim/dvc.yaml",
                 *IGNORES):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo_root / name, work / name)
    stages = yaml.safe_load((work / "sim" / "dvc.yaml").read_text())["stages"]
    for dep in stages["render"]["deps"]:
        (work / dep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo_root / dep, work / dep)
    (work / "sim" / "params.yaml").write_text(yaml.safe_dump(TINY))
    return work


def test_tiny_seed_pipeline_makes_the_projects_seed_set_and_champion_offline(
        project: Path, offline_env: dict[str, str], repo_root: Path):
    log = project.parent / "net.log"
    env = dict(offline_env, PYTHONPATH=f"{SITE_DIR}{os.pathsep}{repo_root}",
               EDGELOOP_NETGUARD_LOG=str(log))

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"{cmd}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        return result

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("dvc", "config", "core.analytics", "false")
    seed = run("dvc", "repro", "sim/dvc.yaml")  # as `make seed`
    for stage in ("seed-render", "seed-train", "seed-export", "seed-evaluate"):
        assert f"> edgeloop stage {stage} " in seed.stdout

    dataset = project / "data" / "seed"
    assert sorted(p.name for p in dataset.iterdir()) == ["data.yaml", "test_baseline", "train",
                                                         "val"]
    assert (project / "data" / "seed.yaml").read_text() == (dataset / "data.yaml").read_text()
    assert (project / "models/champion/best.pt").stat().st_size > 1_000_000
    assert not log.exists(), log.read_text()
    metrics = json.loads((project / "metrics/seed_eval.json").read_text())
    assert set(metrics) == {"baseline", "dusk"}
    for scores in metrics.values():
        assert 0.0 <= scores["map50"] <= 1.0 and 0.0 <= scores["map50_95"] <= scores["map50"]
    assert "seed_eval.json" in run("dvc", "metrics", "show").stdout
    assert "Data and pipelines are up to date" in run("dvc", "status", "sim/dvc.yaml").stdout

    session = ort.InferenceSession(str(project / "models/champion/model.onnx"),
                                   providers=["CPUExecutionProvider"])
    for size in (128, 256):  # dynamic input size
        (out,) = session.run(None, {session.get_inputs()[0].name:
                                    np.zeros((1, 3, size, size), np.float32)})
        assert out.shape[:2] == (1, 4 + 3)

    render_labelled_increment(project / "data" / "labelled" / "round-1", "new_variant", 16,
                              seed=5, width=128)
    prepare = run("dvc", "repro", "prepare")  # the retrain's first stage, on what seed made
    assert "> edgeloop stage prepare " in prepare.stdout
    assert "Running stage 'sim/dvc.yaml:" not in prepare.stdout  # the seed set was up to date
    summary = json.loads((project / "metrics" / "prepare.json").read_text())
    assert summary["sources"]["golden"] == {"seed": 6}  # the seed set's test split
    assert summary["sources"]["drift"].keys() == {"round-1"}
    assert summary["sources"]["train"]["seed"] >= 1
    assert not log.exists(), log.read_text()
    for name in IGNORES:
        assert (project / name).read_text() == (repo_root / name).read_text(), name


def test_the_network_guard_records_a_connection_attempt(tmp_path: Path, offline_env):
    log = tmp_path / "net.log"
    env = dict(offline_env, PYTHONPATH=str(SITE_DIR), EDGELOOP_NETGUARD_LOG=str(log))
    probe = "import socket; socket.create_connection(('192.0.2.1', 80), timeout=1)"
    result = subprocess.run(["python", "-c", probe], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "192.0.2.1" in log.read_text()
