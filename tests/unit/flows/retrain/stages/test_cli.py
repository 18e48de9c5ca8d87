"""`edgeloop stage`: a project made for another edgeloop version is refused until its param says
the new one (so DVC re-runs the stages)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from flows.retrain.stages.cli import STAGES, check_project_version


def test_a_project_of_another_version_is_refused_saying_what_to_change(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("edgeloop: {version: 0.1.0}\nprepare: {seed: 0}\n")
    check_project_version(params, "0.1.0")
    with pytest.raises(click.ClickException, match=r"set edgeloop\.version to 0\.2\.0"):
        check_project_version(params, "0.2.0")
    params.write_text("prepare: {seed: 0}\n")  # the simulator's example: no version recorded
    check_project_version(params, "0.2.0")
    check_project_version(tmp_path / "absent.yaml", "0.2.0")


def test_every_stage_names_a_module_with_a_main() -> None:
    import importlib

    for name, module in STAGES.items():
        assert callable(importlib.import_module(f"flows.retrain.stages.{module}").main), name
