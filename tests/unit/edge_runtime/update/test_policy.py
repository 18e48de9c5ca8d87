"""The updater's pure decisions: floor, input signature, files, smoke test, health, phases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge_runtime.contract import InputSignature, ModelFile, ReleaseManifest
from edge_runtime.update.policy import (
    MODEL_FILE,
    DeviceInput,
    Event,
    Health,
    HealthBudget,
    InvalidTransition,
    LiveFrame,
    Phase,
    Refusal,
    SignedFile,
    SmokeBudget,
    SmokeRun,
    UpdateRefused,
    check_release,
    check_release_files,
    check_release_size,
    check_version_floor,
    judge_health,
    judge_smoke,
    next_phase,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEVICE = DeviceInput(("nut", "washer", "bolt"), 320)
SHA = "a" * 64


def manifest(version: int = 2, *, classes: tuple[str, ...] = DEVICE.classes, imgsz: int = 320,
             files: dict[str, tuple[str, int]] | None = None,
             expires_at: datetime | None = None) -> ReleaseManifest:
    files = files if files is not None else {MODEL_FILE: (SHA, 100)}
    return ReleaseManifest(
        release_id=f"r{version}", version=version, created_at=T0, expires_at=expires_at,
        input=InputSignature(imgsz=imgsz, classes=list(classes)),
        files=[ModelFile(name=n, sha256=s, size=size) for n, (s, size) in files.items()])


def signed(**files: tuple[str, int]) -> dict[str, SignedFile]:
    files = files or {"model.onnx": (SHA, 100)}
    return {n.replace("_", "."): SignedFile(n.replace("_", "."), s, size)
            for n, (s, size) in files.items()}


def refusal_of(call: object) -> UpdateRefused:
    with pytest.raises(UpdateRefused) as refused:
        call()  # type: ignore[operator]
    return refused.value


@pytest.mark.parametrize(("version", "floor", "ok"), [(3, 2, True), (2, 2, True), (1, 2, False)])
def test_versions_below_the_floor_are_refused(version: int, floor: int, ok: bool) -> None:
    if ok:
        check_version_floor(manifest(version), floor)
    else:
        error = refusal_of(lambda: check_version_floor(manifest(version), floor))
        assert error.refusal is Refusal.BELOW_FLOOR
        assert "version 1, below this device's floor 2" in str(error)


@pytest.mark.parametrize(("classes", "imgsz"), [
    (("nut", "washer"), 320),
    (("washer", "nut", "bolt"), 320),  # same names, another index order
    (("nut", "washer", "bolt"), 640),
])
def test_another_input_signature_is_refused(classes: tuple[str, ...], imgsz: int) -> None:
    error = refusal_of(lambda: check_release(manifest(classes=classes, imgsz=imgsz), signed(),
                                             floor=0, device=DEVICE, now=T0))
    assert error.refusal is Refusal.INPUT_MISMATCH


def test_matching_release_passes_every_check() -> None:
    check_release(manifest(), signed(), floor=1, device=DEVICE, now=T0)


def test_expired_release_is_refused() -> None:
    error = refusal_of(lambda: check_release(manifest(expires_at=T0), signed(), floor=0,
                                             device=DEVICE, now=T0 + timedelta(seconds=1)))
    assert error.refusal is Refusal.RELEASE_EXPIRED


@pytest.mark.parametrize(("listed", "present", "refusal"), [
    ({MODEL_FILE: (SHA, 100), "labels.txt": (SHA, 5)}, {"model_onnx": (SHA, 100)},
     Refusal.MISSING_FILE),
    ({MODEL_FILE: (SHA, 100)}, {"model_onnx": (SHA, 100), "extra_bin": (SHA, 5)},
     Refusal.EXTRA_FILE),
    ({MODEL_FILE: (SHA, 100)}, {"model_onnx": ("b" * 64, 100)}, Refusal.HASH),
    ({MODEL_FILE: (SHA, 100)}, {"model_onnx": (SHA, 101)}, Refusal.HASH),
    ({"weights.onnx": (SHA, 100)}, {"weights_onnx": (SHA, 100)}, Refusal.MISSING_FILE),
])
def test_manifest_files_must_be_exactly_the_signed_files(listed: dict, present: dict,
                                                         refusal: Refusal) -> None:
    error = refusal_of(lambda: check_release_files(manifest(files=listed), signed(**present)))
    assert error.refusal is refusal


def test_release_over_the_size_limit_is_refused() -> None:
    check_release_size(signed().values(), 100)
    assert refusal_of(lambda: check_release_size(signed().values(), 99)).refusal is \
        Refusal.TOO_LARGE


def smoke(**fields: object) -> SmokeRun:
    base: dict[str, object] = {"classes": DEVICE.classes, "imgsz": 320,
                               "latencies_ms": (10.0, 12.0, 11.0)}
    return SmokeRun(**(base | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(("run", "refusal", "words"), [
    (smoke(load_error="not an onnx file"), Refusal.SMOKE_TEST, "does not load"),
    (smoke(nonfinite_frames=1), Refusal.SMOKE_TEST, "NaN"),
    (smoke(latencies_ms=(3000.0, 2500.0, 2600.0)), Refusal.SMOKE_TEST, "latency"),
    (smoke(latencies_ms=(10.0,)), Refusal.SMOKE_TEST, "ran 1 frames of 3"),
    (smoke(run_errors=("boom",), latencies_ms=(1.0, 1.0)), Refusal.SMOKE_TEST, "boom"),
    (smoke(classes=("nut", "washer", "screw")), Refusal.INPUT_MISMATCH, "screw"),
])
def test_smoke_test_failures_name_their_reason(run: SmokeRun, refusal: Refusal,
                                               words: str) -> None:
    error = refusal_of(lambda: judge_smoke(run, SmokeBudget(frames=3), DEVICE))
    assert error.refusal is refusal
    assert words in str(error)


def test_a_model_that_loads_runs_in_time_and_stays_finite_passes_its_smoke_test() -> None:
    judge_smoke(smoke(), SmokeBudget(frames=3), DEVICE)


BUDGET = HealthBudget(frames=4, max_latency_ms=100.0)


def test_health_is_pending_until_enough_frames() -> None:
    frames = [LiveFrame(2, 10.0)] * 3
    assert judge_health(frames, BUDGET, 1.0).health is Health.PENDING
    assert judge_health([*frames, LiveFrame(1, 10.0)], BUDGET, 1.0).health is Health.HEALTHY


def test_a_model_that_finds_nothing_where_the_old_one_did_is_unhealthy() -> None:
    verdict = judge_health([LiveFrame(0, 10.0)] * 4, BUDGET, baseline_rate=1.0)
    assert verdict.health is Health.FAILED
    assert "0% of live frames, the previous model on 100%" in verdict.reason


def test_an_empty_line_is_no_reason_to_roll_back() -> None:
    assert judge_health([LiveFrame(0, 10.0)] * 4, BUDGET, 0.0).health is Health.HEALTHY


def test_errors_and_nan_fail_the_health_check_at_once() -> None:
    assert judge_health([LiveFrame(0, 0.0, error="boom")], BUDGET, None).health is Health.FAILED
    assert judge_health([LiveFrame(1, 5.0, finite=False)], BUDGET, None).health is Health.FAILED


def test_a_slow_model_is_unhealthy() -> None:
    verdict = judge_health([LiveFrame(1, 500.0)] * 4, BUDGET, 1.0)
    assert verdict.health is Health.FAILED and "latency" in verdict.reason


def test_the_update_walks_its_phases_in_order() -> None:
    phase = next_phase(Phase.IDLE, Event.ASSIGNED)
    seen = [phase]
    while phase is not Phase.HEALTH_CHECK:
        phase = next_phase(phase, Event.ACCEPTED)
        seen.append(phase)
    assert seen == [Phase.CHECKING, Phase.DOWNLOADING, Phase.VERIFYING, Phase.STAGING,
                    Phase.SWAPPING, Phase.HEALTH_CHECK]
    assert next_phase(Phase.HEALTH_CHECK, Event.HEALTHY) is Phase.IDLE
    assert next_phase(Phase.HEALTH_CHECK, Event.UNHEALTHY) is Phase.ROLLING_BACK
    assert next_phase(Phase.ROLLING_BACK, Event.ROLLED_BACK) is Phase.IDLE


@pytest.mark.parametrize("phase", [Phase.CHECKING, Phase.DOWNLOADING, Phase.VERIFYING,
                                   Phase.STAGING])
def test_a_refusal_before_the_swap_returns_to_idle(phase: Phase) -> None:
    assert next_phase(phase, Event.REFUSED) is Phase.IDLE


@pytest.mark.parametrize(("phase", "event"), [
    (Phase.IDLE, Event.ACCEPTED),
    (Phase.SWAPPING, Event.REFUSED),  # after the floor moved, only a health verdict undoes it
    (Phase.HEALTH_CHECK, Event.REFUSED),
    (Phase.DOWNLOADING, Event.HEALTHY),
    (Phase.CHECKING, Event.ASSIGNED),
])
def test_impossible_events_are_refused(phase: Phase, event: Event) -> None:
    with pytest.raises(InvalidTransition):
        next_phase(phase, event)
