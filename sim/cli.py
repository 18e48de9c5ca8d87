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
