"""Labelling against real servers: a Label Studio server (tests/support/labelstudio.py), a hub on
loopback, the simulated annotator, and a throwaway git + DVC repository with a local remote."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from edge_runtime.contract import Detection, SampleMeta, SamplePolicy
from flows.dvc_dataset import dvc_md5
from flows.labelling.collect import collect_round
from flows.labelling.labelstudio_client import LabelStudioClient
from flows.labelling.labelstudio_webhook import (
    ACTIONS,
    SECRET_HEADER,
    DebouncedCollector,
    WebhookEndpoint,
)
from flows.labelling.ledger import Ledger
from flows.labelling.request import bootstrap, request_round
from flows.labelling.settings import LabellingSettings, load_labelling_settings
from sim.parts import CLASS_NAMES
from sim.stream import Frame, stream
from tests.support.hub import ADMIN_TOKEN, RunningHub, hub_settings, running_hub
from tests.support.paths import ROOT
from tests.support.records import T0

if TYPE_CHECKING:
    from tests.support.labelstudio import RunningLabelStudio

pytestmark = pytest.mark.slow
EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
DVC = str(Path(sys.executable).parent / "dvc")


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[RunningHub]:
    with running_hub(hub_settings(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path)) as running:
        yield running


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path,
             labelstudio_server: RunningLabelStudio, hub: RunningHub) -> LabellingSettings:
    """The project's labelling.yaml, pointed at this test's servers; one fleet (so one Label
    Studio project) per test, as the server is shared by the session."""
    fleet = re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[5:45].strip("-_.")
    return load_labelling_settings(
        ROOT / "configs/labelling.yaml", {}, fleet=fleet, hub_url=hub.url,
        hub_admin_token=ADMIN_TOKEN, labelstudio__url=labelstudio_server.url,
        labelstudio__token=labelstudio_server.token,
        labelstudio__files_root=str(labelstudio_server.files_root),
        ledger=str(tmp_path / "ledger.sqlite"))


@pytest.fixture
def ls(settings: LabellingSettings) -> Iterator[LabelStudioClient]:
    with LabelStudioClient(settings.labelstudio.url, settings.labelstudio.require_token()) as c:
        yield c


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    """A git repository with DVC and a local-folder default remote, one commit in."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    for args in (["init", "-q"], ["config", "core.analytics", "false"],
                 ["config", "core.site_cache_dir", str(tmp_path / "dvc-site-cache")],
                 ["remote", "add", "-d", "store", str(tmp_path / "remote")]):
        subprocess.run([DVC, *args], cwd=repo, check=True, capture_output=True)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    return repo


# -- a fleet's kept frames -----------------------------------------------------------------------


def post_frames(hub: RunningHub, device: str, indices: list[int], *, scenario: str = "new_variant",
                frame_ids: list[int] | None = None) -> dict[str, Frame]:
    """Frames of the device's simulated stream, kept and uploaded as the agent would: the
    model's boxes are the truth with made-up scores; a frame's uncertainty rises with its
    index. Returns the frames by record id."""
    token = hub.add_device(device)
    frames = {}
    with hub.device(token) as client:
        for k, index in enumerate(indices):
            frame = next(stream(scenario, seed=0, width=320, start=index, frames=1, name=device))
            frame_id = index if frame_ids is None else frame_ids[k]
            h, w = frame.image.shape[:2]
            predictions = [Detection(cls=int(c), label=CLASS_NAMES[int(c)],
                                     score=0.3 + 0.1 * (j % 6), x1=b[0] / w, y1=b[1] / h,
                                     x2=b[2] / w, y2=b[3] / h)
                           for j, (b, c) in enumerate(zip(frame.truth.boxes,
                                                          frame.truth.classes, strict=True))]
            meta = SampleMeta(device_id=device, model_version="seed-v1", frame_id=frame_id,
                              captured_at=T0 + timedelta(seconds=frame_id),
                              policy=SamplePolicy.UNCERTAIN,
                              uncertainty=round(0.2 + 0.7 * index / 40, 3),
                              width=w, height=h, predictions=predictions)
            ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok
            client.post_sample(meta, jpeg.tobytes())
            frames[meta.record_id] = frame
    return frames


def send_round(settings: LabellingSettings, hub: RunningHub, ls: LabelStudioClient,
               budget: int | None = None, passed_over: int | None = None) -> list[str]:
    if budget is not None:
        from dataclasses import replace

        settings = replace(settings, selection=replace(settings.selection, budget=budget))
    with hub.admin() as admin:
        report = request_round(settings, admin, ls, Ledger(settings.ledger))
    if passed_over is not None:
        assert report.passed_over == passed_over
    return [t.record_id for t in report.sent]


# -- the tests -----------------------------------------------------------------------------------


def test_project_bootstrap_is_idempotent(settings: LabellingSettings,
                                         ls: LabelStudioClient) -> None:
    first, second = bootstrap(settings, ls), bootstrap(settings, ls)
    assert first.project.id == second.project.id
    [project] = ls.find_projects(settings.project_title)
    assert project.label_config.strip() == (ROOT / "configs/labelstudio.xml").read_text().strip()
    assert first.files_dir == settings.labelstudio.files_root.resolve() / settings.fleet


def test_round_sends_the_most_uncertain_frames_pre_annotated_and_sortable(
        hub: RunningHub, settings: LabellingSettings, ls: LabelStudioClient) -> None:
    frames = post_frames(hub, "cam-1", [0, 3, 6, 9, 12, 15])
    post_frames(hub, "cam-2", [1])
    twin = frames["cam-1/15"]  # the same picture under another id: a stopped belt
    with hub.device(hub.add_device("cam-3")) as client:
        jpeg = cv2.imencode(".jpg", twin.image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
        client.post_sample(SampleMeta(device_id="cam-3", model_version="seed-v1", frame_id=5,
                                      captured_at=T0, policy=SamplePolicy.UNCERTAIN,
                                      uncertainty=0.99, width=320, height=240,
                                      predictions=[]), jpeg.tobytes())
    sent = send_round(settings, hub, ls, budget=4, passed_over=1)
    assert sent == ["cam-3/5", "cam-1/12", "cam-1/9", "cam-1/6"]  # cam-1/15 is cam-3/5's twin
    assert send_round(settings, hub, ls, budget=4) == ["cam-1/3", "cam-2/1", "cam-1/0"]

    project = ls.find_projects(settings.project_title)[0]
    tasks = list(ls.tasks(project.id, ordering="-tasks:data.uncertainty"))
    assert [t.data["record_id"] for t in tasks][:4] == sent
    task = next(t for t in tasks if t.data["record_id"] == "cam-1/9")
    assert {"uncertainty", "device", "captured_at", "policy", "frame_id",
            "model_version"} <= set(task.data)
    assert (task.data["device"], task.data["policy"]) == ("cam-1", "uncertain")
    [prediction] = task.predictions
    truth = frames["cam-1/9"].truth
    assert prediction.model_version == "seed-v1"
    assert prediction.score == pytest.approx(1 - task.data["uncertainty"])
    assert len(prediction.result) == len(truth.classes)
    first = prediction.result[0]
    assert first["value"]["x"] == pytest.approx(truth.boxes[0][0] / 320 * 100, abs=1e-3)
    assert first["value"]["rectanglelabels"] == [CLASS_NAMES[int(truth.classes[0])]]
    assert 0 < first["score"] < 1
    with hub.admin() as admin:
        assert ls.image(task) == admin.sample_image("cam-1/9")  # served by Label Studio


def test_rerunning_a_round_never_sends_a_frame_twice(
        hub: RunningHub, settings: LabellingSettings, ls: LabelStudioClient) -> None:
    post_frames(hub, "cam-1", list(range(0, 40, 5)))
    assert len(send_round(settings, hub, ls)) == 8
    assert send_round(settings, hub, ls) == []
    Path(settings.ledger).unlink()  # a lost ledger: Label Studio's own task list still counts
    assert send_round(settings, hub, ls) == []
    assert len(Ledger(settings.ledger).sent(ls.find_projects(settings.project_title)[0].id)) == 8
    post_frames(hub, "cam-2", [2, 4])
    assert sorted(send_round(settings, hub, ls)) == ["cam-2/2", "cam-2/4"]
    project = ls.find_projects(settings.project_title)[0]
    record_ids = [t.data["record_id"] for t in ls.tasks(project.id)]
    assert len(record_ids) == len(set(record_ids)) == 10


def test_simulated_annotations_come_back_as_the_simulators_truth_in_a_new_dvc_version(
        hub: RunningHub, settings: LabellingSettings, ls: LabelStudioClient,
        dvc_repo: Path) -> None:
    frames = post_frames(hub, "cam-7", [1, 4, 8, 13, 21])
    # A device whose spool went on counting after a restart: frame id 1003 shows stream index 3.
    frames |= post_frames(hub, "cam-8", [3], frame_ids=[1003])
    sent = send_round(settings, hub, ls)
    assert len(sent) == 6
    project = ls.find_projects(settings.project_title)[0]

    annotate = subprocess.run(
        [EDGELOOP, "sim-annotator", "--ls-url", settings.labelstudio.url, "--token",
         settings.labelstudio.require_token(), "--project", str(project.id),
         "--scenario", "baseline", "--scenario", "new_variant", "--max-index", "30"],
        capture_output=True, text=True, timeout=300)
    assert annotate.returncode == 0, annotate.stderr
    assert "annotated 6 tasks" in annotate.stdout and "no matching frame for 0" in annotate.stdout

    report = collect_round(settings, ls, Ledger(settings.ledger), dvc_repo)
    version = report.version
    assert version is not None and version.pushed and report.rejected == []
    folder = dvc_repo / version.path
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(i["record_id"] for i in manifest["items"]) == sorted(sent)
    tasks = {t.data["record_id"]: t.id for t in ls.tasks(project.id)}
    for item in manifest["items"]:
        assert item["task_id"] == tasks[item["record_id"]]
        lines = (folder / item["label"]).read_text().splitlines()
        got = np.array([[float(v) for v in line.split()] for line in lines]).reshape(-1, 5)
        want = np.array([[float(v) for v in line.split()] for line in
                         frames[item["record_id"]].truth.yolo_lines()]).reshape(-1, 5)
        assert np.allclose(got, want, atol=2e-6), item["record_id"]  # class ids: our order
        assert (folder / item["image"]).read_bytes()[:2] == b"\xff\xd8"

    assert git(dvc_repo, "rev-parse", "HEAD").strip() == version.git_commit
    committed = git(dvc_repo, "show", "--name-only", "--format=", "HEAD").split()
    assert committed == ["data/labelled/.gitignore", f"{version.path}.dvc"]
    assert dvc_md5(dvc_repo / f"{version.path}.dvc")[0] == version.dvc_md5
    status = subprocess.run([DVC, "status", "--cloud", "--json"], cwd=dvc_repo, check=True,
                            capture_output=True, text=True)
    assert json.loads(status.stdout or "{}") == {}  # everything is on the remote
    assert collect_round(settings, ls, Ledger(settings.ledger), dvc_repo).version is None


def test_skipped_tasks_are_left_out_empty_ones_are_negatives_bad_boxes_wait_for_a_fix(
        hub: RunningHub, settings: LabellingSettings, ls: LabelStudioClient,
        dvc_repo: Path) -> None:
    post_frames(hub, "cam-1", [2, 5, 9])
    send_round(settings, hub, ls)
    project = ls.find_projects(settings.project_title)[0]
    by_record = {t.data["record_id"]: t for t in ls.tasks(project.id)}
    outside = {"from_name": "label", "to_name": "image", "type": "rectanglelabels",
               "value": {"x": 90.0, "y": 10.0, "width": 20.0, "height": 10.0, "rotation": 0,
                         "rectanglelabels": ["nut"]}}
    ls.create_annotation(by_record["cam-1/2"].id, [])  # nothing there: a negative
    ls.create_annotation(by_record["cam-1/5"].id, [], was_cancelled=True)  # skipped
    ls.create_annotation(by_record["cam-1/9"].id, [outside])

    report = collect_round(settings, ls, Ledger(settings.ledger), dvc_repo)
    assert report.version is not None and (report.negatives, report.boxes) == (1, 0)
    assert [(r.record_id, "leaves the image" in r.reason) for r in report.rejected] == [
        ("cam-1/9", True)]
    items = json.loads((dvc_repo / report.version.path / "manifest.json").read_text())["items"]
    assert [i["record_id"] for i in items] == ["cam-1/2"]
    assert (dvc_repo / report.version.path / items[0]["label"]).read_text() == ""

    inside = {**outside, "value": {**outside["value"], "x": 70.0}}
    ls.create_annotation(by_record["cam-1/9"].id, [inside])  # fixed in the UI
    fixed = collect_round(settings, ls, Ledger(settings.ledger), dvc_repo)
    assert fixed.version is not None and fixed.rejected == [] and fixed.boxes == 1
    assert fixed.version.git_commit != report.version.git_commit


def test_a_webhook_on_new_annotations_triggers_collection(
        hub: RunningHub, settings: LabellingSettings, ls: LabelStudioClient,
        dvc_repo: Path) -> None:
    post_frames(hub, "cam-1", [3, 7])
    send_round(settings, hub, ls)
    project = ls.find_projects(settings.project_title)[0]
    versions = []
    collector = DebouncedCollector(
        lambda: versions.append(collect_round(settings, ls, Ledger(settings.ledger),
                                              dvc_repo).version), quiet_s=0.5)
    endpoint = WebhookEndpoint("127.0.0.1", 0, "hook-secret", project.id, collector)
    endpoint.start()
    try:
        url = f"http://127.0.0.1:{endpoint.port}/labelstudio"
        ls.ensure_webhook(project.id, url, ACTIONS, {SECRET_HEADER: "hook-secret"})
        again = ls.ensure_webhook(project.id, url, ACTIONS, {SECRET_HEADER: "hook-secret"})
        for task in ls.tasks(project.id):
            ls.create_annotation(task.id, [])
        deadline = time.monotonic() + 60
        while not versions and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        endpoint.stop()
    assert again.url == url and collector.runs >= 1 and collector.last_error is None
    assert versions and versions[0] is not None
    assert versions[0].files == 2 * 2 + 1  # two images, two labels, the manifest


def test_flows_run_under_prefect_and_the_cli_answers_in_one_line(
        hub: RunningHub, settings: LabellingSettings, dvc_repo: Path, tmp_path: Path) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.labelling.flow import collect_labels, request_labels

    post_frames(hub, "cam-1", [4, 8])
    overrides = {"fleet": settings.fleet, "hub_url": settings.hub_url,
                 "hub_admin_token": ADMIN_TOKEN, "labelstudio__url": settings.labelstudio.url,
                 "labelstudio__token": settings.labelstudio.token,
                 "labelstudio__files_root": str(settings.labelstudio.files_root),
                 "ledger": str(settings.ledger)}
    config = str(ROOT / "configs/labelling.yaml")
    # None: wait PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (120 s), not the harness's 30 s,
    # which a loaded 2-core machine running two test workers exceeded.
    with prefect_test_harness(server_startup_timeout=None):
        sent = request_labels(config=config, overrides=overrides)
        assert [t["record_id"] for t in sent["sent"]] == ["cam-1/8", "cam-1/4"]
        with LabelStudioClient(settings.labelstudio.url,
                               settings.labelstudio.require_token()) as ls:
            for task in ls.tasks(sent["project_id"]):
                ls.create_annotation(task.id, [])
        collected = collect_labels(repo=str(dvc_repo), config=config, overrides=overrides)
    assert collected["negatives"] == 2 and collected["version"]["pushed"]
    assert collected["version"]["git_commit"] == git(dvc_repo, "rev-parse", "HEAD").strip()

    common = ["--config", config, "--ls-url", settings.labelstudio.url, "--var",
              str(tmp_path / "var")]
    for args, message in [
            (["request-labels", *common, "--ls-token", "0" * 40, "--hub", hub.url,
              "--admin-token", ADMIN_TOKEN], "HTTP 401"),
            (["request-labels", *common, "--ls-token", settings.labelstudio.require_token()],
             "no hub admin token"),
            (["collect-labels", *common, "--ls-token", settings.labelstudio.require_token(),
              "--repo", str(tmp_path)], "run `dvc init` there first")]:
        result = subprocess.run([EDGELOOP, "flows", *args], capture_output=True, text=True,
                                timeout=120, env={**os.environ, "EDGELOOP_ADMIN_TOKEN": ""})
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert message in result.stderr


def test_webhook_command_registers_itself_and_collects_after_annotations(
        hub: RunningHub, settings: LabellingSettings, ls: LabelStudioClient, dvc_repo: Path,
        tmp_path: Path) -> None:
    post_frames(hub, "cam-1", [6])
    send_round(settings, hub, ls)
    project = ls.find_projects(settings.project_title)[0]
    env = {**os.environ, "EDGELOOP_LABELSTUDIO_TOKEN": settings.labelstudio.require_token()}
    server = subprocess.Popen(
        [EDGELOOP, "flows", "labelstudio-webhook", "--port", "0", "--quiet-s", "0.5",
         "--fleet", settings.fleet,
         "--repo", str(dvc_repo), "--config", str(ROOT / "configs/labelling.yaml"),
         "--ls-url", settings.labelstudio.url, "--ledger", str(settings.ledger),
         "--var", str(tmp_path / "var")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=tmp_path)
    first = git(dvc_repo, "rev-parse", "HEAD")
    try:
        deadline = time.monotonic() + 90
        while not ls.webhooks(project.id) and time.monotonic() < deadline:
            assert server.poll() is None, server.communicate()
            time.sleep(0.3)
        for task in ls.tasks(project.id):
            ls.create_annotation(task.id, [])
        while git(dvc_repo, "rev-parse", "HEAD") == first and time.monotonic() < deadline:
            assert server.poll() is None, server.communicate()
            time.sleep(0.3)
    finally:
        server.terminate()  # a collect in flight finishes first (on a loaded machine: a minute)
        out, err = server.communicate(timeout=120)
    assert server.returncode == 0, err
    assert "1 frames, 0 boxes, 1 negatives" in out, (out, err)
    assert git(dvc_repo, "log", "-1", "--format=%s").startswith("labels: ")
