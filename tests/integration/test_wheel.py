"""The package as a team meets it: a wheel built from the committed files, installed in a fresh
venv, used from a directory outside the checkout. Its default settings come from the wheel."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.support.wheel import InstalledWheel

pytestmark = pytest.mark.slow

DEFAULTS = ("drift.yaml", "edge.yaml", "gate.yaml", "hub.yaml", "labelling.yaml",
            "labelstudio.xml", "release.yaml", "sampling.yaml")
USE = """
import json, sys
from pathlib import Path
import configs, flows.drift, flows.release
from configs.loader import SettingsError
from edge_runtime.device import load_device_settings
from flows.drift.settings import load_drift_config
from flows.labelling.settings import load_labelling_settings
from flows.release.settings import load_release_config
from flows.retrain.gate import load_gate_config
from hub.settings import load_settings
here = Path.cwd()
try:
    load_gate_config(project=here)
except SettingsError as error:
    refused = str(error)
print(json.dumps({
    "files": [m.__file__ for m in (configs, flows.drift, flows.release)],
    "drift_columns": len(load_drift_config(project=here).columns),
    "canary": load_release_config(project=here).canary_channel,
    "classes": load_labelling_settings(None, {}, project=here).classes,
    "port": load_settings({}, project=here).port,
    "spool_mb": load_device_settings({}, project=here, model=Path("m.onnx")).spool_mb,
    "refused": refused,
}))
"""


def test_a_wheel_from_the_committed_files_ships_the_defaults_and_runs_elsewhere(
        tmp_path: Path, installed: InstalledWheel) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert {f"configs/{name}" for name in DEFAULTS} <= names
    assert not any(n.startswith(("tests/", "data/", "var/")) for n in names)

    elsewhere = tmp_path / "team-project"
    (elsewhere / "configs").mkdir(parents=True)
    (elsewhere / "configs" / "gate.yaml").write_text("max_golden_loss: 1\n")
    run = subprocess.run([str(installed.python), "-c", USE], cwd=elsewhere, capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    used = json.loads(run.stdout)
    assert all(f.startswith(str(installed.venv)) for f in used["files"]), used["files"]
    assert used["drift_columns"] > 0 and used["canary"] == "canary" and used["port"] == 8700
    assert used["classes"] == ["nut", "washer", "bolt"] and used["spool_mb"] == 512
    assert "unknown settings max_golden_loss" in used["refused"]
    assert "team-project/configs/gate.yaml" in used["refused"]
