"""`edgeloop flows deploy` against a real temporary Prefect server: the process work pool and
every deployment (schedule, event trigger, parameters, working directory) read back through the
Prefect client; a second apply updates instead of duplicating; --dry-run touches nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flows.deploy import apply_plan, deployment_plan
from flows.deploy_cli import deploy
from flows.events import DATASET_EVENT, FLEET_EVENT, dataset_resource
from tests.support.paths import ROOT


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A data project the worker would run the flows in (their code: the installed package)."""
    root = tmp_path / "line-7"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, root / name)
    return root


def pool_deployments(client: Any, pool: str) -> list[Any]:
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

    return client.read_deployments(
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])))


def owned_automations(client: Any, deployment_id: Any) -> list[Any]:
    return [a for a in client.read_resource_related_automations(
        f"prefect.deployment.{deployment_id}")
        if a.actions and getattr(a.actions[0], "deployment_id", None) == deployment_id]


@pytest.mark.slow
def test_apply_registers_the_loop_on_a_process_pool(harness, project) -> None:
    from prefect.client.orchestration import get_client

    plan = deployment_plan(project, pool="line-7", hub_url="http://hub.line-7:8700")
    applied = apply_plan(plan)
    assert sorted(applied) == sorted(d.full_name for d in plan.deployments)
    with get_client(sync_client=True) as client:
        assert client.read_work_pool("line-7").type == "process"
        assert len(pool_deployments(client, "line-7")) == 6
        for spec in plan.deployments:
            found = client.read_deployment_by_name(spec.full_name)
            assert found.work_pool_name == "line-7"
            assert found.entrypoint == spec.entrypoint
            assert found.parameters == dict(spec.parameters)
            assert found.path == str(project.resolve())  # the flows run in the data project
            assert found.job_variables["working_dir"] == str(project.resolve())
            assert found.job_variables["env"]["YOLO_OFFLINE"] == "1"
            assert [s.schedule.interval.total_seconds() for s in found.schedules] == (
                [spec.interval_s] if spec.interval_s else [])
            triggers = owned_automations(client, found.id)
            if spec.trigger is None:
                assert triggers == []
                continue
            (automation,) = triggers
            assert automation.trigger.expect == {spec.trigger.event}
            assert automation.trigger.match.model_dump() == {
                "prefect.resource.id": spec.trigger.resource}
    by_name = {d.name: d for d in plan.deployments}
    assert by_name["retrain"].trigger.event == DATASET_EVENT
    assert by_name["retrain"].trigger.resource == dataset_resource(project)
    assert by_name["request-labels"].trigger.event == FLEET_EVENT


@pytest.mark.slow
def test_deploying_again_updates_instead_of_duplicating(harness, project) -> None:
    from prefect.client.orchestration import get_client

    apply_plan(deployment_plan(project, pool="line-8"))
    result = CliRunner().invoke(deploy, ["--pool", "line-8", "--project", str(project),
                                         "--drift-every", "2h", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dry_run"] is False
    with get_client(sync_client=True) as client:
        assert len(pool_deployments(client, "line-8")) == 6
        assert len(client.read_deployments()) == 6  # the server's, across every pool
        drift = client.read_deployment_by_name("drift-check/drift-check")
        assert [s.schedule.interval.total_seconds() for s in drift.schedules] == [7200]
        retrain = client.read_deployment_by_name("retrain-and-release/retrain")
        assert retrain.schedules == []
        assert len(owned_automations(client, retrain.id)) == 1


@pytest.mark.slow
def test_retrain_pool_puts_retrain_alone_on_its_own_pool(harness, project) -> None:
    from prefect.client.orchestration import get_client

    result = CliRunner().invoke(deploy, ["--pool", "line-10", "--retrain-pool", "gpu-10",
                                         "--project", str(project), "--json"])
    assert result.exit_code == 0, result.output
    with get_client(sync_client=True) as client:
        assert client.read_work_pool("gpu-10").type == "process"
        assert [d.name for d in pool_deployments(client, "gpu-10")] == ["retrain"]
        assert len(pool_deployments(client, "line-10")) == 5
    # Deploying again without the flag moves retrain back: one deployment, on the default pool.
    assert CliRunner().invoke(deploy, ["--pool", "line-10", "--project", str(project),
                                       "--json"]).exit_code == 0
    with get_client(sync_client=True) as client:
        assert pool_deployments(client, "gpu-10") == []
        assert len(pool_deployments(client, "line-10")) == 6


@pytest.mark.slow
def test_dry_run_prints_the_plan_and_registers_nothing(harness, project) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    result = CliRunner().invoke(deploy, ["--pool", "line-9", "--project", str(project),
                                         "--dry-run"])
    assert result.exit_code == 0, result.output
    for name in ("drift-check", "request-labels", "collect-labels", "retrain",
                 "release-canary", "release-refresh", FLEET_EVENT, DATASET_EVENT):
        assert name in result.output
    with get_client(sync_client=True) as client:
        with pytest.raises(ObjectNotFound):
            client.read_work_pool("line-9")
        assert pool_deployments(client, "line-9") == []


def test_unreachable_prefect_api_is_a_one_line_error(project) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        result = CliRunner().invoke(deploy, ["--project", str(project)])
    assert result.exit_code == 1
    assert "not reachable" in result.output and "prefect server start" in result.output


def test_dry_run_shows_retrain_on_its_own_pool(project) -> None:
    result = CliRunner().invoke(deploy, ["--retrain-pool", "gpu", "--project", str(project),
                                         "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["dry_run"] is True and plan["pools"] == ["edgeloop", "gpu"]
    assert {d["name"]: d["pool"] for d in plan["deployments"]} == {
        "drift-check/drift-check": "edgeloop", "request-labels/request-labels": "edgeloop",
        "collect-labels/collect-labels": "edgeloop", "retrain-and-release/retrain": "gpu",
        "release-canary/release-canary": "edgeloop", "release-refresh/release-refresh": "edgeloop"}
