"""edgeloop's default settings, shipped in the wheel as package data (read them with
`configs.default_path`); a project's own `configs/*.yaml` files override them."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def default_path(name: str) -> Path:
    """The packaged default file `name` (e.g. `gate.yaml`), from the installed package."""
    return Path(str(files(__name__).joinpath(name)))
