"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.labelstudio import RunningLabelStudio, label_studio
from tests.support.wheel import InstalledWheel, build_wheel, install_wheel


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    """Prefect's test harness for the module's flow runs (a temporary server and database)."""
    from prefect.testing.utilities import prefect_test_harness

    # None: wait PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (120 s), not the harness's 30 s,
    # which a loaded 2-core machine running two test workers exceeded.
    with prefect_test_harness(server_startup_timeout=None):
        yield


@pytest.fixture(scope="session")
def labelstudio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLabelStudio]:
    """One Label Studio server for the session, on a fresh copy of the migrated template."""
    with label_studio(tmp_path_factory.mktemp("labelstudio")) as server:
        yield server


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> InstalledWheel:
    """edgeloop's wheel, built from the committed files and installed in a fresh venv."""
    work = tmp_path_factory.mktemp("wheel")
    return install_wheel(build_wheel(work), work / "venv")
