"""`edgeloop init` as a team meets it, from the installed wheel in a folder outside the
checkout: its own 3-class model (other names, 640 px) and dataset (its own layout, no test
split), then the first stage of the retrain run by the real `dvc repro`; the team's data is
never written to."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.paths import FIXTURES
from tests.support.team_project import (
    NAMES,
    digest,
    increment,
    their_dataset,
    their_model,
)
from tests.support.wheel import InstalledWheel

pytestmark = pytest.mark.slow
def test_init_makes_a_project_from_a_teams_model_and_data_and_never_touches_its_data(
        tmp_path: Path, offline_env: dict[str, str], installed: InstalledWheel) -> None:
    env = installed.env(offline_env)
    data_yaml = their_dataset(tmp_path / "their-data")
    weights = their_model(tmp_path / "best.pt")
    before = digest(tmp_path / "their-data")
    made = subprocess.run([installed.edgeloop, "init", "line-7", "--model", str(weights),
                           "--data", str(data_yaml), "--fleet", "line-7"], cwd=tmp_path, env=env,
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

    plan = subprocess.run([installed.edgeloop, "flows", "deploy", "--dry-run", "--json"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr  # deployable from the project, no --project
    deployments = json.loads(plan.stdout)
    assert deployments["project"] == str(project.resolve())
    assert {d["entrypoint"].split(".")[0] for d in deployments["deployments"]} == {"flows"}

    increment(project)
    seed_before = digest(project / "data" / "seed")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune"].update(epochs=1, batch=4, imgsz=320)  # a tiny retrain on 2 cores
    params["release_export"].update(imgsz=320, calibration_frames=4, parity_frames=2)
    params["release_evaluate"]["imgsz"] = params["profile"]["imgsz"] = 320
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repro = subprocess.run(["dvc", "repro"], cwd=project, env=env, capture_output=True,
                           text=True, timeout=900)
    assert repro.returncode == 0, repro.stdout + repro.stderr
    for stage in ("prepare", "train", "export", "evaluate", "gate", "profile"):
        assert f"> edgeloop stage {stage} " in repro.stdout  # the installed package ran it
    gate = json.loads((project / "metrics" / "gate.json").read_text())
    assert gate["ship"] is False  # an untrained champion's candidate gains nothing: refused
    assert any("drift slice" in reason for reason in gate["reasons"])
    assert (project / "models" / "candidate" / "reference.parquet").is_file()
    summary = json.loads((project / "metrics" / "prepare.json").read_text())
    assert summary["frames"]["golden"] == 2  # 20% of val: the dataset has no test split
    assert summary["sources"]["golden"] == {"seed": 2}
    assert summary["sources"]["val"]["seed"] == 8  # the rest of val stays validation
    assert summary["sources"]["train"]["batch-0001"] >= 1
    assert digest(project / "data" / "seed") == seed_before  # the stage only read it
    prepared = yaml.safe_load((project / "data" / "prepared" / "data.yaml").read_text())
    assert prepared["names"] == NAMES


def test_a_dataset_with_other_classes_than_the_model_is_refused_and_nothing_is_made(
        tmp_path: Path, offline_env: dict[str, str], installed: InstalledWheel) -> None:
    data_yaml = their_dataset(tmp_path / "their-data", train=1, val=2)
    refused = subprocess.run([installed.edgeloop, "init", "line-7", "--model",
                              str(FIXTURES / "seed_best.pt"), "--data", str(data_yaml)],
                             cwd=tmp_path, env=installed.env(offline_env),
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr  # one line, no traceback
    assert "['gear', 'cog', 'spring'] are not the model's ['nut', 'washer', 'bolt']" in \
        refused.stderr
    assert not (tmp_path / "line-7").exists()
