"""`edgeloop flows release`: sign and publish a gate-passing candidate to the canary channel, judge
the canary, or apply a person's promote / rollback; re-sign expiring TUF metadata (once, or on a
schedule with `--refresh --every SECONDS`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from flows.offline import use_offline_environment

DIR = click.Path(file_okay=False)


@click.command("release")
@click.option("--candidate", default="models/candidate", show_default=True, type=DIR,
              help="The retrain pipeline's candidate folder (model.onnx, model.int8.onnx, "
                   "reference.parquet).")
@click.option("--gate", default="metrics/gate.json", show_default=True,
              type=click.Path(dir_okay=False), help="The gate's verdict on the candidate.")
@click.option("--channel", default=None, help="Publish to this channel (default: the canary "
                                              "channel of configs/release.yaml).")
@click.option("--watch", is_flag=True,
              help="Wait for the canary's frames, then promote to stable or roll back.")
@click.option("--decide", is_flag=True,
              help="Do not publish: judge the canary channel's release from its telemetry now "
                   "(with --watch: once enough frames arrived).")
@click.option("--promote", "promote_id", metavar="RELEASE", default=None,
              help="A person's decision: promote RELEASE (the canary's) to stable.")
@click.option("--rollback", "rollback_id", metavar="RELEASE", default=None,
              help="A person's decision: roll back every channel that runs RELEASE, by "
                   "publishing the release it replaced again as a new version.")
@click.option("--refresh", is_flag=True,
              help="Re-sign the TUF timestamp (and any role near expiry) and publish it; run "
                   "it on a schedule shorter than the timestamp's expiry (see --every).")
@click.option("--every", "every_s", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="With --refresh: serve the `release-refresh` flow every SECONDS in this "
                   "process (blocks; must be below the timestamp's expiry).")
@click.option("--project", default=".", show_default=True, type=DIR,
              help="Repository root (params.yaml, data/labelled, git).")
@click.option("--hub-url", default=None, help="Hub URL (default: $EDGELOOP_HUB_URL, else "
                                              "http://127.0.0.1:8700); admin token from "
                                              "$EDGELOOP_ADMIN_TOKEN.")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="Release settings over the packaged defaults, the project's "
                   "configs/release.yaml and edgeloop.yaml (release:).")
@click.option("--tuf-repo", default=None, type=DIR,
              help="The TUF repository (default PROJECT/var/releases/tuf).")
@click.option("--keys", default=None, type=DIR,
              help="Its private keys, outside the repository and git (default "
                   "PROJECT/var/releases/keys).")
@click.option("--var", default="var", show_default=True, type=DIR,
              help="Runtime state folder (Prefect home).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def release(candidate: str, gate: str, channel: str | None, watch: bool, decide: bool,
            promote_id: str | None, rollback_id: str | None, refresh: bool,
            every_s: int | None, project: str,
            hub_url: str | None, config_path: str | None, tuf_repo: str | None,
            keys: str | None, var: str, as_json: bool) -> None:
    """Sign a gate-passing candidate (TUF), publish it to the hub on the canary channel and,
    with --watch, promote or roll it back from the canary's telemetry. Exits 1 when the canary
    (or the gate) refuses the release, saying why."""
    modes = [name for name, on in (("--decide", decide), ("--promote", promote_id),
                                   ("--rollback", rollback_id), ("--refresh", refresh)) if on]
    if len(modes) > 1:
        raise click.UsageError(f"{' and '.join(modes)} do not go together")
    if every_s is not None and not refresh:
        raise click.UsageError("--every goes with --refresh")
    common: dict[str, Any] = {"project": project, "hub_url": hub_url,
                              "config_path": config_path, "repo_dir": tuf_repo,
                              "keys_dir": keys}
    use_offline_environment(Path(var))  # before Prefect is first imported: it reads them then
    from flows.release.flow import load_release_settings

    # Settings and the config file fail as one line here, before Prefect starts.
    settings = load_release_settings(os.environ, **common)
    if refresh and every_s is not None:
        from flows.release.flow import check_refresh_interval, serve_release_refresh

        check_refresh_interval(every_s, config_path)  # one line, before serving
        serve_release_refresh(every_s, **common)
        return
    if refresh:
        _refresh(settings, as_json)
        return
    if not (decide or promote_id or rollback_id):
        from flows.release.candidate import candidate_files, read_gate

        # A refused or incomplete candidate is one line, before Prefect starts.
        candidate_files(Path(project) / candidate, read_gate(Path(project) / gate))
    from flows.release.flow import canary_decision, human_decision
    from flows.release.flow import release as release_flow

    if promote_id or rollback_id:
        action, release_id = ("promote", promote_id) if promote_id else ("rollback", rollback_id)
        who = f"{os.environ.get('USER') or 'a person'} (edgeloop flows release --{action})"
        outcome = human_decision(str(release_id), action, who=who, **common)
    elif decide:
        outcome = canary_decision(watch=watch, **common)
    else:
        outcome = release_flow(candidate=candidate, gate=gate, channel=channel, watch=watch,
                               **common)
    _report(outcome, as_json)


def _refresh(settings: Any, as_json: bool) -> None:
    from flows.release.publish import refresh_signatures
    from flows.release.tuf import ReleaseRepository

    repo = ReleaseRepository.open(settings.repo_dir, settings.keys_dir,
                                  expiry=settings.config.tuf_expiry)
    with settings.client() as client:
        roles = refresh_signatures(client, repo, settings.config.tuf_expiry.timestamp)
    if as_json:
        click.echo(json.dumps({"resigned": roles}))
    else:
        click.echo(f"re-signed and published: {', '.join(roles)}")


def _report(outcome: Any, as_json: bool) -> None:
    from flows.release.canary import Verdict

    manifest = outcome.manifest
    if as_json:
        click.echo(json.dumps({"release": manifest.model_dump(mode="json"),
                               "verdict": outcome.verdict and outcome.verdict.value,
                               "action": outcome.action, "reasons": outcome.reasons},
                              default=str))
    else:
        click.echo(f"release {manifest.release_id} (version {manifest.version}): "
                   f"{outcome.verdict.value if outcome.verdict else 'published'}; "
                   f"{outcome.action}")
        for reason in outcome.reasons:
            click.echo(f"  {reason}", err=True)
    if outcome.verdict is Verdict.ROLLBACK and not outcome.human:
        raise click.ClickException(f"the canary refused release {manifest.release_id}: "
                                   + "; ".join(outcome.reasons))

