"""`edgeloop hub ...`: serve the fleet API, and manage devices through a running hub's admin API."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from hub.settings import HubSettings, load_settings
from hub.terminal import count, megabytes, printable, printable_json

admin_options = [
    click.option("--hub", "hub_url", default=None,
                 help="Hub URL (or EDGELOOP_HUB_URL; default http://127.0.0.1:8700)."),
    click.option("--admin-token", default=None, help="Admin token (or EDGELOOP_ADMIN_TOKEN)."),
]


def with_admin_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(admin_options):
        command = option(command)
    return command


@click.group()
def hub() -> None:
    """The cloud's front door: serve the fleet API, manage devices."""


@hub.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8700).")
@click.option("--db", "db_url", default=None,
              help="sqlite:///PATH (default var/hub/hub.sqlite) or postgresql+psycopg://...")
@click.option("--blobs", "blobs_url", default=None,
              help="Folder or fsspec URL for frames and artefacts (default var/hub/blobs).")
@click.option("--admin-token", default=None, help="Admin token (or EDGELOOP_ADMIN_TOKEN).")
@click.option("--access-log/--no-access-log", default=None, help="One log line per request.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Hub processes sharing the port (or EDGELOOP_HUB_WORKERS; default 1). Python "
                   "ingests on about one core per process: give one per spare core, with "
                   "PostgreSQL (on SQLite, one writer at a time: more processes only queue).")
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A YAML file of hub settings over the packaged defaults, the project's "
                   "configs/hub.yaml and edgeloop.yaml (hub:); the environment and flags win.")
def serve(config: Path | None, **flags: Any) -> None:
    """Run the hub (several processes may share a database and blob storage)."""
    settings = load_settings(os.environ, project=Path.cwd(), config=config, **flags)
    settings.require_admin_token()
    from hub.serve import serve as run_server  # FastAPI and SQLAlchemy load only here

    run_server(settings)


@hub.group()
def device() -> None:
    """Register, list and revoke devices (through a running hub's admin API)."""


def _client(hub_url: str | None, admin_token: str | None) -> Any:
    from hub.client import HubClient

    settings: HubSettings = load_settings(os.environ, project=Path.cwd(), hub_url=hub_url,
                                          admin_token=admin_token)
    return HubClient(settings.hub_url, admin_token=settings.require_admin_token())


@device.command("add")
@click.argument("device_id")
@click.option("--channel", default="stable", show_default=True, help="Release channel.")
@with_admin_options
def device_add(device_id: str, channel: str, hub_url: str | None,
               admin_token: str | None) -> None:
    """Register DEVICE_ID and print its token (shown only this once) on stdout."""
    with _client(hub_url, admin_token) as client:
        new = client.add_device(device_id, channel)
    click.echo(f"device {printable(new.device_id)} added to channel {printable(new.channel)}; "
               "its token (shown once) follows on stdout", err=True)
    click.echo(new.token)


@device.command("rotate-token")
@click.argument("device_id")
@with_admin_options
def device_rotate(device_id: str, hub_url: str | None, admin_token: str | None) -> None:
    """Give DEVICE_ID a new token (the old one stops working; lifts a revocation)."""
    with _client(hub_url, admin_token) as client:
        new = client.rotate_token(device_id)
    click.echo(f"device {printable(new.device_id)}: new token (shown once) follows on stdout",
               err=True)
    click.echo(new.token)


@device.command("revoke")
@click.argument("device_id")
@with_admin_options
def device_revoke(device_id: str, hub_url: str | None, admin_token: str | None) -> None:
    """Revoke DEVICE_ID's token: its uploads are refused from now on."""
    with _client(hub_url, admin_token) as client:
        record = client.revoke_device(device_id)
    click.echo(f"device {printable(record.device_id)} revoked")


@device.command("quarantine")
@click.argument("device_id")
@with_admin_options
def device_quarantine(device_id: str, hub_url: str | None, admin_token: str | None) -> None:
    """Move DEVICE_ID's stored rows that the wire contract no longer accepts (kept before it
    was tightened; the exports leave them out and count them) into the hub's quarantine table."""
    with _client(hub_url, admin_token) as client:
        done = client.quarantine(device_id)
    moved = ", ".join(f"{done.quarantined[kind]} of {done.checked[kind]} {kind} rows"
                      for kind in done.checked)
    click.echo(f"device {done.device_id}: quarantined {moved}")


@device.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per device.")
@with_admin_options
def device_list(as_json: bool, hub_url: str | None, admin_token: str | None) -> None:
    """Devices with their channel, model, last contact, spool depth and drop counters.

    What devices sent is shown escaped (`\\x1b`, `\\u202e`): one line per device, whatever it sent.
    """
    with _client(hub_url, admin_token) as client:
        records = client.devices()
    if as_json:
        for record in records:
            click.echo(printable_json(record.model_dump_json()))
        return
    header = ("DEVICE", "CHANNEL", "STATE", "MODEL", "LAST SEEN", "SPOOL (rec/frames/MB)",
              "DROPPED", "FRAMES SEEN", "UPDATE")
    rows = [header] + [_row(r) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                   .rstrip())


def _row(record: Any) -> tuple[str, ...]:
    """One device's cells, each escaped: no cell holds a line break or a terminal control."""
    return tuple(printable(cell, MAX_CELL_CHARS) for cell in _cells(record))


MAX_CELL_CHARS = 120


def _cells(record: Any) -> tuple[str, ...]:
    status = record.status
    seen = "never" if record.last_seen is None else _ago(record.last_seen)
    state = "revoked" if record.revoked else "active"
    if status is None:
        last = "-" if record.status_error is None else f"STATUS UNREADABLE: {record.status_error}"
        return (record.device_id, record.channel, state, "-", seen, "-", "-", "-", last)
    spool = (f"{count(status.spool_telemetry)}/{count(status.spool_samples)}/"
             f"{megabytes(status.spool_bytes)}")
    dropped = ",".join(f"{k}={count(v)}" for k, v in sorted(status.dropped.items()) if v) or "0"
    return (record.device_id, record.channel, state, status.model_version, seen, spool,
            dropped, count(status.frames_seen), _update(status.update))


def _update(report: Any) -> str:
    """The device's last update step: phase, and a refusal or rollback with its reason."""
    if report is None:
        return "-"
    target = f" -> {report.target_release}" if report.target_release else ""
    refused = f" REFUSED {report.refusal}: {report.detail}" if report.refusal else ""
    return f"{report.phase}{target}{refused}"


def _ago(moment: datetime) -> str:
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")
