"""A team's own fleet, from the installed wheel, in a folder outside the checkout, with the
team's model (3 classes that are not the simulator's, 640 px) and dataset: `edgeloop init`, then
the champion into the field (`edgeloop release bootstrap`, `edge provision`, `edge run` against a
real hub), a fleet drift check, a labelling round through a real Label Studio (`request-labels`,
`collect-labels`, then the webhook), and a tiny retrain that ships to the canary device. Every
command runs in the project folder with no --config: the project's edgeloop.yaml and the packaged
defaults decide; only servers and tokens come from the environment, as a team sets them."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from flows.labelling.labelstudio_client import LabelStudioClient
from tests.support.hub import ADMIN_TOKEN, RunningHub
from tests.support.labelstudio import RunningLabelStudio
from tests.support.team_project import init_project, their_camera
from tests.support.wheel import InstalledWheel

pytestmark = pytest.mark.slow
FLEET = "line-7"


@pytest.fixture
def prefect_api() -> Iterator[str]:
    """A Prefect server the flows' commands run on (as a team's PREFECT_API_URL)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=None):
        yield str(PREFECT_API_URL.value())


def box(label: str) -> dict[str, object]:
    return {"from_name": "label", "to_name": "image", "type": "rectanglelabels",
            "value": {"x": 40.0, "y": 30.0, "width": 15.0, "height": 12.0, "rotation": 0,
                      "rectanglelabels": [label]}}


def test_a_team_runs_its_own_fleet_from_the_installed_package(
        tmp_path: Path, offline_env: dict[str, str], sqlite_hub: RunningHub,
        labelstudio_server: RunningLabelStudio, prefect_api: str,
        installed: InstalledWheel) -> None:
    env = {**installed.env(offline_env), "EDGELOOP_ADMIN_TOKEN": ADMIN_TOKEN,
           "EDGELOOP_HUB_URL": sqlite_hub.url, "PREFECT_API_URL": prefect_api,
           "EDGELOOP_LABELSTUDIO_URL": labelstudio_server.url,
           "EDGELOOP_LABELSTUDIO_TOKEN": labelstudio_server.token,
           "EDGELOOP_LABELSTUDIO_FILES": str(labelstudio_server.files_root)}

    def edgeloop(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([installed.edgeloop, *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=900)
        if ok:
            assert done.returncode == 0, f"edgeloop {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done

    # -- the project: the team's model and dataset (with a test split: the golden slice) -------
    project = init_project(tmp_path, installed.edgeloop, env, FLEET, test=200)
    remote = tmp_path / "dvc-remote"
    subprocess.run(["dvc", "remote", "add", "-d", "store", str(remote)], cwd=project, env=env,
                   check=True, capture_output=True)
    settings = yaml.safe_load((project / "edgeloop.yaml").read_text())
    # A tiny retrain on 2 cores, and this team's gate: the test checks the path, not the gain
    # (an untrained model's candidate gains nothing; the shipped gate refuses it, see
    # test_project_init).
    settings["gate"] = {"min_drift_gain_points": 0.0, "max_golden_loss_points": 100.0,
                        "max_latency_ratio": 10.0, "latency_budget_ms": 5000.0}
    (project / "edgeloop.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune"].update(epochs=1, batch=4, imgsz=320)  # exported at the model's 640
    params["prepare"]["group_frames"] = 10  # the test's camera: a few frames a second
    params["release_export"].update(calibration_frames=4, parity_frames=2)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit",
                    "-qam", "our settings"], cwd=project, check=True)

    # -- release 1: the champion, its reference replayed on the golden (test) split ------------
    done = edgeloop("release", "bootstrap")
    assert "(version 1) signed and assigned to stable and canary" in done.stdout
    assert "reference profile of 200 frames" in done.stdout
    provision = next(line.strip() for line in done.stdout.splitlines()
                     if line.strip().startswith("edgeloop edge provision"))
    with sqlite_hub.admin() as hub:
        (record,) = hub.releases()
        token = hub.add_device("cam-1", "canary").token
    manifest = record.manifest
    assert manifest.version == 1 and manifest.lineage.dataset_version.startswith("data/seed@")
    assert {f.name for f in manifest.files} == {"model.onnx", "reference.parquet"}
    reference = project / "var" / "releases" / "bootstrap" / "reference.parquet"
    assert pq.read_table(reference).num_rows == 200
    again = edgeloop("release", "bootstrap", ok=False)
    assert again.returncode == 1 and "already" in again.stderr  # a fleet is bootstrapped once

    state = project / "var" / "edge" / "cam-1"
    edgeloop(*provision.replace("var/edge/NAME", str(state)).replace("NAME", "cam-1").split()[1:])

    # -- the camera: the line's lights dimmed ---------------------------------------------------
    camera = their_camera(tmp_path / "camera", 80, background=35)
    run = edgeloop("edge", "run", "--state", str(state), "--hub", sqlite_hub.url,
                   "--source", str(camera), "--token", token)
    assert "edge agent cam-1: " in run.stderr  # the name it was provisioned with
    assert "(gear, cog, spring)" in run.stderr
    with sqlite_hub.admin() as hub:
        (device,) = hub.devices()
        samples = hub.samples(limit=100)
    assert device.telemetry_stored == 80
    assert device.status is not None and device.status.release_version == 1
    assert len(samples) >= 3, samples  # kept frames to label

    # -- drift: the fleet check, against release 1's reference ---------------------------------
    sweep = json.loads(edgeloop("flows", "drift", "--json").stdout)
    (checked,) = sweep["devices"]
    assert checked["device_id"] == "cam-1" and checked["verdict"]["drift"] is True, checked
    assert "image_quality" in checked["verdict"]["groups"]

    # -- labelling: a round by hand, then one the webhook collects ------------------------------
    sent = json.loads(edgeloop("flows", "request-labels", "--budget", "2", "--json").stdout)
    assert len(sent["sent"]) == 2
    with LabelStudioClient(labelstudio_server.url, labelstudio_server.token) as ls:
        (ls_project,) = ls.find_projects(f"edgeloop {FLEET}")
        for name in ("gear", "cog", "spring"):
            assert f'value="{name}"' in ls_project.label_config  # the model's classes
        for task in ls.tasks(ls_project.id):
            ls.create_annotation(task.id, [box("cog")])
    collected = json.loads(edgeloop("flows", "collect-labels", "--json").stdout)
    assert collected["boxes"] == 2 and collected["version"]["pushed"], collected
    batch = project / collected["version"]["path"]
    assert batch.parent == project / "data" / "labelled"
    assert {p.read_text().split()[0] for p in (batch / "labels").glob("*.txt")} == {"1"}  # cog

    hook = subprocess.Popen([installed.edgeloop, "flows", "labelstudio-webhook", "--port", "0",
                             "--quiet-s", "0.5"], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        with LabelStudioClient(labelstudio_server.url, labelstudio_server.token) as ls:
            deadline = time.monotonic() + 120
            while not ls.webhooks(ls_project.id) and time.monotonic() < deadline:
                assert hook.poll() is None, hook.communicate()
                time.sleep(0.3)
            more = json.loads(edgeloop("flows", "request-labels", "--budget", "1",
                                       "--json").stdout)
            assert len(more["sent"]) == 1
            (task,) = [t for t in ls.tasks(ls_project.id)
                       if t.data["record_id"] == more["sent"][0]["record_id"]]
            ls.create_annotation(task.id, [box("spring")])
        head = collected["version"]["git_commit"]
        while _head(project) == head and time.monotonic() < deadline:
            assert hook.poll() is None, hook.communicate()
            time.sleep(0.3)
    finally:
        hook.terminate()
        out, err = hook.communicate(timeout=120)
    assert hook.returncode == 0, err
    assert "1 frames, 1 boxes, 0 negatives" in out, (out, err)
    assert len(list((project / "data" / "labelled").glob("*/manifest.json"))) == 2

    # -- the retrain: the labelled increments -> a candidate, signed, to the canary -------------
    retrained = json.loads(edgeloop("flows", "retrain", "--release", "--json").stdout)
    assert retrained["ship"] is True, retrained
    with sqlite_hub.admin() as hub:
        versions = sorted(r.manifest.version for r in hub.releases())
    assert versions == [1, 2]
    update = edgeloop("edge", "run", "--state", str(state), "--hub", sqlite_hub.url,
                      "--source", str(camera), "--token", token,
                      "--fps", "10", "--update-every", "0.5")
    with sqlite_hub.admin() as hub:
        (device,) = hub.devices()
    assert device.status is not None and device.status.release_version == 2, update.stderr


def _head(repo: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()
