"""`edgeloop stage NAME ...`: the DVC stages of a data project, run by `dvc repro` from the
project's `dvc.yaml` (`edgeloop stage NAME --help` lists a stage's options).

A project records the edgeloop version its stages ran with as a param (`edgeloop.version` in
params.yaml): after an upgrade the stage refuses until the param says the new version, so DVC
sees the change and re-runs what the new code may compute differently.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click
import yaml

# stage name -> module under flows.retrain.stages
STAGES = {
    "prepare": "prepare",  # the seed set + labelled increments -> data/prepared
    "train": "train",  # Ultralytics fine-tune of the champion
    "export": "export_candidate",  # ONNX fp32 + int8, parity with PyTorch
    "evaluate": "evaluate_candidate",  # champion, fp32, int8 through the device's detector
    "gate": "gate",  # does the candidate ship, which file, why
    "profile": "profile",  # the shipped file's reference telemetry
    "seed-render": "seed_render",  # the simulator's example project only
    "seed-train": "train",
    "seed-export": "export",
    "seed-evaluate": "evaluate",
}


def installed_version() -> str:
    try:
        return version("edgeloop")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def check_project_version(params: Path, installed: str) -> None:
    """Refuse to run a stage of a project made for another edgeloop version (see above)."""
    if not params.is_file():
        return
    document = yaml.safe_load(params.read_text(encoding="utf-8")) or {}
    recorded = (document.get("edgeloop") or {}).get("version") if isinstance(document, dict) \
        else None
    if recorded is not None and str(recorded) != installed:
        raise click.ClickException(
            f"{params} says edgeloop {recorded}, this is edgeloop {installed}: set "
            f"edgeloop.version to {installed} in {params} (DVC then re-runs the stages the "
            "new version may compute differently)")


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("name", type=click.Choice(sorted(STAGES)))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def stage(name: str, args: tuple[str, ...]) -> None:
    """Run one DVC stage of a data project (`edgeloop stage NAME --help` for its options)."""
    check_project_version(Path("params.yaml"), installed_version())
    module = importlib.import_module(f"flows.retrain.stages.{STAGES[name]}")
    module.main(list(args))
