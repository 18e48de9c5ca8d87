"""`edgeloop release bootstrap`, from the installed wheel: a team's champion becomes release 1
on a real hub, and a device provisioned with the printed line runs it and reports to the hub."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.hub import ADMIN_TOKEN, RunningHub
from tests.support.team_project import init_project
from tests.support.wheel import InstalledWheel

pytestmark = pytest.mark.slow


def test_the_champion_becomes_release_one_and_a_provisioned_device_runs_it(
        tmp_path: Path, offline_env: dict[str, str], sqlite_hub: RunningHub,
        installed: InstalledWheel) -> None:
    env = {**installed.env(offline_env), "EDGELOOP_ADMIN_TOKEN": ADMIN_TOKEN,
           "EDGELOOP_HUB_URL": sqlite_hub.url}

    def edgeloop(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([installed.edgeloop, *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=600)

    project = init_project(tmp_path, installed.edgeloop, env)
    done = edgeloop("release", "bootstrap", cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    assert "(version 1) signed and assigned to stable and canary" in done.stdout
    assert "reference profile of 2 frames" in done.stdout  # the golden share of 10 val images
    provision = next(line.strip() for line in done.stdout.splitlines()
                     if line.strip().startswith("edgeloop edge provision"))
    with sqlite_hub.admin() as hub:
        (record,) = hub.releases()
        manifest = record.manifest
        token = hub.add_device("cam-1", "stable").token
    assert manifest.version == 1 and manifest.lineage.dataset_version.startswith("data/seed@")
    assert {f.name for f in manifest.files} == {"model.onnx", "reference.parquet"}
    reference = project / "var" / "releases" / "bootstrap" / "reference.parquet"
    assert pq.read_table(reference).num_rows == 2

    again = edgeloop("release", "bootstrap", cwd=project, env=env)
    assert again.returncode == 1 and "already" in again.stderr  # a fleet is bootstrapped once

    state = project / "var" / "edge" / "cam-1"
    provisioned = edgeloop(*provision.replace("var/edge/NAME", str(state)).split()[1:],
                           cwd=project, env=env)
    assert provisioned.returncode == 0, provisioned.stderr
    run = edgeloop("edge", "run", "--state", str(state), "--hub", sqlite_hub.url,
                   "--device-id", "cam-1", "--source", str(project / "data/seed/images/val"),
                   "--max-frames", "5", "--token", token, cwd=project, env=env)
    assert run.returncode == 0, run.stderr
    assert "(gear, cog, spring)" in run.stderr
    with sqlite_hub.admin() as hub:
        (device,) = [d for d in hub.devices() if d.device_id == "cam-1"]
    assert device.telemetry_stored == 5
    assert device.status is not None and device.status.release_version == 1
