"""The device agent's command line against a real hub: frames in, telemetry and samples at the
hub exactly once; and a video file as the source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edge_runtime.outbox.spool import Spool
from sim.stream import stream
from tests.support.hub import RunningHub

pytestmark = pytest.mark.slow
EDGELOOP = str(Path(sys.executable).parent / "edgeloop")


def test_edge_run_delivers_every_frame_and_its_kept_samples_to_the_hub(
        seed_model: Path, sqlite_hub: RunningHub, tmp_path: Path) -> None:
    token = sqlite_hub.add_device("cam-9")
    result = subprocess.run(
        [EDGELOOP, "edge", "run", "--model", str(seed_model), "--source", "sim:dusk",
         "--max-frames", "30", "--spool", str(tmp_path / "spool"), "--device-id", "cam-9",
         "--hub", sqlite_hub.url, "--token", token],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with sqlite_hub.admin() as admin:
        telemetry = admin.telemetry(device_id="cam-9")
        samples = admin.samples(device_id="cam-9")
        device = next(d for d in admin.devices() if d.device_id == "cam-9")
    assert len(telemetry) == 30 and telemetry["frame_id"].is_unique
    assert samples, "dusk frames are uncertain: some are kept and uploaded"
    assert device.status is not None  # the heartbeat arrived
    assert device.status.model_version == telemetry["model_version"].iloc[0]
    with Spool(tmp_path / "spool" / "cam-9.sqlite") as spool:
        left = spool.stats()
    assert (left.pending_telemetry, left.pending_samples) == (0, 0)  # acknowledged, deleted


def test_edge_run_reads_a_video_file(seed_model: Path, tmp_path: Path) -> None:
    video = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for frame in stream("baseline", seed=4, width=320, frames=12, name="video"):
        writer.write(frame.image)
    writer.release()
    result = subprocess.run(
        [EDGELOOP, "edge", "run", "--model", str(seed_model), "--source", str(video),
         "--spool", str(tmp_path / "spool"), "--device-id", "cam-v"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with Spool(tmp_path / "spool" / "cam-v.sqlite") as spool:
        assert spool.stats().pending_telemetry == 12
