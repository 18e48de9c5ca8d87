"""Reads one stage's section of params.yaml, refusing a missing or unknown key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ParamsError(ValueError):
    """params.yaml lacks a stage's section or holds a key the stage does not know."""


def stage_params(path: Path, section: str, known: set[str]) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text()) or {}
    if section not in document:
        raise ParamsError(f"{path} has no '{section}' section")
    values = document[section]
    unknown = set(values) - known
    if unknown:
        raise ParamsError(f"{path} [{section}] has unknown keys: {', '.join(sorted(unknown))}")
    return dict(values)
