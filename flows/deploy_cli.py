"""`edgeloop flows deploy`: register the loop's Prefect deployments on a work pool (or, with
--dry-run, only print what would be registered)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from flows.deploy import (
    DEFAULT_POOL,
    DeployError,
    DeployPlan,
    DeployPlanError,
    Intervals,
    deployment_plan,
    parse_interval,
)
from flows.events import DATASET_EVENT, FLEET_EVENT
from flows.offline import use_offline_environment


class IntervalType(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_interval(str(value))
        except DeployPlanError as exc:
            self.fail(str(exc), param, ctx)


DURATION = IntervalType()
DEFAULTS = Intervals()


def _every(flag: str, default: int, what: str) -> Any:
    return click.option(flag, type=DURATION, default=str(default), show_default=True,
                        help=f"How often {what} (e.g. 15m, 1h, 1d; plain numbers are seconds).")


@click.command("deploy")
@click.option("--pool", default=DEFAULT_POOL, show_default=True,
              help="Work pool (type process), created when missing.")
@click.option("--retrain-pool", default=None, metavar="NAME",
              help="Work pool for the retrain deployment alone, e.g. one that workers on GPU "
                   "machines serve (created when missing; training takes their GPU by "
                   "params.yaml's device: auto). Default: --pool.")
@click.option("--project", default=".", show_default=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The data project (made by `edgeloop init`) the worker runs the flows in.")
@_every("--drift-every", DEFAULTS.drift_check, "the fleet is checked for drift")
@_every("--label-every", DEFAULTS.request_labels,
        "frames go to Label Studio besides on a fleet-wide drift")
@_every("--collect-every", DEFAULTS.collect_labels, "finished labels are collected")
@_every("--canary-every", DEFAULTS.canary_decision, "the canary is judged")
@_every("--refresh-every", DEFAULTS.release_refresh, "the TUF timestamp is re-signed")
@click.option("--hub", "hub_url", default=None, metavar="URL",
              help="Hub URL passed to the flows (default: EDGELOOP_HUB_URL where they run).")
@click.option("--dry-run", is_flag=True, help="Print the plan; register nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--var", default="var", show_default=True, type=click.Path(file_okay=False),
              help="Runtime state folder (Prefect home, tool settings).")
def deploy(pool: str, retrain_pool: str | None, project: Path, drift_every: int,
           label_every: int, collect_every: int, canary_every: int, refresh_every: int,
           hub_url: str | None, dry_run: bool, as_json: bool, var: str) -> None:
    """Register the closed loop as Prefect deployments on a process work pool.

    \b
    Scheduled: drift-check, request-labels, collect-labels, release-canary,
    release-refresh (TUF timestamp). On events: request-labels also runs on
    edgeloop.drift.fleet-event (drift-check saw a fleet-wide drift); retrain runs
    on edgeloop.dataset.version (collect-labels made a new dataset version) and
    releases a passing candidate to canary.

    \b
    Needs a Prefect server: `prefect server start`, PREFECT_API_URL set. Then run
    them with `prefect worker start --pool edgeloop` from any shell that has
    EDGELOOP_ADMIN_TOKEN (and the Label Studio token) set; with --retrain-pool gpu,
    `prefect worker start --pool gpu` on the GPU machines too. Running deploy again
    updates the deployments (a pool moved included); it never duplicates them.
    """
    intervals = Intervals(drift_check=drift_every, request_labels=label_every,
                          collect_labels=collect_every, canary_decision=canary_every,
                          release_refresh=refresh_every)
    try:
        plan = deployment_plan(project, pool=pool, intervals=intervals, hub_url=hub_url,
                               retrain_pool=retrain_pool)
    except DeployPlanError as exc:
        raise click.ClickException(str(exc)) from None
    if dry_run:
        _report(plan, None, as_json)
        return
    use_offline_environment(Path(var))  # before Prefect is imported
    from flows.deploy import apply_plan

    try:
        applied = apply_plan(plan)
    except DeployError as exc:
        raise click.ClickException(str(exc)) from None
    _report(plan, applied, as_json)
    if not as_json:
        click.echo("\nrun them: " + "; ".join(f"prefect worker start --pool {p}"
                                              for p in plan.pools))


def _report(plan: DeployPlan, applied: dict[str, str] | None, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**plan.to_dict(), "dry_run": applied is None,
                               "deployment_ids": applied or {}}))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped: do not squeeze the table into 80 columns
        console.width = max(console.width, 140)
    verb = "would register" if applied is None else "registered"
    pools = ", ".join(f"[bold]{p}[/bold]" for p in plan.pools)
    console.print(f"{verb} on work pool{'s' * (len(plan.pools) > 1)} {pools} (process), "
                  f"project {plan.project}:")
    table = Table()
    for name in ("deployment", "pool", "entrypoint", "runs", "parameters"):
        table.add_column(name, no_wrap=name != "parameters")
    for d in plan.deployments:
        table.add_row(d.full_name, d.pool, d.entrypoint, d.when(),
                      ", ".join(f"{k}={v}" for k, v in d.parameters.items()) or "-")
    console.print(table)
    console.print(f"events: {FLEET_EVENT} (drift-check), {DATASET_EVENT} (collect-labels)")
