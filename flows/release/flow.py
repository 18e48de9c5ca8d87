"""The release Prefect flows: `release` signs and publishes a gate-passing candidate to the canary
channel (and with `watch`, waits for the canary's verdict); `release-canary` judges the canary's
telemetry and promotes or rolls back; `release-decision` applies a human's promote / rollback;
`release-refresh` re-signs the TUF timestamp (serve it on a schedule with
`serve_release_refresh(interval_s)`). Each decision leaves a markdown artifact with its reasons.
A rollback publishes the replaced release's files again as a new version (devices never go down).

Thin: the work is in `flows.release.candidate`, `.publish` and `.run` (fetching the canary's
telemetry, applying its verdict), `.rollback`, `.report`, `flows.release.canary` (the verdict) and
`flows.release.tuf` (signing). Import this module after
`flows.offline.use_offline_environment` (Prefect reads its settings on import).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from edge_runtime.contract import MODEL_FILE, Lineage, ReleaseManifest
from flows.checks import Check
from flows.release.canary import CanaryVerdict, Verdict
from flows.release.candidate import (
    ReleaseError,
    candidate_files,
    dataset_increments,
    dataset_version,
    git_head,
    input_signature,
    params_hash,
    read_gate,
)
from flows.release.publish import build_manifest, next_version, publish, refresh_signatures
from flows.release.report import verdict_markdown
from flows.release.run import apply_verdict, judge_canary
from flows.release.settings import ReleaseConfig, load_release_config
from flows.release.tuf import ReleaseRepository
from hub.client import HubClient
from hub.settings import load_settings

ARTIFACT_KEY = "release"


@dataclass(frozen=True)
class ReleaseSettings:
    """Read once per flow run through the layered loader (`configs.loader`): the release
    config, the hub's URL and admin token (`EDGELOOP_HUB_URL`, `EDGELOOP_ADMIN_TOKEN`)."""

    hub_url: str
    admin_token: str = field(repr=False)
    config: ReleaseConfig
    project: Path  # the repository root: params.yaml, data/labelled, git
    repo_dir: Path  # the TUF repository (served through the hub)
    keys_dir: Path  # its private keys: never inside the repository, never in git

    def client(self) -> HubClient:
        return HubClient(self.hub_url, admin_token=self.admin_token)

    def repository(self) -> ReleaseRepository:
        """The TUF repository, created (root v1, new keys) on the first release."""
        if (self.repo_dir / "metadata" / "root.json").is_file():
            return self.signed_repository()
        return ReleaseRepository.create(self.repo_dir, self.keys_dir,
                                        expiry=self.config.tuf_expiry)

    def signed_repository(self) -> ReleaseRepository:
        """The existing TUF repository; refused when there is none (nothing was signed yet)."""
        return ReleaseRepository.open(self.repo_dir, self.keys_dir, expiry=self.config.tuf_expiry)


def load_release_settings(environ: Mapping[str, str], *, project: str = ".",
                          hub_url: str | None = None, config_path: str | None = None,
                          repo_dir: str | None = None,
                          keys_dir: str | None = None) -> ReleaseSettings:
    root = Path(project).resolve()
    hub = load_settings(environ, project=root, hub_url=hub_url)  # hub URL, admin token
    return ReleaseSettings(
        hub_url=hub.hub_url,
        admin_token=hub.require_admin_token(),
        config=load_release_config(Path(config_path) if config_path else None, project=root),
        project=root,
        repo_dir=Path(repo_dir) if repo_dir else root / "var" / "releases" / "tuf",
        keys_dir=Path(keys_dir) if keys_dir else root / "var" / "releases" / "keys")


@dataclass(frozen=True)
class ReleaseOutcome:
    manifest: ReleaseManifest
    verdict: Verdict | None  # None: published, not judged yet
    action: str
    reasons: list[str] = field(default_factory=list)
    human: bool = False  # a person decided (--promote / --rollback), not the canary verdict
    checks: list[Check] = field(default_factory=list)  # the canary's, with their values


# -- tasks ---------------------------------------------------------------------------------------


@task(cache_policy=NO_CACHE)
def publish_candidate(settings: ReleaseSettings, candidate: Path, gate_path: Path, channel: str,
                      git_commit: str | None) -> ReleaseManifest:
    gate = read_gate(gate_path)
    files = candidate_files(candidate, gate)  # refuses a candidate the gate did not pass
    project = settings.project
    increments = dataset_increments(project)
    fresh = not (settings.repo_dir / "metadata" / "root.json").is_file()
    repo = settings.repository()
    if fresh:
        get_run_logger().warning(
            "created the TUF repository %s (keys in %s): install %s on every device as its "
            "trusted root", repo.repo_dir, repo.keys_dir, repo.metadata_dir / "1.root.json")
    with settings.client() as client:
        version, parent = next_version(client, repo, settings.config.stable_channel)
        lineage = Lineage(
            git_commit=git_head(project) if git_commit is None else git_commit,
            dataset_version=dataset_version(increments),
            labelstudio_batches=[p.rsplit("/", 1)[-1][:100] for p in increments],
            params_hash=params_hash(project / "params.yaml"), parent_release=parent)
        manifest = build_manifest(
            files, version=version, signature=input_signature(files[MODEL_FILE]),
            metrics=gate.metrics, lineage=lineage,
            expires_in=timedelta(days=settings.config.manifest_expiry_days))
        publish(client, repo, manifest, files, [channel])
    get_run_logger().info("release %s (version %d, %s model) signed and assigned to %s",
                          manifest.release_id, version, gate.artefact, channel)
    return manifest


@task(cache_policy=NO_CACHE)
def judge(settings: ReleaseSettings, manifest: ReleaseManifest) -> CanaryVerdict:
    with settings.client() as client:
        verdict = judge_canary(client, manifest, settings.config)
    get_run_logger().info("canary of %s: %s (%d frames, %d devices)%s", manifest.release_id,
                          verdict.verdict.value, verdict.frames, verdict.devices,
                          "".join(f"; {r}" for r in verdict.reasons))
    return verdict


@task(cache_policy=NO_CACHE)
def apply(settings: ReleaseSettings, manifest: ReleaseManifest, verdict: Verdict) -> str:
    with settings.client() as client:
        return apply_verdict(client, settings.signed_repository, manifest, verdict,
                             settings.config)


def watch_canary(settings: ReleaseSettings, manifest: ReleaseManifest, watch: bool,
                 poll_s: float | None, timeout_s: float | None) -> CanaryVerdict:
    """The canary's verdict; with `watch`, polled until it is no longer WAIT or time runs out."""
    poll = poll_s if poll_s is not None else settings.config.watch_poll_s
    deadline = time.monotonic() + (timeout_s if timeout_s is not None
                                   else settings.config.watch_timeout_s)
    while True:
        verdict = judge(settings, manifest)
        if not watch or verdict.verdict is not Verdict.WAIT or time.monotonic() >= deadline:
            return verdict
        time.sleep(poll)


def conclude(settings: ReleaseSettings, manifest: ReleaseManifest,
             verdict: CanaryVerdict) -> ReleaseOutcome:
    action = apply(settings, manifest, verdict.verdict)
    create_markdown_artifact(verdict_markdown(manifest, verdict, action), key=ARTIFACT_KEY,
                             description=f"Canary verdict on release {manifest.release_id}")
    return ReleaseOutcome(manifest, verdict.verdict, action, verdict.reasons,
                          checks=list(verdict.checks))


# -- flows ---------------------------------------------------------------------------------------


@flow(name="release")
def release(candidate: str = "models/candidate", gate: str = "metrics/gate.json",
            channel: str | None = None, watch: bool = False, project: str = ".",
            hub_url: str | None = None, config_path: str | None = None,
            repo_dir: str | None = None, keys_dir: str | None = None,
            git_commit: str | None = None, poll_s: float | None = None,
            timeout_s: float | None = None) -> ReleaseOutcome:
    """Sign and publish a gate-passing candidate to the canary channel; with `watch`, wait for
    enough canary frames, then promote it to stable or roll the canary back."""
    settings = load_release_settings(os.environ, project=project, hub_url=hub_url,
                                     config_path=config_path, repo_dir=repo_dir,
                                     keys_dir=keys_dir)
    root = settings.project
    target = channel or settings.config.canary_channel
    manifest = publish_candidate(settings, root / candidate, root / gate, target, git_commit)
    if not watch:
        create_markdown_artifact(
            f"# Release {manifest.release_id} (version {manifest.version}) published\n\n"
            f"Signed and assigned to `{target}`; the canary verdict follows "
            f"(`edgeloop flows release --decide`).\n", key=ARTIFACT_KEY,
            description=f"Release {manifest.release_id} published")
        return ReleaseOutcome(manifest, None, f"assigned to {target}")
    return conclude(settings, manifest, watch_canary(settings, manifest, True, poll_s,
                                                     timeout_s))


@flow(name="release-canary")
def canary_decision(watch: bool = False, project: str = ".", hub_url: str | None = None,
                    config_path: str | None = None, repo_dir: str | None = None,
                    keys_dir: str | None = None, poll_s: float | None = None,
                    timeout_s: float | None = None) -> ReleaseOutcome:
    """Judge the release the canary channel runs from its telemetry: promote, roll back, wait."""
    settings = load_release_settings(os.environ, project=project, hub_url=hub_url,
                                     config_path=config_path, repo_dir=repo_dir,
                                     keys_dir=keys_dir)
    with settings.client() as client:
        manifest = client.channel(settings.config.canary_channel).release
    if manifest is None:
        raise ReleaseError(f"channel {settings.config.canary_channel} runs no release")
    return conclude(settings, manifest, watch_canary(settings, manifest, watch, poll_s,
                                                     timeout_s))


@flow(name="release-decision")
def human_decision(release_id: str, action: str, who: str = "a human", project: str = ".",
                   hub_url: str | None = None, config_path: str | None = None,
                   repo_dir: str | None = None, keys_dir: str | None = None) -> ReleaseOutcome:
    """A person's decision: `promote` the canary's release to stable, or roll back every
    channel that runs `release_id` now (to the files of the release it replaced, as a new
    version)."""
    if action not in ("promote", "rollback"):
        raise ReleaseError(f"action {action!r} is not promote or rollback")
    settings = load_release_settings(os.environ, project=project, hub_url=hub_url,
                                     config_path=config_path, repo_dir=repo_dir,
                                     keys_dir=keys_dir)
    config = settings.config
    verdict = Verdict.PROMOTE if action == "promote" else Verdict.ROLLBACK
    with settings.client() as client:
        manifest = client.release(release_id)
        canary = client.channel(config.canary_channel).release
        if verdict is Verdict.PROMOTE and (canary is None or canary.release_id != release_id):
            raise ReleaseError(f"channel {config.canary_channel} does not run {release_id}: "
                               "only the canary's release is promoted")
        done = apply_verdict(client, settings.signed_repository, manifest, verdict, config)
    create_markdown_artifact(
        f"# Release {release_id} (version {manifest.version}): **{verdict.value.upper()}**\n\n"
        f"Decided by {who}. Action: {done}.\n", key=ARTIFACT_KEY,
        description=f"{action} of release {release_id} by {who}")
    get_run_logger().info("%s of %s by %s: %s", action, release_id, who, done)
    return ReleaseOutcome(manifest, verdict, done, [f"decided by {who}"], human=True)


@flow(name="release-refresh")
def refresh(project: str = ".", hub_url: str | None = None, config_path: str | None = None,
            repo_dir: str | None = None, keys_dir: str | None = None) -> list[str]:
    """Re-sign the TUF timestamp (and any role expiring within the timestamp's lifetime) and
    publish it to the hub: devices refuse an expired timestamp, so this runs on a schedule."""
    settings = load_release_settings(os.environ, project=project, hub_url=hub_url,
                                     config_path=config_path, repo_dir=repo_dir,
                                     keys_dir=keys_dir)
    with settings.client() as client:
        roles = refresh_signatures(client, settings.signed_repository(),
                                   settings.config.tuf_expiry.timestamp)
    get_run_logger().info("re-signed and published: %s", ", ".join(roles))
    return roles


def release_refresh_deployment(interval_s: int, **parameters: Any) -> Any:
    """`release-refresh` as a deployment run every `interval_s` seconds, for `prefect.serve(...)`
    beside other flows (or `refresh.from_source(...).deploy(work_pool_name=..., interval=...)`).
    Refuses an interval the timestamp would expire within."""
    check_refresh_interval(interval_s, parameters.get("config_path"))
    return refresh.to_deployment(name="release-refresh", interval=interval_s,
                                 parameters=parameters)


def serve_release_refresh(interval_s: int, **parameters: Any) -> None:
    """Serve `release-refresh` on its schedule in this process (blocks until stopped)."""
    check_refresh_interval(interval_s, parameters.get("config_path"))
    refresh.serve(name="release-refresh", interval=interval_s, parameters=parameters)


def check_refresh_interval(interval_s: int, config_path: str | None = None) -> None:
    timestamp = load_release_config(Path(config_path) if config_path else None,
                                    project=Path.cwd()).tuf_expiry.timestamp
    if interval_s < 1 or interval_s >= timestamp.total_seconds():
        raise ReleaseError(f"refresh interval {interval_s} s must be at least 1 and below the "
                           f"timestamp's expiry ({timestamp.total_seconds():g} s)")
