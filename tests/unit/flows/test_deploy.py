"""The deployment plan: which flow runs when, on which event, with which parameters (no Prefect)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from flows.deploy import (
    DeployPlanError,
    Intervals,
    deployment_plan,
    parse_interval,
)
from flows.events import DATASET_EVENT, FLEET_EVENT, dataset_resource


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A data project: what the flows run in (their code comes from the installed package)."""
    root = tmp_path / "line-7"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        (root / name).write_text("{}\n")
    return root


def test_default_plan_schedules_the_loop_and_retrains_only_on_a_new_dataset(project) -> None:
    plan = deployment_plan(project)
    by_name = {d.name: d for d in plan.deployments}
    assert plan.pool == "edgeloop"
    assert {n: d.interval_s for n, d in by_name.items()} == {
        "drift-check": 3600, "request-labels": 86400, "collect-labels": 900, "retrain": None,
        "release-canary": 600, "release-refresh": 43200}
    retrain = by_name["retrain"]
    assert retrain.trigger is not None and retrain.trigger.event == DATASET_EVENT
    assert retrain.trigger.resource == dataset_resource(project) == "edgeloop.dataset.line-7"
    assert retrain.parameters == {"repo": str(project.resolve())}
    assert retrain.entrypoint == "flows.chain.retrain_and_release"  # releases what passes
    assert "event.payload.git_commit" in retrain.trigger.parameters["dataset"]
    request = by_name["request-labels"]
    assert request.trigger is not None and request.trigger.event == FLEET_EVENT
    assert [d.name for d in plan.deployments if d.trigger] == ["request-labels", "retrain"]
    for spec in plan.deployments:  # each entry point is a flow of the installed package
        module, _, name = spec.entrypoint.rpartition(".")
        assert getattr(importlib.import_module(module), name).name == spec.flow_name


def test_every_deployment_is_on_the_one_pool_unless_retrain_has_its_own(project) -> None:
    plan = deployment_plan(project, pool="line-7")
    assert {d.pool for d in plan.deployments} == {"line-7"} and plan.pools == ("line-7",)


def test_a_retrain_pool_takes_retrain_alone_the_rest_stay_on_the_default(project) -> None:
    plan = deployment_plan(project, pool="line-7", retrain_pool="gpu")
    pools = {d.name: d.pool for d in plan.deployments}
    assert pools.pop("retrain") == "gpu"
    assert set(pools.values()) == {"line-7"}
    assert plan.pools == ("line-7", "gpu")
    described = {d["name"]: d["pool"] for d in plan.to_dict()["deployments"]}
    assert described["retrain-and-release/retrain"] == "gpu"
    assert plan.to_dict()["pools"] == ["line-7", "gpu"]


def test_an_empty_retrain_pool_name_is_refused(project) -> None:
    with pytest.raises(DeployPlanError, match="retrain work pool name is empty"):
        deployment_plan(project, retrain_pool=" ")


def test_hub_url_reaches_every_flow_that_talks_to_the_hub(project) -> None:
    plan = deployment_plan(project, hub_url="http://hub.line-7:8700")
    params = {d.name: d.parameters for d in plan.deployments}
    assert params["drift-check"] == {"hub_url": "http://hub.line-7:8700"}
    assert params["request-labels"] == {"overrides": {"hub_url": "http://hub.line-7:8700"}}
    assert params["release-canary"]["hub_url"] == "http://hub.line-7:8700"
    assert params["release-refresh"]["hub_url"] == "http://hub.line-7:8700"


def test_flow_runs_get_the_offline_switches_but_keep_the_workers_prefect_home(project) -> None:
    env = deployment_plan(project).env
    assert env["YOLO_OFFLINE"] == "1"
    assert env["MPLCONFIGDIR"] == str(project.resolve() / "var" / "matplotlib")
    assert "PREFECT_HOME" not in env


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("1d", 86400), (" 2h ", 7200)])
def test_interval_accepts_seconds_and_units(text, seconds) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["0", "0m", "1.5h", "1w", "-5", "", "hourly"])
def test_interval_refuses_anything_else(text) -> None:
    with pytest.raises(DeployPlanError):
        parse_interval(text)


def test_refresh_interval_at_or_beyond_the_timestamp_expiry_is_refused(project) -> None:
    with pytest.raises(DeployPlanError, match="TUF timestamp's expiry"):
        deployment_plan(project, intervals=Intervals(release_refresh=365 * 86400))


def test_zero_interval_is_refused(project) -> None:
    with pytest.raises(DeployPlanError, match="collect-labels interval"):
        deployment_plan(project, intervals=Intervals(collect_labels=0))


def test_a_folder_that_is_not_a_data_project_is_refused(tmp_path) -> None:
    with pytest.raises(DeployPlanError, match="not a data project"):
        deployment_plan(tmp_path)
