"""`edgeloop flows drift`: compare a telemetry window with a reference profile (both Parquet),
or, without files, check the whole fleet once: one run of the `drift-check` flow (each active
device's latest window on the hub against its release's reference profile), as its deployment
does on a schedule.

Prints the verdict (a table, or JSON with --json) and exits 0 whether or not drift was found;
bad input (a missing file, missing columns, too few rows, no hub token) is a one-line error and
exit 1.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flows.drift.settings import load_drift_config
from flows.drift.verdict import DriftVerdict, TelemetryFileError, check_tables
from flows.offline import use_offline_environment
from hub.terminal import printable

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

PARQUET = click.Path(path_type=Path, dir_okay=False)


def read_telemetry(path: Path, which: str) -> pd.DataFrame:
    """A telemetry table (Parquet, columns as `edge_runtime.telemetry.stats_row`)."""
    import pandas as pd

    if not path.is_file():
        raise TelemetryFileError(f"{which} file {path} does not exist")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TelemetryFileError(f"{which} file {path} is not readable Parquet: {first}"
                                 ) from None


@click.command()
@click.option("--reference", "reference_path", default=None, type=PARQUET,
              help="The release's reference profile (Parquet telemetry). Without --reference "
                   "and --current: check every active device of the hub.")
@click.option("--current", "current_path", default=None, type=PARQUET,
              help="The live window to check (Parquet telemetry).")
@click.option("--hub-url", default=None,
              help="Fleet check: the hub (default: $EDGELOOP_HUB_URL, edgeloop.yaml's hub:, "
                   "else http://127.0.0.1:8700); admin token from $EDGELOOP_ADMIN_TOKEN.")
@click.option("--config", "config_path", type=PARQUET, default=None,
              help="Drift settings over the packaged defaults, the project's configs/drift.yaml "
                   "and edgeloop.yaml (drift:).")
@click.option("--report", "report_path", type=PARQUET, default=None,
              help="Also write Evidently's HTML report here.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.option("--var", type=click.Path(path_type=Path, file_okay=False), default=Path("var"),
              show_default=True, help="Runtime state folder (Evidently's settings).")
def drift(reference_path: Path | None, current_path: Path | None, hub_url: str | None,
          config_path: Path | None, report_path: Path | None, as_json: bool, var: Path) -> None:
    """Compare a window of telemetry with a reference profile (Evidently); without files, check
    each active device of the fleet against its release's reference once (the `drift-check`
    flow; reports under VAR/drift/reports)."""
    if reference_path is None and current_path is None:
        if report_path is not None:
            raise click.UsageError("--report needs --reference and --current (the fleet check "
                                   "stores each device's report under VAR/drift/reports)")
        _fleet(hub_url, config_path, as_json, var)
        return
    if reference_path is None or current_path is None:
        raise click.UsageError("give both --reference and --current, or neither (fleet check)")
    if hub_url is not None:
        raise click.UsageError("--hub-url is for the fleet check (no --reference/--current)")
    config = load_drift_config(config_path, project=Path.cwd())
    reference = read_telemetry(reference_path, "reference")
    current = read_telemetry(current_path, "current")
    check_tables(reference, current, config)  # bad input fails before Evidently's slow import
    use_offline_environment(var)  # before Evidently is imported
    from flows.drift.evidently_drift import check_drift

    check = check_drift(reference, current, config)
    if report_path is not None:
        check.save_html(report_path)
    if as_json:
        click.echo(json.dumps(check.verdict.to_dict()))
    else:
        _print_table(check.verdict, report_path)


def _fleet(hub_url: str | None, config_path: Path | None, as_json: bool, var: Path) -> None:
    use_offline_environment(var)  # before Prefect and Evidently are imported
    from flows.drift.flow import drift_check, load_drift_settings

    settings = load_drift_settings(os.environ, var=var, hub_url=hub_url,
                                   config_path=str(config_path) if config_path else None)

    sweep = drift_check(hub_url=settings.hub_url,
                        config_path=str(config_path) if config_path else None,
                        reports_url=settings.reports_url,
                        workspace_dir=str(settings.workspace_dir))
    if as_json:
        click.echo(json.dumps(sweep.to_dict(), default=str))
        return
    for device in sweep.devices:
        if device.verdict is None:
            click.echo(printable(f"{device.device_id}: not checked ({device.skipped})"))
            continue
        verdict = device.verdict
        groups = ", ".join(g.label for g in verdict.groups) or "none"
        click.echo(printable(
            f"{device.device_id}: drift {'YES' if verdict.drift else 'no'} "
            f"({verdict.drifted_count}/{verdict.tested_count} columns; groups: {groups}; "
            f"model {device.model_version}; report {device.report})"))
    fleet = sweep.fleet
    click.echo(f"fleet: {len(sweep.devices)} device(s), {fleet.checked} checked; fleet event "
               f"{'YES' if fleet.fleet_event else 'no'}; retrain devices "
               f"{list(fleet.retrain_devices)}; device faults {list(fleet.device_faults)}")


def _print_table(verdict: DriftVerdict, report: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped: do not squeeze the table into 80 columns
        console.width = max(console.width, 110)
    groups = ", ".join(g.label for g in verdict.groups) or "none"
    console.print(f"drift: [bold]{'YES' if verdict.drift else 'no'}[/bold]  "
                  f"({verdict.drifted_count}/{verdict.tested_count} columns drifted; "
                  f"groups: {groups}; reference {verdict.reference_rows} rows, current "
                  f"{verdict.current_rows} rows)")
    with_effect = any(c.effect is not None for c in verdict.columns)
    table = Table()
    for name in ("column", "group", "method", "score", "threshold", "effect", "drifted"):
        if name != "effect" or with_effect:
            table.add_column(name, no_wrap=True, justify="right" if name in (
                "score", "threshold", "effect") else "left")
    for c in verdict.columns:
        cells = [c.column, c.group.label, c.method, _fmt(c.score), _fmt(c.threshold)]
        cells += [_fmt(c.effect)] if with_effect else []
        cells += ["[bold red]yes[/]" if c.drifted else ("no" if c.tested else "not tested")]
        table.add_row(*cells)
    console.print(table)
    if report is not None:
        console.print(f"report: {report}")


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3g}"
