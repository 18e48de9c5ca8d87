"""The Prefect deployments that run the loop unattended on a work pool: `deployment_plan` (pure:
which flow runs when, with which parameters) and `apply_plan`, which registers a plan with the
Prefect API (idempotent: applying again updates the deployments, it never duplicates them).

Scheduled: drift check, label collection, canary decision, TUF timestamp refresh. Triggered by
the loop's own events: a fleet-wide drift asks for labels, a new dataset version retrains.
Prefect is imported only by `apply_plan` (after `flows.offline.use_offline_environment`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flows.events import DATASET_EVENT, FLEET_EVENT, FLEET_RESOURCE, dataset_resource
from flows.offline import offline_environment

DEFAULT_POOL = "edgeloop"
POOL_TYPE = "process"  # runs the flows from the project folder, on the worker's machine
TAGS = ("edgeloop",)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class DeployPlanError(ValueError):
    """The plan cannot be made: a bad interval, or a project without the flows."""


class DeployError(RuntimeError):
    """The plan could not be applied (no Prefect API, a work pool of the wrong type)."""


def parse_interval(text: str) -> int:
    """Seconds from `90`, `90s`, `15m`, `1h` or `1d`; refuses zero and anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if match is None:
        raise DeployPlanError(f"interval {text!r} is not a whole number of s, m, h or d "
                              "(e.g. 15m, 1h, 1d)")
    seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < 1:
        raise DeployPlanError(f"interval {text!r} must be at least 1 s")
    return seconds


def describe_interval(seconds: int) -> str:
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Intervals:
    """Seconds between scheduled runs of each deployment."""

    drift_check: int = 3600
    request_labels: int = 86400  # besides the fleet-event trigger
    collect_labels: int = 900
    canary_decision: int = 600
    release_refresh: int = 43200  # must stay below the TUF timestamp's expiry


@dataclass(frozen=True)
class OnEvent:
    """Run the deployment when `event` arrives from a resource matching `resource` (a glob);
    `parameters` may hold `{{ event.payload.* }}` templates, filled in by Prefect."""

    event: str
    resource: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    flow_name: str
    entrypoint: str  # the installed package's flow, as a module path: flows.drift.flow.drift_check
    interval_s: int | None  # None: runs only on its trigger
    trigger: OnEvent | None
    parameters: Mapping[str, Any]
    description: str
    tags: tuple[str, ...] = TAGS
    pool: str = DEFAULT_POOL  # the work pool whose workers run it

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"

    def when(self) -> str:
        parts = [f"every {describe_interval(self.interval_s)}"] if self.interval_s else []
        parts += [f"on {self.trigger.event}"] if self.trigger else []
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        trigger = None if self.trigger is None else {
            "event": self.trigger.event, "resource": self.trigger.resource,
            "parameters": dict(self.trigger.parameters)}
        return {"name": self.full_name, "pool": self.pool, "entrypoint": self.entrypoint,
                "interval_s": self.interval_s, "trigger": trigger,
                "parameters": dict(self.parameters), "tags": list(self.tags),
                "description": self.description}


@dataclass(frozen=True)
class DeployPlan:
    pool: str  # the default pool; a deployment may have its own (`retrain` on a GPU pool)
    project: Path  # absolute: the worker runs each flow with this as its working directory
    deployments: tuple[DeploymentSpec, ...]
    env: Mapping[str, str] = field(repr=False, default_factory=dict)  # set in each flow run

    @property
    def pools(self) -> tuple[str, ...]:
        """Every pool a deployment is on, the default first."""
        return tuple(dict.fromkeys([self.pool, *(d.pool for d in self.deployments)]))

    def to_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "pools": list(self.pools), "pool_type": POOL_TYPE,
                "project": str(self.project),
                "deployments": [d.to_dict() for d in self.deployments]}


def deployment_plan(project: Path, *, pool: str = DEFAULT_POOL,
                    intervals: Intervals | None = None,
                    hub_url: str | None = None, retrain_pool: str | None = None) -> DeployPlan:
    """The deployments of the closed loop for the data project at `project` (their flows from
    the installed package, run with the project as their working directory), all on `pool`
    but `retrain`, which goes to `retrain_pool` when given (a pool that GPU machines' workers
    serve: training takes their GPU by params.yaml's `device: auto`)."""
    intervals = intervals or Intervals()
    root = project.resolve()
    if not pool.strip():
        raise DeployPlanError("the work pool name is empty")
    if retrain_pool is not None and not retrain_pool.strip():
        raise DeployPlanError("the retrain work pool name is empty")
    _check_intervals(intervals)
    hub = {"hub_url": hub_url} if hub_url else {}
    release = {"project": str(root), **hub}
    labelling = {"overrides": hub} if hub else {}
    plan: tuple[DeploymentSpec, ...] = (
        DeploymentSpec(
            "drift-check", "drift-check", "flows.drift.flow.drift_check",
            intervals.drift_check, None, hub,
            "Every active device's telemetry against its release's reference profile; emits "
            f"{FLEET_EVENT} when most of the fleet drifted together."),
        DeploymentSpec(
            "request-labels", "request-labels", "flows.labelling.flow.request_labels",
            intervals.request_labels, OnEvent(FLEET_EVENT, FLEET_RESOURCE), labelling,
            "Send the most informative hub frames to Label Studio, on a fleet-wide drift "
            "and on a schedule."),
        DeploymentSpec(
            "collect-labels", "collect-labels", "flows.labelling.flow.collect_labels",
            intervals.collect_labels, None, {"repo": str(root), **labelling},
            f"Finished labels become a DVC dataset version; emits {DATASET_EVENT}."),
        DeploymentSpec(
            "retrain", "retrain-and-release", "flows.chain.retrain_and_release", None,
            OnEvent(DATASET_EVENT, dataset_resource(root),
                    {"dataset": "{{ event.payload.git_commit }}"}),
            {"repo": str(root)},
            "Fine-tune on the new dataset version, export, gate; a passing candidate is "
            "released to canary."),
        DeploymentSpec(
            "release-canary", "release-canary", "flows.release.flow.canary_decision",
            intervals.canary_decision, None, release,
            "Judge the canary's telemetry: promote, roll back or wait."),
        DeploymentSpec(
            "release-refresh", "release-refresh", "flows.release.flow.refresh",
            intervals.release_refresh, None, release,
            "Re-sign the TUF timestamp before devices see it expire."),
    )
    plan = tuple(replace(d, pool=retrain_pool if d.name == "retrain" and retrain_pool else pool)
                 for d in plan)
    if not (root / "dvc.yaml").is_file() or not (root / "params.yaml").is_file():
        raise DeployPlanError(f"{root} is not a data project (no dvc.yaml and params.yaml): "
                              "make one with `edgeloop init`, or pass --project")
    env = {k: v for k, v in offline_environment(root / "var").items()
           if k != "PREFECT_HOME"}  # the worker's own Prefect settings (API URL) must hold
    return DeployPlan(pool, root, plan, env)


def _check_intervals(intervals: Intervals) -> None:
    for name, seconds in vars(intervals).items():
        if seconds < 1:
            raise DeployPlanError(f"the {name.replace('_', '-')} interval must be at least 1 s, "
                                  f"got {seconds}")
    from flows.release.settings import load_release_config

    # Same rule as release_flow.check_refresh_interval, without importing Prefect.
    expiry = load_release_config(project=Path.cwd()).tuf_expiry.timestamp.total_seconds()
    if intervals.release_refresh >= expiry:
        raise DeployPlanError(
            f"the release-refresh interval ({describe_interval(intervals.release_refresh)}) "
            f"must be below the TUF timestamp's expiry ({expiry:g} s), or devices would see "
            "it expire")


# -- apply (Prefect) -----------------------------------------------------------------------------


def apply_plan(plan: DeployPlan) -> dict[str, str]:
    """Create the work pool if missing, then create or update each deployment. Returns each
    deployment's full name with its id."""
    import importlib

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.types.entrypoint import EntrypointType

    api = PREFECT_API_URL.value()
    if not api:
        # Without it Prefect would register on a throwaway temporary server.
        raise DeployError("no Prefect API: start `prefect server start` and set "
                          "PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    with get_client(sync_client=True) as client:
        if client.api_healthcheck() is not None:
            raise DeployError(f"Prefect API at {api} is not reachable: start `prefect server "
                              "start` or set PREFECT_API_URL")
        for pool in plan.pools:
            ensure_work_pool(client, pool)
    applied = {}
    for spec in plan.deployments:
        # The flow from the installed package (a module path, not a file of the project); the
        # worker runs it with the project as its working directory.
        module, _, name = spec.entrypoint.rpartition(".")
        flow: Any = getattr(importlib.import_module(module), name)
        deployment: Any = flow.to_deployment(
            entrypoint_type=EntrypointType.MODULE_PATH,
            name=spec.name, interval=spec.interval_s,
            triggers=[_trigger(spec, spec.trigger)] if spec.trigger else None,
            parameters=dict(spec.parameters), description=spec.description,
            tags=list(spec.tags), work_pool_name=spec.pool,
            job_variables={"env": dict(plan.env), "working_dir": str(plan.project)})
        deployment._path = str(plan.project)  # recorded as the deployment's working directory
        applied[spec.full_name] = str(deployment.apply(work_pool_name=spec.pool))
    return applied


def ensure_work_pool(client: Any, name: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(
            name=name, type=POOL_TYPE,
            base_job_template=ProcessWorker.get_default_base_job_template()))
        return
    if pool.type != POOL_TYPE:
        raise DeployError(f"work pool {name!r} is of type {pool.type!r}: edgeloop's flows run "
                          f"from the project folder and need a {POOL_TYPE!r} pool (--pool)")


def _trigger(spec: DeploymentSpec, on: OnEvent) -> Any:
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name=f"{spec.full_name} on {on.event}", expect={on.event},
        match={"prefect.resource.id": on.resource},
        parameters={**spec.parameters, **on.parameters})
