"""`edgeloop flows request-labels | collect-labels | labelstudio-webhook`: thin commands over the
labelling flows. Settings: packaged defaults < the project's configs/labelling.yaml
and edgeloop.yaml < --config < EDGELOOP_* environment < these flags."""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from flows.offline import use_offline_environment

CONFIG = click.option("--config", "config", default=None, type=click.Path(dir_okay=False),
                      help="Labelling settings (fleet, classes, budget, Label Studio, DVC) over "
                           "the packaged defaults, the project's configs/labelling.yaml and "
                           "edgeloop.yaml (labelling:).")
FLEET = click.option("--fleet", default=None,
                     help="Fleet (one Label Studio project each; default: the config's).")
LS_URL = click.option("--ls-url", default=None,
                      help="Label Studio URL (or EDGELOOP_LABELSTUDIO_URL).")
LS_TOKEN = click.option("--ls-token", default=None,
                        help="Label Studio legacy API token (or EDGELOOP_LABELSTUDIO_TOKEN).")
LEDGER = click.option("--ledger", default=None, type=click.Path(dir_okay=False),
                      help="SQLite ledger of sent and collected tasks "
                           "(default var/labelling/ledger.sqlite).")
REPO = click.option("--repo", default=".", show_default=True,
                    type=click.Path(file_okay=False, exists=True),
                    help="Repository root (git + DVC) the increment is committed to.")
NO_PUSH = click.option("--no-push", is_flag=True, help="Commit the increment but skip dvc push.")
VAR = click.option("--var", default="var", show_default=True, type=click.Path(file_okay=False),
                   help="Runtime state folder (Prefect home, tool settings).")
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")


def _overrides(**flags: Any) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v is not None}


def _report(result: dict[str, Any], as_json: bool, line: str) -> None:
    click.echo(json.dumps(result, default=str) if as_json else line)


def _checked(config: str | None, overrides: dict[str, Any], *, hub: bool = False,
             repo: str | None = None) -> None:
    """Settings and servers checked before a flow starts, so the common mistakes (no token, a
    server that is not there) are one line, not a failed flow run's log."""
    from flows.labelling.labelstudio_client import LabelStudioClient
    from flows.labelling.settings import load_labelling_settings

    settings = load_labelling_settings(Path(config) if config else None, os.environ,
                                       project=Path.cwd(), **overrides)
    if repo is not None:
        from flows.dvc_dataset import check_repository

        check_repository(Path(repo))
    with LabelStudioClient(settings.labelstudio.url, settings.labelstudio.require_token()) as ls:
        ls.whoami()
    if hub:
        from hub.client import HubClient

        with HubClient(settings.hub_url, admin_token=settings.require_hub_token()) as client:
            client.samples(limit=1)  # an admin call: proves the URL and the token


def _flows(var: str) -> Any:
    use_offline_environment(Path(var))
    from flows.labelling import flow as labelling_flows  # Prefect reads its settings on import

    return labelling_flows


@click.command("request-labels")
@CONFIG
@FLEET
@click.option("--budget", type=click.IntRange(min=1), default=None,
              help="Frames to send this round (default: selection.budget).")
@click.option("--since", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]),
              default=None, help="Only frames captured from then on (UTC if no zone).")
@click.option("--hub", "hub_url", default=None, help="Hub URL (or EDGELOOP_HUB_URL).")
@click.option("--admin-token", default=None, help="Hub admin token (or EDGELOOP_ADMIN_TOKEN).")
@LS_URL
@LS_TOKEN
@click.option("--files-root", default=None, type=click.Path(file_okay=False),
              help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT "
                   "(or EDGELOOP_LABELSTUDIO_FILES).")
@LEDGER
@VAR
@AS_JSON
def request_labels(config: str | None, fleet: str | None, budget: int | None,
                   since: datetime | None, hub_url: str | None, admin_token: str | None,
                   ls_url: str | None,
                   ls_token: str | None, files_root: str | None, ledger: str | None, var: str,
                   as_json: bool) -> None:
    """Send the hub's most uncertain unsent frames to Label Studio, pre-annotated with the
    model's boxes; a frame is never sent twice (ledger + the project's own task list)."""
    if since is not None and since.tzinfo is None:
        from datetime import UTC

        since = since.replace(tzinfo=UTC)
    overrides = _overrides(fleet=fleet, selection__budget=budget, hub_url=hub_url,
                           hub_admin_token=admin_token, labelstudio__url=ls_url,
                           labelstudio__token=ls_token, labelstudio__files_root=files_root,
                           ledger=ledger)
    _checked(config, overrides, hub=True)
    result = _flows(var).request_labels(config=config, since=since, overrides=overrides)
    _report(result, as_json, f"sent {len(result['sent'])} frames to Label Studio project "
                             f"{result['project_id']} (round {result['round']}; "
                             f"{result['unsent']} unsent on the hub)")


def _collect_line(result: dict[str, Any]) -> str:
    version = result["version"]
    refused = f", {len(result['rejected'])} refused" if result["rejected"] else ""
    if version is None:
        return f"no new dataset version ({result['finished']} finished tasks{refused})"
    return (f"dataset version {version['ref']}: {result['frames']} frames, "
            f"{result['boxes']} boxes, {result['negatives']} negatives{refused}"
            + ("" if version["pushed"] else " (not pushed)"))


@click.command("collect-labels")
@REPO
@CONFIG
@FLEET
@LS_URL
@LS_TOKEN
@LEDGER
@NO_PUSH
@click.option("--every", type=click.FloatRange(min=1.0), default=None, metavar="SECONDS",
              help="Keep polling: collect every SECONDS until interrupted.")
@VAR
@AS_JSON
def collect_labels(repo: str, config: str | None, fleet: str | None, ls_url: str | None,
                   ls_token: str | None, ledger: str | None, no_push: bool, every: float | None,
                   var: str, as_json: bool) -> None:
    """Turn finished Label Studio annotations into a new dataset increment under
    data/labelled/<batch>/ (YOLO labels, our class order): dvc add, git commit, dvc push.
    Prints the dataset version a retrain should name."""
    overrides = _overrides(fleet=fleet, labelstudio__url=ls_url, labelstudio__token=ls_token,
                           ledger=ledger, collection__push=False if no_push else None)
    _checked(config, overrides, repo=repo)
    flows = _flows(var)
    while True:
        result = flows.collect_labels(repo=repo, config=config, overrides=overrides)
        _report(result, as_json, _collect_line(result))
        if every is None:
            return
        time.sleep(every)


@click.command("labelstudio-webhook")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8790, show_default=True, type=click.IntRange(0, 65535))
@click.option("--public-url", default=None,
              help="URL Label Studio posts to (default http://HOST:PORT/labelstudio).")
@click.option("--secret", default=None, envvar="EDGELOOP_WEBHOOK_SECRET",
              help="Shared secret Label Studio sends in a header (or EDGELOOP_WEBHOOK_SECRET; "
                   "default: a fresh random one).")
@click.option("--quiet-s", type=click.FloatRange(min=0.0), default=None,
              help="Collect once no annotation has arrived for this long "
                   "(default collection.quiet_s).")
@REPO
@CONFIG
@FLEET
@LS_URL
@LS_TOKEN
@LEDGER
@NO_PUSH
@VAR
def labelstudio_webhook(host: str, port: int, public_url: str | None, secret: str | None,
                        quiet_s: float | None, repo: str, config: str | None, fleet: str | None,
                        ls_url: str | None,
                        ls_token: str | None, ledger: str | None, no_push: bool,
                        var: str) -> None:
    """Serve an endpoint for Label Studio's ANNOTATION_CREATED webhook (registered on the
    fleet's project) that collects labels once annotators pause. Runs until interrupted."""
    from flows.labelling.labelstudio_client import LabelStudioClient
    from flows.labelling.labelstudio_webhook import (
        ACTIONS,
        SECRET_HEADER,
        DebouncedCollector,
        WebhookEndpoint,
    )
    from flows.labelling.settings import label_config_xml, load_labelling_settings

    overrides = _overrides(fleet=fleet, labelstudio__url=ls_url, labelstudio__token=ls_token,
                           ledger=ledger, collection__push=False if no_push else None,
                           collection__quiet_s=quiet_s)
    settings = load_labelling_settings(Path(config) if config else None, os.environ,
                                       project=Path.cwd(), **overrides)
    _checked(config, overrides, repo=repo)
    secret = secret or secrets.token_urlsafe(24)
    flows = _flows(var)

    def collect() -> None:
        click.echo(_collect_line(flows.collect_labels(repo=repo, config=config,
                                                      overrides=overrides)))

    with LabelStudioClient(settings.labelstudio.url, settings.labelstudio.require_token()) as ls:
        project = ls.ensure_project(settings.project_title, settings.project_description,
                                    label_config_xml(settings.classes))
        endpoint = WebhookEndpoint(host, port, secret, project.id,
                                   DebouncedCollector(collect, settings.collection.quiet_s))
        url = public_url or f"http://{host}:{endpoint.port}/labelstudio"
        ls.ensure_webhook(project.id, url, ACTIONS, {SECRET_HEADER: secret})
    _serve_until_signal(endpoint.start, endpoint.stop)
    click.echo(f"webhook for project {project.id} at {url} stopped")


def _serve_until_signal(start: Callable[[], None], stop: Callable[[], None]) -> None:
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    start()
    click.echo("listening for Label Studio webhooks; Ctrl-C to stop", err=True)
    done.wait()
    stop()
