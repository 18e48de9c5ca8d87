"""Shared fixtures: the repository root and an environment that keeps tools offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.offline import offline_environment

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
