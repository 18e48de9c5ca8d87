"""The seed pipeline, tiny: the real `dvc repro` running the real Ultralytics trainer and ONNX
export, with every network connection refused and recorded."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from tests.support.netguard import SITE_DIR

pytestmark = pytest.mark.slow

TINY = {
    "render": {"seed": 1, "imgsz": 128, "train_frames": 12, "val_frames": 6, "test_frames": 6,
               "scenarios": ["baseline", "dusk"]},
    "train": {"model": "yolo11n.yaml", "imgsz": 128, "epochs": 1, "batch": 8, "seed": 0,
              "patience": 100, "threads": 0, "cache": True, "augment": {}},
    "export": {"imgsz": 128, "dynamic": True},
    "evaluate": {"imgsz": 128},
    # dvc.yaml interpolates these in the retrain stages; DVC parses every stage of the file
    "champion": {"weights": "models/seed/best.pt", "onnx": "models/seed/model.onnx"},
}


@pytest.fixture
def project(tmp_path: Path, repo_root: Path) -> Path:
    """A fresh git + DVC project holding edgeloop's pipeline files and tiny params."""
    work = tmp_path / "project"
    work.mkdir()
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(repo_root / name, work / name)
    for package in ("sim", "flows"):
        shutil.copytree(repo_root / package, work / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (work / "params.yaml").write_text(yaml.safe_dump(TINY))
    return work


def test_tiny_seed_pipeline_reproduces_offline(project: Path, offline_env: dict[str, str]):
    log = project.parent / "net.log"
    env = dict(offline_env, PYTHONPATH=f"{SITE_DIR}{os.pathsep}{project}",
               EDGELOOP_NETGUARD_LOG=str(log))

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"{cmd}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        return result

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("dvc", "config", "core.analytics", "false")
    run("dvc", "repro", "seed_evaluate")  # as `make seed`; the retrain stages need labels

    assert (project / "models/seed/best.pt").stat().st_size > 1_000_000
    assert not log.exists(), log.read_text()
    metrics = json.loads((project / "metrics/seed_eval.json").read_text())
    assert set(metrics) == {"baseline", "dusk"}
    for scores in metrics.values():
        assert 0.0 <= scores["map50"] <= 1.0 and 0.0 <= scores["map50_95"] <= scores["map50"]
    assert "seed_eval.json" in run("dvc", "metrics", "show").stdout
    assert "Data and pipelines are up to date" in run("dvc", "status", "seed_evaluate").stdout

    session = ort.InferenceSession(str(project / "models/seed/model.onnx"),
                                   providers=["CPUExecutionProvider"])
    for size in (128, 256):  # dynamic input size
        (out,) = session.run(None, {session.get_inputs()[0].name:
                                    np.zeros((1, 3, size, size), np.float32)})
        assert out.shape[:2] == (1, 4 + 3)


def test_the_network_guard_records_a_connection_attempt(tmp_path: Path, offline_env):
    log = tmp_path / "net.log"
    env = dict(offline_env, PYTHONPATH=str(SITE_DIR), EDGELOOP_NETGUARD_LOG=str(log))
    probe = "import socket; socket.create_connection(('192.0.2.1', 80), timeout=1)"
    result = subprocess.run(["python", "-c", probe], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "192.0.2.1" in log.read_text()
