"""Shared fixtures: the repository root and an environment that keeps tools offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.offline import offline_environment, use_offline_environment

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    """A subprocess environment with every offline switch set, state kept under tmp_path."""
    env = dict(os.environ)
    env.update(offline_environment(tmp_path / "var"))
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env



FIXTURES = ROOT / "tests" / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    """Tools imported by the tests stay offline and write under var/test, never to $HOME.
    Under pytest-xdist each worker gets its own Prefect home: a flow run without a server
    starts a temporary one on PREFECT_HOME's database, which two workers must not share."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        home = Path(os.environ.get("PREFECT_HOME", ROOT / "var" / "test" / "prefect"))
        os.environ["PREFECT_HOME"] = str(home.with_name(f"{home.name}-{worker}"))
    use_offline_environment(ROOT / "var" / "test")


@pytest.fixture(scope="session")
def seed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed model (YOLO11n trained by the seed pipeline on the simulator, committed as a test
    fixture), exported to ONNX with a dynamic input size by the real export stage; `best.pt`
    sits beside the returned .onnx file."""
    import shutil
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("seed_model")
    shutil.copy(FIXTURES / "seed_best.pt", work / "best.pt")
    (work / "params.yaml").write_text("export: {imgsz: 320, dynamic: true}\n")
    subprocess.run([sys.executable, "-m", "flows.retrain.stages.export", "--params",
                    str(work / "params.yaml"), "--weights", str(work / "best.pt"),
                    "--out", str(work / "model.onnx"), "--var", str(ROOT / "var" / "test")],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    return work / "model.onnx"
