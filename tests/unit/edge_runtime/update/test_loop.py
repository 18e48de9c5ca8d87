"""The update loop between the agent and the updater: what serves after each frame, what the
heartbeat carries, and when a release is (not) prepared. The updater here is an in-memory
stand-in that keeps the real phase machine and health judgement; models are named strings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edge_runtime.contract import DeviceStatus
from edge_runtime.update.config import Staged, UpdateStatus
from edge_runtime.update.loop import (
    UpdateLoop,
    UpdateLoopConfig,
    UpdateLoopError,
    update_report,
)
from edge_runtime.update.policy import (
    Event,
    Health,
    HealthBudget,
    HealthCheckFailed,
    LiveFrame,
    Phase,
    Refusal,
    SmokeBudget,
    UpdateRefused,
    judge_health,
    next_phase,
)

WHEN = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEEP = 3  # frames the loop keeps for the smoke test


@dataclass
class InMemoryUpdater:
    """The Updater's contract with the loop: slots are a pointer to a named model."""

    serving: str = "v1"
    previous: str | None = None
    assigned: str | None = "v2"
    phase: Phase = Phase.IDLE
    blocked: dict[str, Refusal] = field(default_factory=dict)
    outcome: dict[str, Any] = field(default_factory=dict)
    baseline: float | None = None
    live: list[LiveFrame] = field(default_factory=list)
    cached_frames: list[np.ndarray] = field(default_factory=list)
    config: Any = field(default_factory=lambda: SimpleNamespace(
        smoke=SmokeBudget(frames=2), health=HealthBudget(frames=4)))

    def poll_assignment(self) -> str | None:
        return self.assigned

    def refused_before(self, release_id: str) -> Refusal | None:
        return self.blocked.get(release_id)

    def prepare(self, release_id: str) -> Staged | None:
        self.phase = next_phase(self.phase, Event.ASSIGNED)
        if release_id == self.serving:
            self.phase = next_phase(self.phase, Event.UP_TO_DATE)
            return None
        if release_id in self.blocked:
            self.phase = next_phase(self.phase, Event.REFUSED)
            self.outcome = {"release_id": release_id, "refusal": self.blocked[release_id],
                            "detail": f"release {release_id} failed here before"}
            raise UpdateRefused(self.outcome["detail"], self.blocked[release_id])
        for _ in range(3):  # downloading, verifying, staging
            self.phase = next_phase(self.phase, Event.ACCEPTED)
        assert len(self.cached_frames) >= self.config.smoke.frames, "smoke test without frames"
        return Staged(SimpleNamespace(release_id=release_id), None)  # type: ignore[arg-type]

    def activate(self, staged: Staged, *, baseline_rate: float | None = None) -> str:
        self.phase = next_phase(next_phase(self.phase, Event.ACCEPTED), Event.ACCEPTED)
        self.previous, self.serving = self.serving, staged.manifest.release_id
        self.live, self.baseline = [], baseline_rate
        return self.serving

    def resume_trial(self, *, baseline_rate: float | None) -> None:
        self.live, self.baseline = [], baseline_rate

    def observe(self, frame: LiveFrame) -> Any:
        self.live.append(frame)
        verdict = judge_health(self.live, self.config.health, self.baseline)
        if verdict.health is Health.HEALTHY:
            self.phase = next_phase(self.phase, Event.HEALTHY)
            self.outcome = {"release_id": self.serving}
        elif verdict.health is Health.FAILED:
            self.phase = next_phase(next_phase(self.phase, Event.UNHEALTHY), Event.ROLLED_BACK)
            failed = self.serving
            self.serving, self.previous = self.previous or "?", None
            self.blocked[failed] = Refusal.HEALTH_CHECK
            self.outcome = {"release_id": failed, "refusal": Refusal.HEALTH_CHECK,
                            "detail": str(HealthCheckFailed(verdict.reason).detail)}
        return verdict

    def open_active(self) -> str:
        return self.serving

    def open_previous(self) -> None:
        return None

    def status(self) -> UpdateStatus:
        return UpdateStatus(self.phase, self.serving, int(self.serving[1:]), False,
                            target=self.outcome.get("release_id"),
                            refusal=self.outcome.get("refusal"),
                            detail=self.outcome.get("detail"), at=WHEN)


class Detections(SimpleNamespace):
    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def frame(found: int) -> Any:
    """What the loop reads of a frame's Inference: its boxes, network time and embedding."""
    return SimpleNamespace(detections=Detections(boxes=np.full((found, 4), 10.0, np.float32)),
                           infer_ms=5.0, embedding=None)


IMAGE = np.zeros((8, 8, 3), np.uint8)


def loop_over(updater: InMemoryUpdater) -> UpdateLoop:
    return UpdateLoop(updater, UpdateLoopConfig(every_s=1.0, keep_frames=KEEP))  # type: ignore[arg-type]


def serve(loop: UpdateLoop, found: list[int]) -> list[Any]:
    """Frames through the loop; what it swapped to after each (None: no change)."""
    return [loop.after_frame(IMAGE, frame(n)) for n in found]


def test_a_staged_release_serves_from_the_next_frame_and_is_confirmed_on_live_frames() -> None:
    updater = InMemoryUpdater()
    loop = loop_over(updater)
    assert serve(loop, [1, 1, 0]) == [None] * 3
    loop.poll_once()
    assert updater.phase is Phase.STAGING and updater.serving == "v1"  # inference unaffected
    assert serve(loop, [1]) == ["v2"]
    assert updater.baseline == pytest.approx(3 / 4)  # the old model's share of recent frames
    assert serve(loop, [1, 1, 1, 1]) == [None] * 4
    assert (updater.phase, updater.serving) == (Phase.IDLE, "v2")
    report = loop.report()
    assert (report.phase, report.release_id, report.refusal) == ("idle", "v2", None)


def test_a_release_that_finds_nothing_is_rolled_back_and_the_old_model_serves_again() -> None:
    updater = InMemoryUpdater()
    loop = loop_over(updater)
    serve(loop, [1, 1, 1])
    loop.poll_once()
    assert serve(loop, [2]) == ["v2"]
    assert serve(loop, [0, 0, 0, 0]) == [None, None, None, "v1"]
    report = loop.report()
    assert (report.phase, report.release_id, report.target_release, report.refusal) == (
        "idle", "v1", "v2", "health_check")
    assert report.detail is not None and "detected parts on 0%" in report.detail


def test_a_release_that_failed_here_is_not_fetched_again_and_its_reason_stays() -> None:
    updater = InMemoryUpdater(blocked={"v2": Refusal.HEALTH_CHECK},
                              outcome={"release_id": "v2", "refusal": Refusal.HEALTH_CHECK,
                                       "detail": "detected parts on 0% of live frames"})
    loop = loop_over(updater)
    serve(loop, [1, 1, 1])
    loop.poll_once()
    assert serve(loop, [1]) == [None]
    assert updater.phase is Phase.IDLE
    assert loop.report().detail == "detected parts on 0% of live frames"


def test_nothing_is_prepared_before_the_smoke_test_has_live_frames() -> None:
    updater = InMemoryUpdater()
    loop = loop_over(updater)
    serve(loop, [1] * (KEEP - 1))
    loop.poll_once()
    assert updater.phase is Phase.IDLE
    serve(loop, [1])
    loop.poll_once()
    assert updater.phase is Phase.STAGING and len(updater.cached_frames) == KEEP


def test_a_model_left_on_trial_by_a_restart_is_judged_on_the_frames_it_serves() -> None:
    updater = InMemoryUpdater(serving="v2", previous="v1", phase=Phase.HEALTH_CHECK)
    loop = loop_over(updater)
    serve(loop, [1, 1, 1])  # served, not judged yet: the baseline comes first
    assert updater.live == []
    loop.poll_once()
    assert serve(loop, [1, 1, 1, 1]) == [None] * 4
    assert (updater.phase, updater.serving) == (Phase.IDLE, "v2")


def test_the_heartbeat_carries_a_rollback_and_its_reason() -> None:
    status = UpdateStatus(Phase.IDLE, "v2", 2, False, target="v3", refusal=Refusal.HEALTH_CHECK,
                          detail="detected parts on 0% of live frames " * 30, at=WHEN)
    report = update_report(status)
    assert (report.release_id, report.version, report.target_release, report.refusal) == (
        "v2", 2, "v3", "health_check")
    assert report.detail is not None and len(report.detail) == 500
    heartbeat = DeviceStatus(device_id="cam-1", sent_at=WHEN, model_version="v2",
                             release_version=2, uptime_s=1.0, frames_seen=10, spool_telemetry=0,
                             spool_samples=0, spool_bytes=0, dropped={}, update=report)
    assert DeviceStatus.model_validate_json(heartbeat.model_dump_json()) == heartbeat


def test_a_heartbeat_from_a_device_without_the_updater_still_validates() -> None:
    old = ('{"device_id": "cam-1", "sent_at": "2026-11-28T12:00:00Z", "model_version": "m1", '
           '"uptime_s": 3, "frames_seen": 1, "spool_telemetry": 0, "spool_samples": 0, '
           '"spool_bytes": 0, "dropped": {}, "last_error": null}')
    assert DeviceStatus.model_validate_json(old).update is None


@pytest.mark.parametrize("fields", [{"every_s": 0}, {"keep_frames": 0}, {"rate_window": 0},
                                    {"join_timeout_s": -1}])
def test_a_half_built_loop_configuration_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(UpdateLoopError):
        UpdateLoopConfig(**fields)  # type: ignore[arg-type]


def test_keeping_fewer_frames_than_the_smoke_test_runs_on_is_refused() -> None:
    with pytest.raises(UpdateLoopError, match="smoke test"):
        UpdateLoop(InMemoryUpdater(), UpdateLoopConfig(keep_frames=1))  # type: ignore[arg-type]
