"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    """Prefect's test harness for the module's flow runs (a temporary server and database)."""
    from prefect.testing.utilities import prefect_test_harness

    # None: wait PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (120 s), not the harness's 30 s,
    # which a loaded 2-core machine running two test workers exceeded.
    with prefect_test_harness(server_startup_timeout=None):
        yield
