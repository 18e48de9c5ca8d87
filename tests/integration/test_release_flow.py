"""The release flows under Prefect's test harness against a real hub on loopback: a gate-passing
candidate is signed and published to canary, devices post telemetry on it, and the canary verdict
promotes it to stable or rolls the canary back (the good files again, as a new version a device's
floor accepts); a person's promote and rollback; what the hub then serves verifies with
tuf.ngclient."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pandas as pd  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from edge_runtime.contract import (
    TARGET_MANIFEST_FIELD,
    DeviceStatus,
    ReleaseManifest,
    TelemetryBatch,
)
from edge_runtime.update.policy import VersionBelowFloor, check_version_floor
from flows.release.canary import Verdict
from flows.release.candidate import ReleaseError
from tests.support.drift_telemetry import records, telemetry
from tests.support.hub import ADMIN_TOKEN, RunningHub

RELEASE_CONFIG = """\
canary:
  min_frames: 300
  min_devices: 2
  min_baseline_frames: 100
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository root: params.yaml, one labelled increment, the release config."""
    root = tmp_path / "project"
    (root / "data" / "labelled").mkdir(parents=True)
    (root / "params.yaml").write_text("finetune: {epochs: 10}\n")
    (root / "data" / "labelled" / "batch-001.dvc").write_text(
        "outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  nfiles: 40\n"
        "  path: batch-001\n")
    (root / "release.yaml").write_text(RELEASE_CONFIG)
    monkeypatch.setenv("EDGELOOP_ADMIN_TOKEN", ADMIN_TOKEN)
    return root


def tiny_onnx(path: Path, tag: str) -> None:
    """A valid ONNX file with the metadata a YOLO export writes (class names, input size)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output0"])], "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 320, 320])])
    model = helper.make_model(graph, doc_string=tag)
    for key, value in {"names": "{0: 'nut', 1: 'washer', 2: 'bolt'}",
                       "imgsz": "[320, 320]"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def candidate(project: Path, tag: str, *, ship: bool = True,
              reference: pd.DataFrame | None = None) -> None:
    folder = project / "models" / "candidate"
    folder.mkdir(parents=True, exist_ok=True)
    tiny_onnx(folder / "model.onnx", f"fp32 {tag}")
    tiny_onnx(folder / "model.int8.onnx", f"int8 {tag}")
    reference = telemetry(0, 1000, device_id="reference") if reference is None else reference
    reference.to_parquet(folder / "reference.parquet")
    gate = {"ship": ship, "artefact": "int8" if ship else None,
            "reasons": [] if ship else ["drift mAP50-95 gain 0.4 < 2"],
            "checks": [{"name": "drift_gain", "passed": ship, "value": 3.25 if ship else 0.4,
                        "limit": 2.0, "detail": "drift gain"},
                       {"name": "fp32_onnx_valid", "passed": True, "value": None,
                        "limit": None, "detail": "valid"}],
            "files": {"fp32": "models/candidate/model.onnx"}}
    (project / "metrics").mkdir(exist_ok=True)
    (project / "metrics" / "gate.json").write_text(json.dumps(gate))


def flow_args(hub: RunningHub, project: Path) -> dict[str, Any]:
    return {"project": str(project), "hub_url": hub.url,
            "config_path": str(project / "release.yaml")}


def publish(hub: RunningHub, project: Path, tag: str,
            reference: pd.DataFrame | None = None) -> ReleaseManifest:
    from flows.release.flow import release

    candidate(project, tag, reference=reference)
    outcome = release(git_commit="c0ffee" * 6 + "abcd", **flow_args(hub, project))
    assert outcome.verdict is None and outcome.action == "assigned to canary"
    return outcome.manifest


def sha256s(manifest: ReleaseManifest) -> dict[str, str]:
    return {f.name: f.sha256 for f in manifest.files}


def model_version(manifest: ReleaseManifest) -> str:
    return next(f.sha256[:12] for f in manifest.files if f.name == "model.onnx")


def run_devices(hub: RunningHub, tokens: dict[str, str], manifest: ReleaseManifest, frames: int,
                *, seed: int, worse: bool = False, detections: float | None = None) -> None:
    """Each device sends `frames` frames on the release (from now on) and a heartbeat;
    `detections`: that many per frame on average (else telemetry()'s 3)."""
    start = datetime.now(UTC) + timedelta(seconds=1)
    for i, (device_id, token) in enumerate(tokens.items()):
        rows = telemetry(seed + i, frames, device_id=device_id,
                         model_version=model_version(manifest), start=start)
        if detections is not None:
            rows["detections"] = np.random.default_rng(seed + i).poisson(detections, frames)
        if worse:  # half the detections, less sure of them
            rows["detections"] = rows["detections"] // 2
            rows["conf_mean"] = rows["conf_mean"] * 0.6
        with hub.device(token) as device:
            device.post_telemetry(TelemetryBatch(device_id=device_id, sent_at=start,
                                                 records=records(rows)))
            device.heartbeat(DeviceStatus(
                device_id=device_id, sent_at=datetime.now(UTC) + timedelta(seconds=2),
                model_version=model_version(manifest), release_version=manifest.version,
                uptime_s=60, frames_seen=frames, spool_telemetry=0, spool_samples=0,
                spool_bytes=0, dropped={}))


@pytest.fixture
def fleet(sqlite_hub: RunningHub) -> dict[str, dict[str, str]]:
    return {channel: {f"cam-{channel}-{i}": sqlite_hub.add_device(f"cam-{channel}-{i}", channel)
                      for i in range(2)} for channel in ("stable", "canary")}


def stable_on_v1(hub: RunningHub, project: Path,
                 fleet: dict[str, dict[str, str]]) -> ReleaseManifest:
    """v1 published, promoted by a person, and run by the stable devices."""
    from flows.release.flow import human_decision

    v1 = publish(hub, project, "v1")
    outcome = human_decision(v1.release_id, "promote", who="the test",
                             **flow_args(hub, project))
    assert outcome.verdict is Verdict.PROMOTE and outcome.human
    run_devices(hub, fleet["stable"], v1, 300, seed=10)
    return v1


def test_healthy_canary_is_promoted_and_what_devices_verify_is_that_release(
        harness, sqlite_hub, project, fleet, tmp_path) -> None:
    from flows.release.flow import canary_decision

    v1 = stable_on_v1(sqlite_hub, project, fleet)
    v2 = publish(sqlite_hub, project, "v2")
    assert (v2.version, v2.lineage.parent_release) == (2, v1.release_id)
    assert v2.lineage.dataset_version == \
        "data/labelled/batch-001@0123456789abcdef0123456789abcdef.dir"
    assert v2.lineage.labelstudio_batches == ["batch-001"]
    assert v2.lineage.params_hash == hashlib.sha256(
        (project / "params.yaml").read_bytes()).hexdigest()
    assert v2.metrics == {"drift_gain": 3.25} and v2.input.classes == ["nut", "washer", "bolt"]
    assert v2.expires_at is not None and v2.expires_at > v2.created_at

    run_devices(sqlite_hub, fleet["canary"], v2, 100, seed=20)
    waiting = canary_decision(**flow_args(sqlite_hub, project))
    assert waiting.verdict is Verdict.WAIT
    assert waiting.reasons == ["200 frames on the new release, 300 needed"]

    run_devices(sqlite_hub, fleet["canary"], v2, 200, seed=30)
    outcome = canary_decision(**flow_args(sqlite_hub, project))
    assert outcome.verdict is Verdict.PROMOTE, outcome.reasons
    with sqlite_hub.admin() as admin:
        assert admin.channel("stable").release == v2
    markdown = artifact_markdown()
    assert "**PROMOTE**" in markdown and "detection_rate_vs_previous | pass" in markdown

    token = next(iter(fleet["stable"].values()))
    device = device_updater(sqlite_hub, token, tmp_path / "device",
                            (project / "var/releases/tuf/metadata/1.root.json").read_bytes())
    device.refresh()
    info = device.get_targetinfo(f"{v2.release_id}/model.onnx")
    assert info is not None
    assert ReleaseManifest.model_validate(info.custom[TARGET_MANIFEST_FIELD]) == v2
    with sqlite_hub.device(token) as client:
        assert client.assignment() == v2


@pytest.mark.parametrize("blind", [False, True])
def test_after_a_fleet_wide_shift_the_shipped_canary_promotes_a_fix_and_rolls_back_a_blind_one(
        harness, sqlite_hub, project, fleet, blind) -> None:
    """The line changed: it shows 3.5 objects per frame (the round's labels), v1 over-detects
    (5.3 per frame on the labelled frames and on the stable devices, meanwhile), v2 finds 3.7 as
    it did on the labelled frames; a blind v2 finds next to nothing. Only the sizes of
    configs/release.yaml's canary are the test's."""
    from flows.release.flow import canary_decision, human_decision

    v1 = publish(sqlite_hub, project, "v1")
    human_decision(v1.release_id, "promote", who="the test", **flow_args(sqlite_hub, project))
    rng = np.random.default_rng(5)
    reference = telemetry(0, 200, device_id="reference").assign(
        detections=rng.poisson(3.7, 200), labelled_objects=rng.poisson(3.5, 200),
        previous_detections=rng.poisson(5.3, 200))
    v2 = publish(sqlite_hub, project, "v2", reference=reference)
    run_devices(sqlite_hub, fleet["stable"], v1, 300, seed=10, detections=5.3)
    run_devices(sqlite_hub, fleet["canary"], v2, 300, seed=20, detections=0.3 if blind else 3.7,
                worse=blind)
    outcome = canary_decision(**flow_args(sqlite_hub, project))
    checks = {c.name: c for c in outcome.checks}
    assert set(checks) >= {"confidence_ks_vs_reference", "detection_rate_vs_previous",
                           "latency_p95_vs_previous"}
    if blind:
        assert outcome.verdict is Verdict.ROLLBACK
        assert not checks["confidence_ks_vs_reference"].passed
        assert not checks["detection_rate_vs_previous"].passed
    else:
        assert outcome.verdict is Verdict.PROMOTE, outcome.reasons
        # v2 over v1 on the line as on the labelled frames (a drop of 30%: the old rule's no)
        assert abs(checks["detection_rate_vs_previous"].value) < 0.1


def test_worse_canary_is_rolled_back_by_publishing_the_good_files_as_a_new_version(
        harness, sqlite_hub, project, fleet, tmp_path) -> None:
    from flows.release.flow import canary_decision

    v1 = stable_on_v1(sqlite_hub, project, fleet)
    v2 = publish(sqlite_hub, project, "v2")
    token = next(iter(fleet["canary"].values()))
    trusted_root = (project / "var/releases/tuf/metadata/1.root.json").read_bytes()
    device_updater(sqlite_hub, token, tmp_path / "device", trusted_root).refresh()  # took v2
    run_devices(sqlite_hub, fleet["canary"], v2, 300, seed=20, worse=True)
    outcome = canary_decision(**flow_args(sqlite_hub, project))
    assert outcome.verdict is Verdict.ROLLBACK
    assert any("vs previous version" in r for r in outcome.reasons)
    with sqlite_hub.admin() as admin:
        v3 = admin.channel("canary").release
        assert admin.channel("stable").release == v1
    assert v3 is not None and v3.release_id == "v3-rollback-of-v2" and v3.version == 3
    assert sha256s(v3) == sha256s(v1) and v3.lineage.parent_release == v2.release_id
    assert v3.metrics["rollback_of_version"] == 2 and v3.metrics["restores_version"] == 1
    assert outcome.action == (f"rolled canary back to the files of {v1.release_id}: published "
                              "them again as v3-rollback-of-v2 (version 3)")
    markdown = artifact_markdown()
    assert "**ROLLBACK**" in markdown and "detection_rate_vs_previous | FAIL" in markdown

    device = device_updater(sqlite_hub, token, tmp_path / "device", trusted_root)
    device.refresh()
    info = device.get_targetinfo(f"{v3.release_id}/model.onnx")
    assert info is not None
    signed = ReleaseManifest.model_validate(info.custom[TARGET_MANIFEST_FIELD])
    assert signed == v3 and signed.version > v2.version
    check_version_floor(signed, v2.version)  # the device that activated v2 moves forward
    model = Path(device.download_target(info))
    assert hashlib.sha256(model.read_bytes()).hexdigest() == sha256s(v1)["model.onnx"]
    with sqlite_hub.device(token) as client:
        assert client.assignment() == v3


def test_moving_a_channel_back_to_the_older_release_is_refused_by_device_floors(
        harness, sqlite_hub, project, fleet) -> None:
    """Why a rollback publishes a new version: the hub's channel rollback (kept for admins)
    assigns the older release, which a device that activated the newer one refuses."""
    v1 = stable_on_v1(sqlite_hub, project, fleet)
    v2 = publish(sqlite_hub, project, "v2")
    token = next(iter(fleet["canary"].values()))
    with sqlite_hub.admin() as admin:
        admin.rollback("canary")
    with sqlite_hub.device(token) as client:
        assigned = client.assignment()
    assert assigned == v1
    with pytest.raises(VersionBelowFloor, match=f"below this device's floor {v2.version}"):
        check_version_floor(assigned, v2.version)


def test_person_promotes_only_the_canarys_release_and_rolls_back_every_channel(
        harness, sqlite_hub, project, fleet) -> None:
    from flows.release.flow import human_decision

    v1 = stable_on_v1(sqlite_hub, project, fleet)
    v2 = publish(sqlite_hub, project, "v2")
    with pytest.raises(ReleaseError, match="only the canary's release is promoted"):
        human_decision(v1.release_id, "promote", **flow_args(sqlite_hub, project))
    human_decision(v2.release_id, "promote", **flow_args(sqlite_hub, project))
    outcome = human_decision(v2.release_id, "rollback", who="ops",
                             **flow_args(sqlite_hub, project))
    assert outcome.verdict is Verdict.ROLLBACK and outcome.human
    assert outcome.action == (f"rolled canary, stable back to the files of {v1.release_id}: "
                              "published them again as v3-rollback-of-v2 (version 3)")
    with sqlite_hub.admin() as admin:
        running = {ch: admin.channel(ch).release for ch in ("canary", "stable")}
    v3 = running["canary"]
    assert v3 is not None and running["stable"] == v3 and sha256s(v3) == sha256s(v1)
    assert "Decided by ops" in artifact_markdown()
    with pytest.raises(ReleaseError, match="no channel runs"):
        human_decision(v2.release_id, "rollback", **flow_args(sqlite_hub, project))


def test_release_watch_waits_for_canary_frames_then_promotes(harness, sqlite_hub, project,
                                                             fleet) -> None:
    from flows.release.flow import canary_decision, release

    v1 = stable_on_v1(sqlite_hub, project, fleet)
    quiet = canary_decision(watch=True, poll_s=0.1, timeout_s=0.3,
                            **flow_args(sqlite_hub, project))
    assert quiet.verdict is Verdict.WAIT and quiet.manifest == v1  # nothing new: times out
    candidate(project, "v2")
    published: list[ReleaseManifest] = []

    def canary_line() -> None:  # the devices start once the release is on canary
        while not published:
            with sqlite_hub.admin() as admin:
                running = admin.channel("canary").release
            if running is not None and running.version == 2:
                published.append(running)
                run_devices(sqlite_hub, fleet["canary"], running, 150, seed=40)
            time.sleep(0.1)

    line = threading.Thread(target=canary_line, daemon=True)
    line.start()
    outcome = release(watch=True, poll_s=0.2, timeout_s=60, git_commit="",
                      **flow_args(sqlite_hub, project))
    line.join(timeout=10)
    assert outcome.verdict is Verdict.PROMOTE, outcome.reasons
    assert outcome.manifest == published[0]
    assert outcome.action == f"promoted to stable: it now runs {outcome.manifest.release_id}"


def test_refresh_resigns_the_timestamp_the_hub_serves(sqlite_hub, project) -> None:
    from flows.release.cli import release
    from flows.release.tuf import ReleaseRepository

    repo = ReleaseRepository.create(project / "var/releases/tuf", project / "var/releases/keys")
    with sqlite_hub.admin() as admin:
        admin.publish_tuf_metadata(repo.metadata_files())
        refreshed = CliRunner().invoke(
            release, ["--refresh", "--json", "--project", str(project),
                      "--hub-url", sqlite_hub.url], env={"EDGELOOP_ADMIN_TOKEN": ADMIN_TOKEN})
        assert refreshed.exit_code == 0, refreshed.output
        assert json.loads(refreshed.output) == {"resigned": ["timestamp"]}
        served = json.loads(admin.tuf_metadata("timestamp.json") or b"{}")
    assert served["signed"]["version"] == 2


def test_refresh_is_a_prefect_deployment_with_the_given_interval(project) -> None:
    from flows.release.flow import release_refresh_deployment

    config = str(project / "release.yaml")
    deployment = release_refresh_deployment(6 * 3600, project=str(project), config_path=config)
    assert deployment.name == "release-refresh"
    assert deployment.schedules[0].schedule.interval == timedelta(hours=6)
    assert deployment.parameters == {"project": str(project), "config_path": config}
    with pytest.raises(ReleaseError, match="below the timestamp's expiry"):
        release_refresh_deployment(86400)  # the timestamp (1 day) would lapse between runs
    with pytest.raises(ReleaseError, match="at least 1"):
        release_refresh_deployment(0)


def test_refused_candidate_is_not_published(harness, sqlite_hub, project) -> None:
    from flows.release.flow import release

    candidate(project, "bad", ship=False)
    with pytest.raises(ReleaseError, match=r"gate refused this candidate: drift mAP50-95"):
        release(**flow_args(sqlite_hub, project))
    with sqlite_hub.admin() as admin:
        assert admin.releases() == []


def test_cli_refuses_before_starting_prefect(project, sqlite_hub) -> None:
    from flows.release.cli import release

    candidate(project, "bad", ship=False)
    runner = CliRunner()
    args = ["--project", str(project), "--hub-url", sqlite_hub.url,
            "--config", str(project / "release.yaml")]
    refused = runner.invoke(release, args, env={"EDGELOOP_ADMIN_TOKEN": ADMIN_TOKEN})
    assert refused.exit_code == 1 and "gate refused this candidate" in str(refused.exception)
    both = runner.invoke(release, [*args, "--decide", "--refresh"])
    assert both.exit_code == 2 and "do not go together" in both.output
    every = runner.invoke(release, [*args, "--every", "3600"])
    assert every.exit_code == 2 and "--every goes with --refresh" in every.output
    no_token = runner.invoke(release, args, env={"EDGELOOP_ADMIN_TOKEN": ""})
    assert "EDGELOOP_ADMIN_TOKEN" in str(no_token.exception)


def artifact_markdown() -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["release"])),
            sort=ArtifactSort.CREATED_DESC, limit=1)
    assert found, "the flow published no release artifact"
    return str(found[0].data)


class BearerFetcher(FetcherInterface):
    def __init__(self, token: str) -> None:
        self._http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30.0,
                                  trust_env=False)

    def _fetch(self, url: str) -> Iterator[bytes]:
        response = self._http.get(url)
        if response.status_code != 200:
            raise DownloadHTTPError(f"GET {url}: {response.status_code}", response.status_code)
        return iter((response.content,))


def device_updater(hub: RunningHub, token: str, folder: Path, trusted_root: bytes) -> Updater:
    (folder / "targets").mkdir(parents=True, exist_ok=True)
    return Updater(str(folder), f"{hub.url}/v1/tuf/metadata/", str(folder / "targets"),
                   f"{hub.url}/v1/tuf/targets/", fetcher=BearerFetcher(token),
                   bootstrap=trusted_root)
