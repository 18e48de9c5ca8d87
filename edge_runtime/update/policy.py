"""The device updater's decisions, as plain functions over plain data (no disk, no network).

What a release must satisfy before it may run here (version floor, input signature, the signed
file list), whether a staged model passed its smoke test, whether a live model is healthy, and
which phase of an update follows which. `edge_runtime.update.updater` does the I/O around them.
"""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from edge_runtime.contract import MODEL_FILE, InputSignature, ReleaseManifest


class Refusal(enum.StrEnum):
    """Why an update was refused or undone; the heartbeat carries it."""

    SIGNATURE = "signature"  # metadata not signed by the trusted keys (unknown or revoked key)
    HASH = "hash"  # a file's bytes differ from the signed hash or length (flipped, truncated)
    TOO_LARGE = "too_large"  # a download ran past its signed length
    EXPIRED = "expired"  # signed metadata past its expiry (a freeze attack or a stale repository)
    METADATA_ROLLBACK = "metadata_rollback"  # signed metadata older than what the device has seen
    REPOSITORY = "repository"  # any other verification failure of the signed metadata
    UNAVAILABLE = "unavailable"  # the hub or the network failed; nothing was judged
    NOT_A_TARGET = "not_a_target"  # the release is not a signed target
    MANIFEST = "manifest"  # the signed manifest is unreadable or disagrees with itself
    MISSING_FILE = "missing_file"  # the manifest lists a file that is not signed or not served
    EXTRA_FILE = "extra_file"  # a signed file of the release that the manifest does not list
    RELEASE_EXPIRED = "release_expired"  # the manifest's own expires_at has passed
    BELOW_FLOOR = "below_floor"  # a release older than the newest this device ever activated
    INPUT_MISMATCH = "input_mismatch"  # the model does not take what this device feeds it
    SMOKE_TEST = "smoke_test"  # the staged model did not load, run, keep time or stay finite
    HEALTH_CHECK = "health_check"  # the activated model failed on live frames: rolled back


class UpdateRefused(Exception):
    """An update that must not go ahead (or was undone); `refusal` names why."""

    refusal: Refusal = Refusal.REPOSITORY

    def __init__(self, detail: str, refusal: Refusal | None = None) -> None:
        super().__init__(detail)
        if refusal is not None:
            self.refusal = refusal
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.refusal.value}: {self.detail}"


class VerificationFailed(UpdateRefused):
    """The signed metadata or a downloaded file did not verify."""


class ReleaseUnavailable(UpdateRefused):
    """The release could not be fetched (network, hub); retry later."""

    refusal = Refusal.UNAVAILABLE


class ReleaseFilesMismatch(UpdateRefused):
    """The manifest's files and the signed files of the release are not the same set."""

    refusal = Refusal.MANIFEST


class VersionBelowFloor(UpdateRefused):
    refusal = Refusal.BELOW_FLOOR


class ReleaseExpired(UpdateRefused):
    refusal = Refusal.RELEASE_EXPIRED


class InputMismatch(UpdateRefused):
    refusal = Refusal.INPUT_MISMATCH


class SmokeTestFailed(UpdateRefused):
    refusal = Refusal.SMOKE_TEST


class HealthCheckFailed(UpdateRefused):
    refusal = Refusal.HEALTH_CHECK


# -- what a release must satisfy --------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInput:
    """What this device feeds its model: the class list (in index order) and the input size."""

    classes: tuple[str, ...]
    imgsz: int


@dataclass(frozen=True)
class SignedFile:
    """A file of a release as the verified TUF targets metadata lists it."""

    name: str
    sha256: str
    length: int


def check_version_floor(manifest: ReleaseManifest, floor: int) -> None:
    """Refuse a release older than the newest one this device ever activated."""
    if manifest.version < floor:
        raise VersionBelowFloor(f"release {manifest.release_id} has version {manifest.version}, "
                                f"below this device's floor {floor}")


def check_not_expired(manifest: ReleaseManifest, now: datetime) -> None:
    if manifest.expires_at is not None and manifest.expires_at <= now:
        raise ReleaseExpired(f"release {manifest.release_id} expired at "
                             f"{manifest.expires_at.isoformat()}")


def check_input_signature(signature: InputSignature, device: DeviceInput) -> None:
    """Refuse a model whose classes (names and order) or input size differ from the device's."""
    if tuple(signature.classes) != device.classes:
        raise InputMismatch(f"model classes {list(signature.classes)} differ from this device's "
                            f"{list(device.classes)}")
    if signature.imgsz != device.imgsz:
        raise InputMismatch(f"model input size {signature.imgsz} differs from this device's "
                            f"{device.imgsz}")


def check_release_files(manifest: ReleaseManifest, signed: Mapping[str, SignedFile]) -> None:
    """The manifest's files must be exactly the release's signed files, hash for hash.

    `signed` maps file name to what the verified targets metadata lists under the release.
    """
    listed = {f.name: f for f in manifest.files}
    if MODEL_FILE not in listed:
        raise ReleaseFilesMismatch(f"release {manifest.release_id} has no {MODEL_FILE}",
                                   Refusal.MISSING_FILE)
    missing = sorted(set(listed) - set(signed))
    if missing:
        raise ReleaseFilesMismatch(f"release {manifest.release_id} lists unsigned files "
                                   f"{missing}", Refusal.MISSING_FILE)
    extra = sorted(set(signed) - set(listed))
    if extra:
        raise ReleaseFilesMismatch(f"release {manifest.release_id} has signed files its "
                                   f"manifest does not list: {extra}", Refusal.EXTRA_FILE)
    for name, entry in listed.items():
        target = signed[name]
        if (entry.sha256, entry.size) != (target.sha256, target.length):
            raise ReleaseFilesMismatch(
                f"{name}: manifest says sha256 {entry.sha256[:12]}.. {entry.size} bytes, the "
                f"signed target {target.sha256[:12]}.. {target.length} bytes", Refusal.HASH)


def check_release_size(signed: Iterable[SignedFile], max_bytes: int) -> None:
    """Refuse a release larger than the device accepts, before a byte of it is downloaded."""
    total = sum(f.length for f in signed)
    if total > max_bytes:
        raise UpdateRefused(f"release files total {total} bytes, over the limit of {max_bytes}",
                            Refusal.TOO_LARGE)


def check_release(manifest: ReleaseManifest, signed: Mapping[str, SignedFile], *, floor: int,
                  device: DeviceInput, now: datetime) -> None:
    """Every check a release passes before anything is downloaded."""
    check_release_files(manifest, signed)
    check_not_expired(manifest, now)
    check_version_floor(manifest, floor)
    check_input_signature(manifest.input, device)


# -- smoke test and health check --------------------------------------------------------------


class BudgetError(ValueError):
    """A smoke-test or health-check limit that cannot be met or means nothing."""


@dataclass(frozen=True)
class SmokeBudget:
    frames: int = 3  # cached frames the staged model runs on
    max_latency_ms: float = 2000.0  # median network time per frame (a loaded 2-core box)

    def __post_init__(self) -> None:
        if self.frames < 1 or not self.max_latency_ms > 0:
            raise BudgetError(f"frames={self.frames} must be at least 1 and max_latency_ms="
                              f"{self.max_latency_ms} positive")


@dataclass(frozen=True)
class SmokeRun:
    """What the staged model did on the cached frames (load_error set when it did not load)."""

    load_error: str | None = None
    classes: tuple[str, ...] = ()
    imgsz: int = 0
    latencies_ms: tuple[float, ...] = ()
    nonfinite_frames: int = 0  # frames whose raw outputs held NaN or infinity
    run_errors: tuple[str, ...] = ()


def judge_smoke(run: SmokeRun, budget: SmokeBudget, device: DeviceInput) -> None:
    """Raise SmokeTestFailed (or InputMismatch) unless the staged model is fit to activate."""
    if run.load_error is not None:
        raise SmokeTestFailed(f"the model does not load: {run.load_error}")
    check_input_signature(InputSignature(imgsz=run.imgsz, classes=list(run.classes)), device)
    if run.run_errors:
        raise SmokeTestFailed(f"{len(run.run_errors)} frames failed: {run.run_errors[0]}")
    if len(run.latencies_ms) < budget.frames:
        raise SmokeTestFailed(f"ran {len(run.latencies_ms)} frames of {budget.frames}")
    if run.nonfinite_frames:
        raise SmokeTestFailed(f"NaN or infinite outputs on {run.nonfinite_frames} of "
                              f"{len(run.latencies_ms)} frames")
    median = statistics.median(run.latencies_ms)
    if not math.isfinite(median) or median > budget.max_latency_ms:
        raise SmokeTestFailed(f"median latency {median:.1f} ms over the budget "
                              f"{budget.max_latency_ms:.0f} ms")


@dataclass(frozen=True)
class HealthBudget:
    frames: int = 8  # live frames the new model is judged on
    max_errors: int = 0  # frames that raised
    max_nonfinite: int = 0  # frames with NaN or infinite outputs
    min_detection_ratio: float = 0.5  # share of frames with a detection, vs the old model's
    max_latency_ms: float = 2000.0  # median

    def __post_init__(self) -> None:
        if self.frames < 1 or self.max_errors < 0 or self.max_nonfinite < 0:
            raise BudgetError(f"frames={self.frames} must be at least 1, max_errors="
                              f"{self.max_errors} and max_nonfinite={self.max_nonfinite} >= 0")
        if not 0 <= self.min_detection_ratio <= 1 or not self.max_latency_ms > 0:
            raise BudgetError(f"min_detection_ratio={self.min_detection_ratio} must be in "
                              f"[0, 1] and max_latency_ms={self.max_latency_ms} positive")


@dataclass(frozen=True)
class LiveFrame:
    """One live frame through a model, as the health check reads it."""

    detections: int
    latency_ms: float
    finite: bool = True
    error: str | None = None


def detection_rate(frames: Sequence[LiveFrame]) -> float | None:
    """Share of frames (that ran) with at least one detection; None without any."""
    ran = [f for f in frames if f.error is None]
    return sum(f.detections > 0 for f in ran) / len(ran) if ran else None


class Health(enum.StrEnum):
    PENDING = "pending"  # not enough frames yet
    HEALTHY = "healthy"
    FAILED = "failed"


@dataclass(frozen=True)
class HealthVerdict:
    health: Health
    reason: str = ""


def judge_health(frames: Sequence[LiveFrame], budget: HealthBudget,
                 baseline_rate: float | None) -> HealthVerdict:
    """Judge the new model on live frames against the old model's detection rate (if known).

    Errors and non-finite outputs fail it as soon as they exceed the budget; the rest is judged
    once `budget.frames` frames have been seen.
    """
    errors = [f.error for f in frames if f.error is not None]
    if len(errors) > budget.max_errors:
        return HealthVerdict(Health.FAILED, f"{len(errors)} live frames failed: {errors[0]}")
    nonfinite = sum(not f.finite for f in frames if f.error is None)
    if nonfinite > budget.max_nonfinite:
        return HealthVerdict(Health.FAILED, f"NaN or infinite outputs on {nonfinite} live frames")
    if len(frames) < budget.frames:
        return HealthVerdict(Health.PENDING)
    rate = detection_rate(frames) or 0.0
    if baseline_rate is not None and rate < baseline_rate * budget.min_detection_ratio:
        return HealthVerdict(Health.FAILED, f"detected parts on {rate:.0%} of live frames, the "
                             f"previous model on {baseline_rate:.0%}")
    latencies = [f.latency_ms for f in frames if f.error is None]
    median = statistics.median(latencies) if latencies else math.inf
    if median > budget.max_latency_ms:
        return HealthVerdict(Health.FAILED, f"median latency {median:.1f} ms over the budget "
                             f"{budget.max_latency_ms:.0f} ms")
    return HealthVerdict(Health.HEALTHY)


# -- the update's phases ----------------------------------------------------------------------


class Phase(enum.StrEnum):
    """Where an update stands. Only SWAPPED-onward phases survive a restart (in the pointer)."""

    IDLE = "idle"
    CHECKING = "checking"  # refresh signed metadata, read the manifest, policy checks
    DOWNLOADING = "downloading"  # fetch the files through TUF into the download area
    VERIFYING = "verifying"  # smoke test of the downloaded model
    STAGING = "staging"  # copy into the inactive slot (write, fsync, rename)
    SWAPPING = "swapping"  # raise the floor, point `active` at the new slot
    HEALTH_CHECK = "health_check"  # the new model serves; judged on live frames
    ROLLING_BACK = "rolling_back"  # point `active` back at the previous slot


class Event(enum.StrEnum):
    ASSIGNED = "assigned"  # a release to consider
    UP_TO_DATE = "up_to_date"  # nothing to do
    ACCEPTED = "accepted"  # the phase's checks passed
    REFUSED = "refused"  # a check failed before the swap: nothing was activated
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    ROLLED_BACK = "rolled_back"


class InvalidTransition(ValueError):
    """An event that cannot happen in the current phase (a bug in the caller)."""


_FORWARD = {
    Phase.CHECKING: Phase.DOWNLOADING,
    Phase.DOWNLOADING: Phase.VERIFYING,
    Phase.VERIFYING: Phase.STAGING,
    Phase.STAGING: Phase.SWAPPING,
    Phase.SWAPPING: Phase.HEALTH_CHECK,
}


def next_phase(phase: Phase, event: Event) -> Phase:
    """The update's state machine; anything not listed raises InvalidTransition."""
    if phase is Phase.IDLE and event is Event.ASSIGNED:
        return Phase.CHECKING
    if event is Event.ACCEPTED and phase in _FORWARD:
        return _FORWARD[phase]
    if event is Event.UP_TO_DATE and phase is Phase.CHECKING:
        return Phase.IDLE
    if event is Event.REFUSED and phase in (Phase.CHECKING, Phase.DOWNLOADING, Phase.VERIFYING,
                                            Phase.STAGING):
        return Phase.IDLE
    if phase is Phase.HEALTH_CHECK and event is Event.HEALTHY:
        return Phase.IDLE
    if phase is Phase.HEALTH_CHECK and event is Event.UNHEALTHY:
        return Phase.ROLLING_BACK
    if phase is Phase.ROLLING_BACK and event is Event.ROLLED_BACK:
        return Phase.IDLE
    raise InvalidTransition(f"event {event.value} cannot happen in phase {phase.value}")
