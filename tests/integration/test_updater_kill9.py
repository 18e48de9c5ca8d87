"""An updater killed with SIGKILL at each step of an update serves the old or the new model,
never a partial one, and a restart finishes the update."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.contract import MODEL_FILE
from edge_runtime.detector import Detector
from edge_runtime.update.policy import Phase, Refusal
from edge_runtime.update.slots import Slot, SlotStore
from edge_runtime.update.updater import Updater
from tests.support.procs import UPDATER
from tests.support.updater import TOKEN, build_models, live_frames, rig

pytestmark = pytest.mark.slow

PAUSE_TIMEOUT_S = 120.0

# Where each kill lands, what must serve right after it, and what it leaves behind.
KILLS = [
    (Phase.DOWNLOADING, "r1", "download"),
    (Phase.VERIFYING, "r1", "download"),
    (Phase.STAGING, "r1", "slots/.staging-b"),
    (Phase.SWAPPING, "r1", None),
    (Phase.HEALTH_CHECK, "r2", None),
]


@pytest.fixture(scope="module")
def models(seed_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_models(seed_model, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[np.ndarray], Path]:
    images = live_frames(8)
    path = tmp_path_factory.mktemp("frames") / "frames.npy"
    np.save(path, np.stack(images))
    return images, path


def kill_at(phase: Phase, state_dir: Path, hub_url: str, frames_path: Path,
            repo_root: Path) -> None:
    """Runs the helper until it reports `phase`, then kills it -9."""
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    errors = state_dir.parent / f"helper-{phase.value}.err"
    with errors.open("w") as stderr:  # a file, so a chatty helper never blocks on a full pipe
        proc = subprocess.Popen(
            [sys.executable, str(UPDATER), str(state_dir), hub_url, TOKEN, "r2",
             str(frames_path), phase.value], cwd=repo_root, env=env, stdout=subprocess.PIPE,
            stderr=stderr, text=True)
        assert proc.stdout is not None
        try:
            ready, _, _ = select.select([proc.stdout], [], [], PAUSE_TIMEOUT_S)
            line = proc.stdout.readline() if ready else ""
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            proc.stdout.close()
    assert line == f"paused {phase.value}\n", (
        f"helper said {line!r}; stderr: {errors.read_text()[-2000:]}")


def assert_serves_a_whole_model(state_dir: Path, release_id: str) -> None:
    """The pointer names a slot whose every file matches its hash, and the model loads."""
    slots = SlotStore(state_dir)
    pointer = slots.pointer()
    assert pointer.content.release_id == release_id
    assert slots.content(pointer.slot, verify=True) == pointer.content
    Detector(slots.model_path(pointer.slot), threads=1)


@pytest.mark.parametrize(("phase", "serving", "leftover"), KILLS,
                         ids=[phase.value for phase, _, _ in KILLS])
def test_kill_9_at_each_step_leaves_a_whole_model_and_the_restart_finishes(
        phase: Phase, serving: str, leftover: str | None, tmp_path: Path,
        models: dict[str, Path], frames: tuple[list[np.ndarray], Path], repo_root: Path) -> None:
    images, frames_path = frames
    with rig(tmp_path, models) as device:
        device.publish("r2", 2, "r2")
        kill_at(phase, device.state_dir, device.server.url, frames_path, repo_root)

        assert_serves_a_whole_model(device.state_dir, serving)
        if leftover is not None:
            assert (device.state_dir / leftover).exists(), "the kill landed mid-step"

        updater = Updater(device.config(), cached_frames=images[:2])
        recovery = updater.recover()
        assert recovery.pointer.content.release_id == serving
        assert recovery.pointer.trial is (phase is Phase.HEALTH_CHECK)
        assert not updater.download_dir.exists()
        assert not list(updater.slots.slots_dir.glob(".staging-*"))

        status = updater.update("r2", images)
        assert (status.release_id, status.version, status.trial, status.refusal) == (
            "r2", 2, False, None)
        assert_serves_a_whole_model(device.state_dir, "r2")
        assert updater.slots.floor() == 2
        previous = updater.slots.content(Slot.A, verify=True)
        assert previous is not None and previous.release_id == "r1"  # still there to roll back to
        cached = {p.name for p in updater.cache_dir.iterdir()}
        assert cached <= {c.files[MODEL_FILE].sha256 for c in
                          (updater.slots.content(s) for s in Slot) if c is not None}


def test_kill_9_again_during_the_resumed_health_check_still_ends_on_a_judged_model(
        tmp_path: Path, models: dict[str, Path], frames: tuple[list[np.ndarray], Path],
        repo_root: Path) -> None:
    images, frames_path = frames
    with rig(tmp_path, models) as device:
        device.publish("r2", 2, "blind")  # it will fail its health check once judged
        for _ in range(2):  # the restart resumes the health check, and is killed in it too
            kill_at(Phase.HEALTH_CHECK, device.state_dir, device.server.url, frames_path,
                    repo_root)
            assert_serves_a_whole_model(device.state_dir, "r2")
        updater = Updater(device.config(), cached_frames=images[:2])
        assert updater.recover().pointer.trial
        status = updater.update("r2", images)
        assert (status.release_id, status.refusal) == ("r1", Refusal.HEALTH_CHECK)
        assert_serves_a_whole_model(device.state_dir, "r1")
        assert not updater.slots.slot_dir(Slot.B).exists()
