"""The drift-check flow under Prefect's test harness against a real hub on loopback: references
taken from the release a device runs, one report and workspace project per device, a markdown
summary, and the fleet decision (one device's fault vs a fleet-wide event)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from edge_runtime.contract import InputSignature, ModelFile, ReleaseManifest, TelemetryBatch
from flows.drift.settings import SignalGroup
from flows.reference import REFERENCE_FILE, reference_file
from tests.support.drift_telemetry import records, telemetry
from tests.support.hub import ADMIN_TOKEN, RunningHub, hub_settings, running_hub
from tests.support.records import T0

# litestar (under Evidently's workspace) warns about its own deprecations on import
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODEL = b"an onnx model, for the hub's bookkeeping only" * 50
MODEL_VERSION = hashlib.sha256(MODEL).hexdigest()[:12]  # what the device reports
NOW = T0 + timedelta(hours=1)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[RunningHub]:
    with running_hub(hub_settings(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path)) as running:
        yield running



def test_synthetic_telemetry_is_valid_device_telemetry() -> None:
    sent = records(telemetry(0, 50, start=T0))
    assert len(sent) == 50
    assert all(r.detections == sum(r.class_counts.values()) for r in sent)


def publish_release(hub: RunningHub, tmp_path: Path) -> None:
    """A release carrying the reference profile of its model as `reference.parquet`."""
    reference = tmp_path / REFERENCE_FILE
    telemetry(0, 1000, model_version=MODEL_VERSION).to_parquet(reference)
    manifest = ReleaseManifest(
        release_id="r1", version=1, created_at=T0,
        input=InputSignature(imgsz=320, classes=["nut", "washer", "bolt"]),
        files=[ModelFile(name="model.onnx", sha256=hashlib.sha256(MODEL).hexdigest(),
                         size=len(MODEL)), reference_file(reference)])
    with hub.admin() as admin:
        admin.create_release(manifest, {"model.onnx": MODEL, REFERENCE_FILE: reference})


def run_line(hub: RunningHub, shifted: dict[str, float]) -> None:
    """Three devices on the line; those in `shifted` see the given brightness."""
    for i, device_id in enumerate(("cam-a", "cam-b", "cam-c")):
        token = hub.add_device(device_id)
        frame = telemetry(10 + i, 600, brightness=shifted.get(device_id, 0.45),
                          device_id=device_id, model_version=MODEL_VERSION,
                          start=T0 + timedelta(minutes=20))
        with hub.device(token) as device:
            device.post_telemetry(TelemetryBatch(device_id=device_id, sent_at=T0,
                                                 records=records(frame)))


def run_flow(tmp_path: Path, hub: RunningHub, monkeypatch: pytest.MonkeyPatch):
    from flows.drift.flow import drift_check

    monkeypatch.setenv("EDGELOOP_ADMIN_TOKEN", ADMIN_TOKEN)
    return drift_check(hub_url=hub.url, reports_url=str(tmp_path / "reports"),
                       workspace_dir=str(tmp_path / "workspace"), now=NOW)


def test_one_device_drifting_alone_is_reported_as_a_device_fault(harness, hub, tmp_path,
                                                                  monkeypatch):
    publish_release(hub, tmp_path)
    run_line(hub, {"cam-c": 0.38})
    sweep = run_flow(tmp_path, hub, monkeypatch)

    outcome = {d.device_id: d for d in sweep.devices}
    assert set(outcome) == {"cam-a", "cam-b", "cam-c"}
    assert all(d.model_version == MODEL_VERSION and d.verdict for d in sweep.devices)
    assert not outcome["cam-a"].verdict.drift and not outcome["cam-b"].verdict.drift
    assert outcome["cam-c"].verdict.drift
    assert outcome["cam-c"].verdict.groups == (SignalGroup.IMAGE_QUALITY,)
    assert outcome["cam-c"].verdict.current_rows == 500  # the configured window, newest rows
    assert not sweep.fleet.fleet_event
    assert sweep.fleet.device_faults == ("cam-c",)
    assert sweep.fleet.retrain_devices == ()
    for d in sweep.devices:  # a report per device, in the blob folder
        assert d.report and Path(d.report).is_file()
        assert Path(d.report).is_relative_to(tmp_path / "reports")
    from evidently.ui.workspace import Workspace

    projects = Workspace.create(str(tmp_path / "workspace")).list_projects()
    assert sorted(p.name for p in projects) == ["cam-a", "cam-b", "cam-c"]
    assert "| cam-c | " in artifact_markdown()


def test_the_whole_fleet_drifting_together_is_one_event_sent_to_labelling(harness, hub, tmp_path,
                                                                          monkeypatch):
    publish_release(hub, tmp_path)
    run_line(hub, {"cam-a": 0.38, "cam-b": 0.38, "cam-c": 0.38})
    sweep = run_flow(tmp_path, hub, monkeypatch)

    assert sweep.fleet.fleet_event
    assert sweep.fleet.event_groups == (SignalGroup.IMAGE_QUALITY,)
    assert sweep.fleet.retrain_devices == ("cam-a", "cam-b", "cam-c")
    assert sweep.fleet.device_faults == ()
    assert "fleet-wide event: **yes** (image quality)" in artifact_markdown()


def test_a_device_whose_model_has_no_reference_is_skipped_with_the_reason(harness, hub, tmp_path,
                                                                          monkeypatch):
    token = hub.add_device("cam-new")
    frame = telemetry(20, 100, device_id="cam-new", model_version="unknown-model",
                      start=T0 + timedelta(minutes=50))
    with hub.device(token) as device:
        device.post_telemetry(TelemetryBatch(device_id="cam-new", sent_at=T0,
                                             records=records(frame)))
    hub.add_device("cam-silent")
    sweep = run_flow(tmp_path, hub, monkeypatch)

    outcome = {d.device_id: d for d in sweep.devices}
    assert outcome["cam-new"].verdict is None
    assert "no reference.parquet for model version unknown-model" in outcome["cam-new"].skipped
    assert outcome["cam-silent"].skipped == "no telemetry in the window"
    assert sweep.fleet.checked == 0 and not sweep.fleet.triggers_labelling


def artifact_markdown() -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["drift-check"])),
            sort=ArtifactSort.CREATED_DESC, limit=1)
    assert found, "the flow published no drift-check artifact"
    return str(found[0].data)


def test_the_window_is_the_newest_frames_even_when_the_hub_pages_its_answer(tmp_path):
    from flows.drift.device import fetch_window
    from flows.drift.settings import WindowSpec

    settings = hub_settings(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path, query_rows=128)
    with running_hub(settings) as small_pages:
        token = small_pages.add_device("cam-a")
        frame = telemetry(30, 600, device_id="cam-a", start=T0 + timedelta(minutes=20))
        with small_pages.device(token) as device:
            device.post_telemetry(TelemetryBatch(device_id="cam-a", sent_at=T0,
                                                 records=records(frame)))
        with small_pages.admin() as admin:
            window = fetch_window(admin, "cam-a", WindowSpec(frames=500), NOW)
            recent = fetch_window(admin, "cam-a", WindowSpec(frames=None, max_age_s=2100), NOW)
    assert list(window["frame_id"]) == list(range(100, 600))  # newest 500, oldest first
    assert {f"count_{c}" for c in ("nut", "washer", "bolt")} <= set(window.columns)
    # frames=None: every record of the last 35 minutes (frame i was captured at T0+20m+i s)
    assert list(recent["frame_id"]) == list(range(300, 600))
    assert recent["captured_at"].is_monotonic_increasing


def test_the_schedule_is_a_prefect_deployment_with_the_given_interval():
    from flows.drift.flow import drift_deployment

    deployment = drift_deployment(900, reports_url="s3://bucket/drift")
    assert deployment.name == "drift-check"
    assert deployment.schedules[0].schedule.interval == timedelta(seconds=900)
    assert deployment.parameters == {"reports_url": "s3://bucket/drift"}
    with pytest.raises(ValueError, match="interval_s"):
        drift_deployment(0)
