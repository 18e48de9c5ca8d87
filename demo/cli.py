"""`edgeloop demo`: the closed loop on this machine, watched live in the terminal."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from demo.scenario import DEVICE_ONLY, LINE_WIDE, NO_FAULT, fault_layers, fleet_layers

ROOT = Path(__file__).resolve().parent.parent


class LiveView:
    """What the terminal shows while the loop runs, redrawn from the shared state."""

    def __init__(self) -> None:
        self.state: Any = None

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        state = self.state
        if state is None:
            return "starting..."
        with state.lock:
            devices = dict(state.devices)
            log = list(state.log[-12:])
        table = Table(title=f"edgeloop demo  {int(state.t() // 60):02d}:{int(state.t() % 60):02d}"
                            f"  {state.phase}", title_justify="left", expand=True)
        for column in ("device", "frame", "camera sees", "model", "mAP50", "drift"):
            table.add_column(column)
        for name, view in sorted(devices.items()):
            drift = "-" if view.drift_score is None else \
                f"{view.drift_score:.2f}{' DRIFT' if view.drifted else ''}"
            table.add_row(name, str(max(view.frame, 0)), view.conditions,
                          view.model_version[:12] or "-",
                          "-" if view.map50 is None else f"{view.map50:.3f}", drift)
        return Group(table, *log)


class LogLines:
    """Prints the demo's event lines as they come (for a log file rather than a terminal)."""

    def __init__(self, view: LiveView, console: Any) -> None:
        import threading

        self.view, self.console = view, console
        self.printed = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="demo-log", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if not self.stopping.is_set():
            self.stopping.set()
            self.thread.join(timeout=5)
            self._flush()

    def _run(self) -> None:
        while not self.stopping.wait(1.0):
            self._flush()

    def _flush(self) -> None:
        state = self.view.state
        if state is None:
            return
        with state.lock:
            lines = state.log[self.printed:]
            self.printed += len(lines)
        for line in lines:
            self.console.print(line, highlight=False, soft_wrap=True)


def _refusing(layers_of: Callable[[str, int], object]) -> Callable[..., str]:
    """A click callback that refuses a spec `layers_of` refuses, in one line; the onsets are
    checked against each other once the sizes are known."""

    def check(ctx: click.Context, param: click.Parameter, spec: str) -> str:
        try:
            layers_of(spec, 1)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
        return spec

    return check


@click.command()
@click.option("--out", default=ROOT / "var" / "demo", show_default=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="Where the report, the plot, summary.json, logs and servers' data go.")
@click.option("--devices", default=3, show_default=True, type=click.IntRange(min=3),
              help="Simulated edge devices (the first on the canary channel, the last one "
                   "gets the --fault).")
@click.option("--fleet-drift", default="new_variant", show_default=True,
              callback=_refusing(fleet_layers),
              help=f"What reaches every device: a line-wide scenario ({', '.join(LINE_WIDE)}), "
                   "several at once (dusk+line_speedup) or layers each arriving at its own frame "
                   "(new_variant@450,dusk@600); a layer without @FRAME arrives at the "
                   "size's drift frame.")
@click.option("--fault", default="camera_bump", show_default=True,
              callback=_refusing(fault_layers),
              help=f"What happens to the last device's camera alone, before the fleet drift: a "
                   f"device-only scenario ({', '.join(DEVICE_ONLY)}), written as --fleet-drift "
                   f"is (without @FRAME: at the size's fault frame), or {NO_FAULT}.")
@click.option("--fps", default=None, type=click.FloatRange(min=0.5),
              help="Each device's camera rate, frames per second (default 3; tiny: 2).")
@click.option("--size", type=click.Choice(["demo", "tiny"]), default="demo", show_default=True,
              help="tiny: the end-to-end test's sizes (fewer frames, labels and epochs).")
@click.option("--timeout", "timeout_min", default=30.0, show_default=True,
              type=click.FloatRange(min=1), help="Give up after this many minutes.")
@click.option("--exit", "exit_at_end", is_flag=True,
              help="Stop the servers and exit when the loop is done (default: keep the UIs up "
                   "until Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json at the end.")
def demo(out: Path, devices: int, fleet_drift: str, fault: str, fps: float | None, size: str,
         timeout_min: float, exit_at_end: bool, as_json: bool) -> None:
    """Run the whole loop on this machine and measure it.

    Starts the hub (SQLite), Label Studio, a Prefect server and the Evidently UI, and several
    simulated devices streaming the synthetic line. Mid-stream one device's camera is bumped (a
    device fault: reported, no retrain; see --fault), then a new nut variant reaches every
    device (a fleet event; see --fleet-drift): the drift check raises the alarm, the most
    uncertain frames go to Label Studio where a simulated annotator labels them, the labels
    become a DVC dataset version, the retrain fine-tunes and gates a candidate, the release goes
    to the canary device and is promoted, and the fleet updates. Writes OUT/report.md,
    OUT/timeline.png and OUT/summary.json.
    """
    import os
    import signal
    import sys

    from rich.console import Console
    from rich.live import Live

    # Flow and task logs go to the Prefect UI; the terminal shows the live view instead.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    from demo.loop import DemoConfig, run_demo, tiny
    from demo.report import rich_summary_table

    config = DemoConfig(out=out, devices=devices, timeout_s=timeout_min * 60)
    if size == "tiny":
        config = tiny(config)
    try:  # at the sizes chosen: the fault must arrive before the fleet drift
        config = replace(config, fleet_drift=fleet_drift, fault=fault)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=["--fleet-drift", "--fault"]) from None
    config = replace(config, fps=fps) if fps is not None else config
    # SIGTERM (a supervisor, `timeout`) unwinds like Ctrl-C: every server started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    console = Console(stderr=True)
    view = LiveView()

    def keep_up(urls: dict[str, str]) -> None:
        display.stop()
        if exit_at_end:
            return
        console.print("The UIs stay up until Ctrl-C:")
        for name, url in urls.items():
            console.print(f"  {name:<13} {url}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("stopping the servers...")

    # A terminal gets the live table; a log (CI, a file) gets the event lines as they happen.
    display: Live | LogLines = Live(view, console=console, refresh_per_second=2) \
        if console.is_terminal else LogLines(view, console)
    display.start()
    try:
        result = run_demo(config, on_state=lambda s: setattr(view, "state", s), keep_up=keep_up)
    finally:
        display.stop()
    console.print(rich_summary_table(result.summary))
    console.print(f"report {result.report}\nplot   {result.plot}\nsummary {result.summary_json}")
    if as_json:
        click.echo(json.dumps(result.summary.to_json_dict()))
    if result.error:
        raise click.ClickException(f"the loop stopped early: {result.error}")
