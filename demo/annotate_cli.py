"""`edgeloop sim-annotator`: the SIMULATED annotator of the demo and the tests. It labels Label
Studio's open tasks with the simulator's ground truth; part of the harness, not the product."""

from __future__ import annotations

import click

from sim.scenarios import SCENARIOS


@click.command("sim-annotator")
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
