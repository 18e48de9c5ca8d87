"""`edgeloop sim`: list the scenarios and render datasets from them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click
import cv2

from sim.dataset import render_dataset
from sim.scenarios import SCENARIOS


@click.group()
def sim() -> None:
    """The synthetic production line: conveyor frames with exact labels and named drift."""


@sim.command()
def scenarios() -> None:
    """List the scenarios, one line each."""
    width = max(len(name) for name in SCENARIOS)
    for scenario in SCENARIOS.values():
        scope = "device-only" if scenario.device_only else "line-wide"
        click.echo(f"{scenario.name:<{width}}  {scope:<11}  {scenario.summary}")


@sim.command()
@click.option("--scenario", required=True, type=click.Choice(list(SCENARIOS)),
              help="Which line conditions to render (see `edgeloop sim scenarios`).")
@click.option("--frames", required=True, type=click.IntRange(min=1), help="How many frames.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Same seed, same bytes.")
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write images/, labels/ and data.yaml into.")
@click.option("--imgsz", default=320, show_default=True, type=click.IntRange(64, 4096),
              help="Frame width in pixels (height is 3/4 of it).")
@click.option("--overwrite", is_flag=True, help="Replace images/ and labels/ if OUT has them.")
def render(scenario: str, frames: int, seed: int, out: Path, imgsz: int, overwrite: bool) -> None:
    """Render FRAMES frames of SCENARIO as a YOLO dataset folder."""
    existing = [out / "images", out / "labels"]
    if any(p.exists() and any(p.iterdir()) for p in existing):
        if not overwrite:
            raise click.UsageError(f"{out} already holds a dataset; pass --overwrite to replace it")
        for p in existing:
            shutil.rmtree(p, ignore_errors=True)
    with click.progressbar(length=frames, label=f"rendering {scenario}", file=sys.stderr) as bar:
        spec = render_dataset(out, scenario, frames, seed, imgsz, progress=bar.update)
    click.echo(f"wrote {frames} frames of {scenario} to {out} ({spec.name})")


@sim.command()
@click.option("--out", default=Path("var/demo/scenarios.png"), show_default=True,
              type=click.Path(path_type=Path, dir_okay=False), help="PNG to write.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--frames", default=4, show_default=True, type=click.IntRange(1, 12),
              help="Frames per scenario.")
def preview(out: Path, seed: int, frames: int) -> None:
    """Write a contact sheet: one row per scenario, ground-truth boxes drawn."""
    from sim.preview import contact_sheet

    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), contact_sheet(seed, frames)):
        raise click.ClickException(f"could not write {out}")
    click.echo(f"wrote {out}")


@sim.command()
@click.option("--ls-url", required=True, help="Label Studio URL, e.g. http://127.0.0.1:8080.")
@click.option("--token", required=True, envvar="EDGELOOP_LABELSTUDIO_TOKEN",
              help="Label Studio API token (or EDGELOOP_LABELSTUDIO_TOKEN).")
@click.option("--project", required=True, type=click.IntRange(min=1),
              help="Label Studio project id.")
@click.option("--error-rate", default=0.0, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Share of boxes the annotator forgets or mislabels (even odds).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of the label noise.")
@click.option("--scenario", "scenarios", multiple=True, type=click.Choice(list(SCENARIOS)),
              help="Scenario(s) the devices stream (repeatable; default: all).")
@click.option("--stream-seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="The devices' simulator seed (edge run uses 0).")
@click.option("--max-index", default=2000, show_default=True, type=click.IntRange(min=0),
              help="How far into a device's stream to look for a frame.")
@click.option("--limit", default=None, type=click.IntRange(min=1),
              help="Annotate at most this many tasks.")
def annotate(ls_url: str, token: str, project: int, error_rate: float, seed: int,
             scenarios: tuple[str, ...], stream_seed: int, max_index: int,
             limit: int | None) -> None:
    """SIMULATED annotator (demo and tests): label the open tasks of a Label Studio project with
    the simulator's ground truth, found by re-rendering each device's stream."""
    from demo.labelstudio_desk import LabelStudioDesk
    from flows.labelling.labelstudio_client import (
        LabelStudioClient,  # cloud-side; only this command
    )
    from sim.annotate import TruthLookup, annotate_open_tasks

    lookup = TruthLookup(scenarios or tuple(SCENARIOS), seed=stream_seed, max_index=max_index)
    with LabelStudioClient(ls_url, token) as client:
        report = annotate_open_tasks(LabelStudioDesk(client, project), lookup,
                                     error_rate=error_rate, seed=seed, limit=limit)
    click.echo(f"annotated {report.annotated} tasks ({report.boxes} boxes, {report.spoilt} "
               f"spoilt by noise); no matching frame for {len(report.not_found)}"
               + (f": tasks {report.not_found}" if report.not_found else ""))
