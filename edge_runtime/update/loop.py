"""Model updates beside a running agent: releases are prepared on a thread, swapped between frames.

The heavy part (poll the hub, fetch and verify through TUF, smoke-test, stage) runs on this
module's thread while inference keeps serving the current model. Between frames the agent calls
`UpdateLoop.after_frame`, which activates a staged release, feeds the health check of the model
on trial, and hands back the Detector to serve from the next frame on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge_runtime.contract import UpdateReport
from edge_runtime.detector import Detector, Inference
from edge_runtime.update.config import Staged, UpdaterConfig, UpdateStatus
from edge_runtime.update.policy import (
    DeviceInput,
    Health,
    HealthBudget,
    Phase,
    ReleaseUnavailable,
    SmokeBudget,
    UpdateRefused,
    detection_rate,
)
from edge_runtime.update.smoke import live_frame_of, run_frame
from edge_runtime.update.updater import Updater

log = logging.getLogger(__name__)

MAX_DETAIL_CHARS = 500  # UpdateReport.detail


class UpdateLoopError(ValueError):
    """The update loop was configured wrongly."""


@dataclass(frozen=True)
class UpdateLoopConfig:
    every_s: float = 60.0  # between polls of the hub's assignment
    keep_frames: int = 8  # recent frames kept for the smoke test and a resumed trial's baseline
    rate_window: int = 50  # recent frames the serving model's detection rate is measured on
    join_timeout_s: float = 10.0  # stop() waits this long for a poll in flight

    def __post_init__(self) -> None:
        if not self.every_s > 0 or not self.join_timeout_s > 0:
            raise UpdateLoopError(f"every_s={self.every_s} and join_timeout_s="
                                  f"{self.join_timeout_s} must be positive")
        if self.keep_frames < 1 or self.rate_window < 1:
            raise UpdateLoopError(f"keep_frames={self.keep_frames} and rate_window="
                                  f"{self.rate_window} must be at least 1")


@dataclass(frozen=True)
class Resumed:
    """A model a restart left on trial, and the previous model's detection rate to judge it by."""

    baseline_rate: float | None


def update_report(status: UpdateStatus) -> UpdateReport:
    """The updater's status as the heartbeat carries it."""
    return UpdateReport(
        phase=status.phase.value, release_id=status.release_id, version=status.version,
        target_release=status.target,
        refusal=status.refusal.value if status.refusal is not None else None,
        detail=status.detail[:MAX_DETAIL_CHARS] if status.detail else None, at=status.at)


def open_updater(state_dir: Path, *, hub_url: str, token: str, threads: int = 0,
                 conf: float = 0.25, iou: float = 0.7, smoke: SmokeBudget | None = None,
                 health: HealthBudget | None = None) -> tuple[Updater, Detector]:
    """The device's updater over `state_dir`, recovered from what a crash left, and the model to
    serve now. The device's input is that model's: every release must take the same."""
    config = UpdaterConfig(hub_url=hub_url, token=token, state_dir=state_dir,
                           device=DeviceInput((), 0), threads=threads, conf=conf, iou=iou,
                           smoke=smoke or SmokeBudget(), health=health or HealthBudget())
    updater = Updater(config)
    updater.recover()
    detector = updater.open_active()
    updater.config = replace(config, device=DeviceInput(detector.info.names,
                                                        max(detector.info.imgsz)))
    return updater, detector


class UpdateLoop:
    """Polls and prepares releases on its own thread; the agent swaps models between frames.

    Thread roles: `poll_once` (the loop's thread) moves the updater from idle to a staged
    release and hands it over; `after_frame` (the inference thread) activates it and judges it
    until the updater is idle again. The two never drive the updater at the same time. Give
    it an updater that has `recover()`ed (see `open_updater`).
    """

    def __init__(self, updater: Updater, config: UpdateLoopConfig | None = None, *,
                 on_change: Callable[[], object] | None = None) -> None:
        self.updater = updater
        self.config = config or UpdateLoopConfig()
        if self.config.keep_frames < updater.config.smoke.frames:
            raise UpdateLoopError(f"keep_frames={self.config.keep_frames} is below the smoke "
                                  f"test's {updater.config.smoke.frames} frames")
        self.on_change = on_change  # called on the loop's thread, e.g. to send a heartbeat
        self._lock = threading.Lock()
        self._frames: deque[np.ndarray] = deque(maxlen=self.config.keep_frames)
        self._handoff: Staged | Resumed | None = None
        self._found: deque[bool] = deque(maxlen=self.config.rate_window)  # inference thread
        self._on_trial = False  # inference thread: it feeds the health check
        self._resume = updater.phase is Phase.HEALTH_CHECK  # a restart left a model on trial
        self._halted: str | None = None  # an update failed halfway: no more until a restart
        self._frames_ready = threading.Event()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise UpdateLoopError("update loop already started")
        self._thread = threading.Thread(target=self._run, name="updates", daemon=True)
        self._thread.start()

    def stop(self) -> bool:
        """Ends the thread (after the poll in flight); True once it has."""
        self._stop.set()
        self._frames_ready.set()
        self._changed.set()
        if self._thread is None:
            return True
        self._thread.join(self.config.join_timeout_s)
        return not self._thread.is_alive()

    def report(self) -> UpdateReport:
        return update_report(self.updater.status())

    # -- the inference thread -------------------------------------------------------------------

    def after_frame(self, image: np.ndarray, inference: Inference) -> Detector | None:
        """The frame just served; returns the Detector to serve from the next frame on, if it
        changes (the new model once activated, the previous one after a rollback)."""
        self._found.append(len(inference.detections) > 0)
        with self._lock:
            self._frames.append(image)
            if len(self._frames) == self._frames.maxlen:
                self._frames_ready.set()
        if self._on_trial:
            return self._judge(inference)
        with self._lock:
            handoff, self._handoff = self._handoff, None
        if handoff is None or self._halted:
            return None
        try:
            return self._take(handoff, inference)
        except Exception as error:  # the slots are in doubt: serve on, retry after a restart
            self._halt(f"activating failed: {type(error).__name__}: {error}")
            return None

    def _take(self, handoff: Staged | Resumed, inference: Inference) -> Detector | None:
        if isinstance(handoff, Resumed):  # this frame was served by the model on trial
            self.updater.resume_trial(baseline_rate=handoff.baseline_rate)
            self._on_trial = True
            self._changed.set()
            return self._judge(inference)
        rate = sum(self._found) / len(self._found) if self._found else None
        detector = self.updater.activate(handoff, baseline_rate=rate)
        self._on_trial = True
        self._changed.set()
        log.info("release %s serves on trial (the previous model found parts on %s of "
                 "recent frames)", handoff.manifest.release_id,
                 "?" if rate is None else f"{rate:.0%}")
        return detector

    def _judge(self, inference: Inference) -> Detector | None:
        frame = live_frame_of(len(inference.detections), inference.infer_ms,
                              inference.detections.boxes, inference.embedding)
        try:
            verdict = self.updater.observe(frame)
            if verdict.health is Health.PENDING:
                return None
            self._on_trial = False
            self._changed.set()
            if verdict.health is Health.HEALTHY:
                return None
            log.warning("the model on trial failed its health check and was rolled back: %s",
                        verdict.reason)
            return self.updater.open_active()  # the rollback has already happened
        except Exception as error:
            self._on_trial = False
            self._halt(f"judging the model on trial failed: {type(error).__name__}: {error}")
            return None

    def _halt(self, reason: str) -> None:
        log.exception("updates halted until a restart: %s", reason)
        self._halted = reason
        self._changed.set()

    # -- the loop's thread ----------------------------------------------------------------------

    def _run(self) -> None:
        self._frames_ready.wait()  # the smoke test and a resumed trial run on live frames
        next_poll = time.monotonic()
        while not self._stop.is_set():
            if self._changed.is_set():
                self._changed.clear()
                self._notify()
            if time.monotonic() >= next_poll:
                self._guarded_poll()
                next_poll = time.monotonic() + self.config.every_s
            self._changed.wait(max(0.0, next_poll - time.monotonic()))

    def _guarded_poll(self) -> None:
        # A bug or a disk error must not end the thread; the agent serves on regardless.
        try:
            self.poll_once()
        except Exception:
            log.exception("update poll failed")

    def _notify(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception:
            log.exception("reporting an update failed")

    def poll_once(self) -> None:
        """Prepares the assigned release if it is new (the updater records any refusal)."""
        with self._lock:
            busy = self._handoff is not None
            frames = list(self._frames)
        # The trial ends once the updater has written its outcome: only then may the next start.
        if busy or self._on_trial or self._halted or len(frames) < self.config.keep_frames:
            return  # (the smoke test and a resumed trial's baseline run on these frames)
        if self._resume:
            self._offer_resume(frames)
            return
        if self.updater.phase is not Phase.IDLE:  # a release is on trial
            return
        try:
            release_id = self.updater.poll_assignment()
        except ReleaseUnavailable as error:
            log.warning("cannot poll the assignment: %s", error)
            return
        if release_id is None or self.updater.refused_before(release_id) is not None:
            return  # nothing assigned, or a release that failed here: its record stays
        self.updater.cached_frames = frames
        try:
            staged = self.updater.prepare(release_id)
        except UpdateRefused:
            self._changed.set()
            return
        if staged is not None:
            with self._lock:
                self._handoff = staged

    def _offer_resume(self, frames: list[np.ndarray]) -> None:
        previous = self.updater.open_previous()
        rate = (None if previous is None
                else detection_rate([run_frame(previous, image) for image in frames]))
        with self._lock:
            self._handoff = Resumed(rate)
        self._resume = False
