"""The closed loop end to end, at tiny sizes, through the real parts: a hub on loopback, a Label
Studio server, a Prefect server, three `edgeloop edge run` devices streaming the simulator, the
drift, labelling, retrain and release flows, the `dvc` CLI. While the servers are still up, the
chain of events is read back from them: hub records, Label Studio annotations, a new DVC dataset
version, a signed release on stable, every device on it; and accuracy on the drifted domain went
up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.loop import ADMIN_TOKEN, DemoConfig, DemoResult, device_ids, run_demo, tiny
from demo.report import MARKER_KINDS
from tests.support.paths import ROOT

pytestmark = pytest.mark.slow

SUMMARY_KEYS = {"fleet_drift", "fault", "frames_to_alarm", "labels_used", "map50_before_drift",
                "map50_after_drift", "map50_after_release", "minutes_drift_to_fleet_updated",
                "monitor_overhead_pct", "device_fault_isolated",
                "labels_per_recovered_map50_point", "retrain_stages_s", "gate_checks",
                "canary_checks"}


def read_back(urls: dict[str, str], out: Path) -> dict[str, Any]:
    """What the servers hold at the end of the loop (called before they stop)."""
    from demo.labelstudio_server import TOKEN
    from hub.client import HubClient

    hub_url = urls["hub API"].removesuffix("/docs")
    with HubClient(hub_url, admin_token=ADMIN_TOKEN) as hub:
        devices = {d.device_id: d for d in hub.devices()}
        releases = hub.releases()
        stable = hub.channel("stable")
        telemetry = hub.telemetry()
        samples = hub.samples(limit=1000)
        targets = json.loads(hub.tuf_metadata("targets.json") or b"{}")
    headers = {"Authorization": f"Token {TOKEN}"}
    with httpx.Client(base_url=urls["Label Studio"], headers=headers, timeout=30,
                      trust_env=False) as ls:
        projects = ls.get("/api/projects").json()
        project = projects["results"][0] if isinstance(projects, dict) else projects[0]
        annotated = ls.get(f"/api/projects/{project['id']}").json()["total_annotations_number"]
    return {"devices": devices, "releases": releases, "stable": stable, "telemetry": telemetry,
            "samples": samples, "targets": targets, "annotations": annotated}


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("demo")
    seen: dict[str, Any] = {}
    config = tiny(DemoConfig(out=out, cache=ROOT / "var" / "test", timeout_s=1200))
    result = run_demo(config, keep_up=lambda urls: seen.update(read_back(urls, out)))
    return result, seen, out


def test_the_loop_closes_and_accuracy_on_the_drifted_domain_comes_back(
        loop: tuple[DemoResult, dict[str, Any], Path]) -> None:
    result, _, out = loop
    assert result.error is None, result.error
    summary = result.summary
    assert summary.map50_after_release is not None
    assert summary.map50_after_drift < summary.map50_before_drift, "the drift cost accuracy"
    assert summary.map50_after_release > summary.map50_after_drift, "the release won it back"
    assert summary.device_fault_isolated, "the bumped camera alone triggered nothing"
    assert summary.frames_to_alarm is not None and summary.frames_to_alarm >= 0
    assert 0 < summary.labels_used <= 50
    assert summary.minutes_drift_to_fleet_updated is not None
    assert 0 < summary.monitor_overhead_pct < 20
    kinds = [m.kind for m in result.timeline.markers]
    assert set(kinds) == set(MARKER_KINDS), kinds
    assert kinds.index("alarm") < kinds.index("labels_done") < kinds.index("release") \
        < kinds.index("promotion") < kinds.index("fleet_updated")
    saved = json.loads((out / "summary.json").read_text())
    assert set(saved) == SUMMARY_KEYS
    assert saved["labels_used"] == summary.labels_used
    # What explains the figures: the retrain's DVC stages, the canary's checks that promoted.
    assert {"prepare", "train", "gate"} <= set(saved["retrain_stages_s"]), saved
    # The canary judged the new domain: every comparison made, every one passed, on the
    # shipped limits (only its frame counts are the tiny loop's).
    checks = {c["name"]: c for c in saved["canary_checks"]}
    assert set(checks) == {"error_devices", "confidence_ks_vs_reference",
                           "detection_rate_vs_previous", "latency_p95_vs_previous"}, checks
    assert all(c["passed"] for c in checks.values()), checks
    assert "on the reference frames" in checks["detection_rate_vs_previous"]["detail"]
    assert checks["confidence_ks_vs_reference"]["limit"] == 0.30
    assert checks["detection_rate_vs_previous"]["limit"] == 0.30
    # ... after the shipped gate passed it.
    gate = {c["name"]: c for c in saved["gate_checks"]}
    assert gate["golden_loss"]["passed"] and gate["golden_loss"]["limit"] == 1.0, gate
    assert gate["drift_gain"]["limit"] == 2.0, gate
    assert saved["labels_per_recovered_map50_point"] > 0
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "fleet-wide drift alarm" in (out / "report.md").read_text()


def test_the_chain_of_events_is_in_the_real_parts(
        loop: tuple[DemoResult, dict[str, Any], Path]) -> None:
    result, seen, out = loop
    assert result.error is None, result.error
    ids = device_ids(3)
    # Hub: every device streamed, kept frames arrived, and runs the promoted release now.
    assert set(seen["telemetry"]["device_id"]) == set(ids)
    assert seen["samples"], "no kept frames reached the hub"
    new, seed = seen["releases"][0].manifest, seen["releases"][-1].manifest
    assert (new.version, seed.version) == (2, 1)
    assert seen["stable"].release is not None
    assert seen["stable"].release.release_id == new.release_id
    model_sha = next(f.sha256 for f in new.files if f.name == "model.onnx")
    for device in ids:
        status = seen["devices"][device].status
        assert status is not None and status.model_version == model_sha[:12], device
        assert status.release_version == 2
    # Signed: the TUF targets the hub serves name the new release's files.
    assert any(new.release_id in path for path in seen["targets"]["signed"]["targets"])
    # Lineage: the release names the dataset version the labels made.
    assert new.lineage.dataset_version and new.lineage.labelstudio_batches
    # Label Studio: the simulated annotator's annotations are there.
    assert seen["annotations"] >= result.summary.labels_used
    # DVC: a labelled increment committed in git, its data pushed to the remote.
    project = out / "project"
    log = subprocess.run(["git", "log", "--name-only", "--format=%s"], cwd=project,
                         capture_output=True, text=True, check=True).stdout
    assert "data/labelled/" in log and ".dvc" in log
    [increment] = sorted((project / "data" / "labelled").glob("*.dvc"))
    pushed = subprocess.run([str(Path(sys.executable).parent / "dvc"), "status", "--cloud",
                             str(increment.relative_to(project))], cwd=project,
                            capture_output=True, text=True)
    assert pushed.returncode == 0 and "new:" not in pushed.stdout, pushed.stdout + pushed.stderr
