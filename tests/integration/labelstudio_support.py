"""A real Label Studio server for the labelling tests (demo.labelstudio_server): one per test
session on a fresh copy of the migrated template kept under var/test/, stopped with SIGTERM.
Import the fixtures with `pytest_plugins = ["labelstudio_support"]`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from demo.labelstudio_server import LS_BIN, ROOT, RunningLabelStudio, fresh_label_studio

__all__ = ["RunningLabelStudio", "labelstudio_server"]


@pytest.fixture(scope="session")
def labelstudio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLabelStudio]:
    """One Label Studio server for the session, on a fresh copy of the migrated template."""
    if not LS_BIN.is_file():
        pytest.skip(f"no Label Studio server at {LS_BIN} (make setup creates it)")
    with fresh_label_studio(tmp_path_factory.mktemp("labelstudio"),
                            ROOT / "var" / "test") as server:
        yield server
