"""A real Label Studio server for the labelling tests (demo.labelstudio_server) on a fresh copy of
the migrated template kept under var/test/, stopped with SIGTERM."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.labelstudio_server import LS_BIN, RunningLabelStudio, fresh_label_studio
from tests.support.paths import VAR_TEST

__all__ = ["RunningLabelStudio", "label_studio"]


@contextlib.contextmanager
def label_studio(folder: Path) -> Iterator[RunningLabelStudio]:
    """A server on a fresh copy of the template under `folder`; skips where `make setup` has not
    installed Label Studio."""
    if not LS_BIN.is_file():
        pytest.skip(f"no Label Studio server at {LS_BIN} (make setup creates it)")
    with fresh_label_studio(folder, VAR_TEST) as server:
        yield server
