"""The device agent updates its model while it runs, against a real hub serving signed releases:
a good release is swapped in without losing a frame; a release that fails its health check on
live frames is rolled back by the device itself, and the hub's device status says why; a model a
restart left on trial is judged by the running agent."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from edge_runtime.contract import MODEL_FILE, DeviceStatus, ReleaseManifest
from edge_runtime.update.policy import HealthBudget, Phase
from edge_runtime.update.updater import Updater
from flows.release.tuf import ReleaseRepository
from tests.support.hub import RunningHub
from tests.support.updater import (
    live_frames,
    manifest_for,
    model_variant,
    scaled_model,
    updater_config,
)

pytestmark = pytest.mark.slow

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
DEVICE_ID = "cam-u"
FRAMES = 160  # a poll, a download, a smoke test and a health check take ~20 of them here


@pytest.fixture(scope="module")
def models(seed_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """v1, v2: the seed model under their own version tags; blind: finds nothing."""
    folder = tmp_path_factory.mktemp("releases")
    built = {tag: model_variant(seed_model, folder / f"{tag}.onnx", tag) for tag in ("v1", "v2")}
    built["blind"] = scaled_model(seed_model, folder / "blind.onnx", "blind", 0.0)
    return built


@dataclass
class Line:
    """A hub, the release repository that signs for it, and a device on the canary channel."""

    hub: RunningHub
    repo: ReleaseRepository
    token: str
    state: Path
    spool: Path

    def publish(self, release_id: str, version: int, model: Path) -> ReleaseManifest:
        """As the release flow does: hub, then sign, then serve the signed metadata, assign."""
        files = {MODEL_FILE: model}
        manifest = manifest_for(release_id, version, files)
        with self.hub.admin() as admin:
            admin.create_release(manifest, files)
            self.repo.add_release(manifest, files)
            admin.publish_tuf_metadata(self.repo.metadata_files())
            admin.assign("canary", release_id)
        return manifest

    def provision(self, model: Path, release_id: str, version: int) -> None:
        result = edgeloop("edge", "provision", "--state", str(self.state), "--trusted-root",
                          str(self.repo.metadata_dir / "1.root.json"), "--model", str(model),
                          "--release-id", release_id, "--version", str(version))
        assert result.returncode == 0, result.stderr
        assert f"release {release_id} v{version}" in result.stdout

    def run(self, frames: int) -> subprocess.CompletedProcess[str]:
        return edgeloop("edge", "run", "--state", str(self.state), "--source", "sim:baseline",
                        "--max-frames", str(frames), "--spool", str(self.spool),
                        "--device-id", DEVICE_ID, "--hub", self.hub.url, "--token", self.token,
                        "--update-every", "1", "--threads", "1", "--log-every", "2")

    def status(self) -> DeviceStatus:
        with self.hub.admin() as admin:
            device = next(d for d in admin.devices() if d.device_id == DEVICE_ID)
        assert device.status is not None, "no heartbeat arrived"
        return device.status

    def telemetry(self) -> pd.DataFrame:
        with self.hub.admin() as admin:
            return admin.telemetry(device_id=DEVICE_ID).sort_values("frame_id")


def edgeloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EDGELOOP, *args], capture_output=True, text=True, timeout=240)


@pytest.fixture
def line(sqlite_hub: RunningHub, tmp_path: Path) -> Iterator[Line]:
    repo = ReleaseRepository.create(tmp_path / "tuf", tmp_path / "keys")
    yield Line(sqlite_hub, repo, sqlite_hub.add_device(DEVICE_ID, "canary"),
               tmp_path / "device", tmp_path / "spool")


def test_a_new_release_is_swapped_in_while_inference_keeps_running(
        line: Line, models: dict[str, Path]) -> None:
    line.provision(models["v1"], "v1", 1)
    line.publish("v2", 2, models["v2"])
    result = line.run(FRAMES)
    assert result.returncode == 0, result.stderr
    telemetry = line.telemetry()
    assert len(telemetry) == FRAMES and telemetry["frame_id"].is_unique, "a frame was lost"
    served = telemetry["model_version"].tolist()
    assert served[0] == "v1" and served[-1] == "v2", result.stderr
    assert served == sorted(served), "the model changed once, between two frames"
    status = line.status()
    assert (status.model_version, status.release_version) == ("v2", 2)
    assert status.update is not None
    assert (status.update.phase, status.update.release_id, status.update.version,
            status.update.refusal) == ("idle", "v2", 2, None)


def test_a_release_failing_its_health_check_is_rolled_back_and_the_hub_says_why(
        line: Line, models: dict[str, Path]) -> None:
    line.provision(models["v2"], "v2", 2)
    line.publish("v3", 3, models["blind"])
    result = line.run(FRAMES)
    assert result.returncode == 0, result.stderr
    telemetry = line.telemetry()
    assert len(telemetry) == FRAMES and telemetry["frame_id"].is_unique, "a frame was lost"
    served = telemetry["model_version"].tolist()
    # The blind model served exactly the frames it was judged on, then the device went back.
    assert served.count("blind") == HealthBudget().frames, result.stderr
    assert served[0] == "v2" and served[-1] == "v2"
    status = line.status()
    assert (status.model_version, status.release_version) == ("v2", 2)
    update = status.update
    assert update is not None
    assert (update.phase, update.release_id, update.target_release, update.refusal) == (
        "idle", "v2", "v3", "health_check")
    assert update.detail is not None and "detected parts on 0% of live frames" in update.detail
    assert update.at is not None


def test_a_model_left_on_trial_by_a_restart_is_judged_by_the_running_agent(
        line: Line, models: dict[str, Path]) -> None:
    line.provision(models["v2"], "v2", 2)
    line.publish("v3", 3, models["blind"])
    # The device swapped v3 in and stopped before judging it (a power cut, say).
    updater = Updater(updater_config(line.state, line.hub.url, token=line.token),
                      cached_frames=live_frames(3))
    updater.recover()
    staged = updater.prepare("v3")
    assert staged is not None
    updater.activate(staged, baseline_rate=1.0)
    assert updater.slots.pointer().trial

    result = line.run(FRAMES // 2)
    assert result.returncode == 0, result.stderr
    served = line.telemetry()["model_version"].tolist()
    assert served[0] == "blind" and served[-1] == "v2", result.stderr
    update = line.status().update
    assert update is not None
    assert (update.phase, update.release_id, update.target_release, update.refusal) == (
        Phase.IDLE.value, "v2", "v3", "health_check")
    assert update.detail is not None and "the previous model on" in update.detail
