"""Fixtures for every test: the repository root, an offline environment for subprocesses, the
seed model, and a real hub over SQLite or a throwaway PostgreSQL database (tests/support holds
what they call)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.offline import offline_environment, pin_offline_environment, prepare_ultralytics_dir
from tests.support.hub import RunningHub, hub_settings, running_hub
from tests.support.paths import ROOT, VAR_TEST
from tests.support.postgres import empty_pg, throwaway_database
from tests.support.seed_model import export_seed_model


def pytest_configure(config: pytest.Config) -> None:
    """Tools imported by the tests stay offline and write under var/test (or the folders the
    Makefile pins), never to $HOME: unlike the product (flows.offline), the harness pins every
    switch whatever the developer's own settings, and drops their Prefect server and profile.
    Under pytest-xdist each worker gets its own Prefect home: a flow run without a server
    starts a temporary one on PREFECT_HOME's database, which two workers must not share."""
    for key in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH"):
        os.environ.pop(key, None)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        home = Path(os.environ.get("PREFECT_HOME", VAR_TEST / "prefect"))
        os.environ["PREFECT_HOME"] = str(home.with_name(f"{home.name}-{worker}"))
    for key, value in offline_environment(VAR_TEST).items():
        os.environ.setdefault(key, value)
    prepare_ultralytics_dir(Path(os.environ["YOLO_CONFIG_DIR"]))
    Path(os.environ["MPLCONFIGDIR"]).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    """A subprocess environment with every offline switch set, state kept under tmp_path."""
    env = dict(os.environ)
    env.update(pin_offline_environment(tmp_path / "var"))
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="session")
def seed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed model exported to ONNX with a dynamic input size; `best.pt` sits beside it."""
    return export_seed_model(tmp_path_factory.mktemp("seed_model"))


# -- a real hub ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session, dropped at its end."""
    with throwaway_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test runs against SQLite and PostgreSQL, starting from an empty hub."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.sqlite'}"
    url: str = request.getfixturevalue("pg_url")
    empty_pg(url)
    return url


@pytest.fixture
def hub(db_url: str, tmp_path: Path) -> Iterator[RunningHub]:
    with running_hub(hub_settings(db_url, tmp_path)) as running:
        yield running


@pytest.fixture
def sqlite_hub(tmp_path: Path) -> Iterator[RunningHub]:
    """For behaviour decided before the database is touched (limits, media types)."""
    with running_hub(hub_settings(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path)) as running:
        yield running
