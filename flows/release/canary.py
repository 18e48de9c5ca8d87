"""The canary verdict: promote the new release, roll the canary channel back, or wait.

A pure function over telemetry tables (the columns of `edge_runtime.telemetry.stats_row`): the
canary devices' frames on the new release, the release's reference profile (`reference.parquet`)
and the frames of the version it replaces, plus the canary devices' latest heartbeats. Every
check keeps its value and limit, so the verdict explains itself.

After a fleet-wide drift the version being replaced is wrong on the line as it is now, often
confidently so; a fix must not read as a regression. So the verdict judges the new release
against what is known about the line now, not against the old domain:
- the reference profile is the new release replayed on the newest labelled frames (the
  retrain's `current` slice): the canary's confidence distribution must look like that, which
  catches a model that behaves otherwise on the device than it did when it was built (its
  detections per frame are compared only with an unlabelled profile: a labelled round's
  frames were chosen for uncertainty, more crowded than the line);
- the version it replaces was replayed on the same labelled frames: on the line, the new
  release's detections per frame must stand to the previous version's (measured on the same
  line at the same time: frames since the canary began) as they stood on those frames, which
  catches a release gone blind or over-firing on the device without reading the previous
  version's misses on the new domain as the norm;
- errors, local rollbacks and the p95 latency against the previous version, as before.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from flows.checks import Check  # one check record for every verdict
from flows.yolo_dataset import LABELLED_OBJECTS, PREVIOUS_DETECTIONS

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]


class CanaryConfigError(ValueError):
    """The canary section of configs/release.yaml holds an unknown key or a bad value."""


class Verdict(enum.StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    WAIT = "wait"  # not enough frames (or devices) on the new release yet


@dataclass(frozen=True)
class CanaryConfig:
    min_frames: int = 500  # frames on the new release, all canary devices together
    min_devices: int = 1  # canary devices that sent frames on the new release
    min_baseline_frames: int = 100  # fewer frames of reference / previous: that comparison skipped
    max_detection_rate_change_vs_reference: float = 0.30  # |new / reference - 1|, per frame
    max_confidence_ks_vs_reference: float = 0.30  # two-sample K-S statistic of conf_mean
    # detections per frame, new / previous version on the line, against the same ratio on the
    # reference frames (|live / reference - 1|); a reference without the previous version's
    # replay: how much below the previous version's rate the new one may fall
    max_detection_ratio_change_vs_previous: float = 0.30
    max_latency_p95_ratio: float = 1.5  # p95 infer_ms, new / previous
    max_error_devices: int = 0  # canary devices reporting an error or a local rollback

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 \
                    or not math.isfinite(value):
                raise CanaryConfigError(f"canary {f.name} must be a number >= 0, got {value!r}")
        for name in ("min_frames", "min_devices", "min_baseline_frames", "max_error_devices"):
            if not isinstance(getattr(self, name), int):
                raise CanaryConfigError(f"canary {name} must be a whole number, "
                                        f"got {getattr(self, name)!r}")
        if self.min_frames < 1 or self.min_devices < 1:
            raise CanaryConfigError("canary min_frames and min_devices must be at least 1")


@dataclass(frozen=True)
class DeviceReport:
    """A canary device's latest heartbeat, as far as the verdict cares."""

    device_id: str
    release_version: int  # what the device says it runs (0: unknown)
    last_error: str | None = None


@dataclass(frozen=True)
class CanaryVerdict:
    verdict: Verdict
    frames: int  # frames on the new release
    devices: int  # canary devices that sent them
    checks: list[Check] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """Why not promoted: failed checks (ROLLBACK) or what is missing (WAIT); else empty."""
        return [c.detail for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "frames": self.frames, "devices": self.devices,
                "reasons": self.reasons, "checks": [asdict(c) for c in self.checks]}


def decide(new: pd.DataFrame, *, release_version: int, reference: pd.DataFrame | None = None,
           previous: pd.DataFrame | None = None, devices: Sequence[DeviceReport] = (),
           config: CanaryConfig = CanaryConfig()) -> CanaryVerdict:
    """The verdict on the canary devices' frames `new` (on release `release_version`)."""
    frames = len(new)
    on_new = set(new["device_id"]) if frames else set()
    errors = _error_check(devices, on_new, release_version, config)
    enough = [
        Check("frames", frames >= config.min_frames, frames, config.min_frames,
              f"{frames} frames on the new release, {config.min_frames} needed"),
        Check("devices", len(on_new) >= config.min_devices, len(on_new), config.min_devices,
              f"{len(on_new)} canary devices sent frames on it, {config.min_devices} needed"),
    ]
    if not errors.passed:  # failing devices are reason enough; no need to wait for frames
        return CanaryVerdict(Verdict.ROLLBACK, frames, len(on_new), [errors, *enough])
    if not all(c.passed for c in enough):
        return CanaryVerdict(Verdict.WAIT, frames, len(on_new), enough)
    checks = [errors]
    checks += _vs_reference(new, reference, config)
    checks += _vs_previous(new, previous, reference, config)
    verdict = Verdict.PROMOTE if all(c.passed for c in checks) else Verdict.ROLLBACK
    return CanaryVerdict(verdict, frames, len(on_new), checks)


def _error_check(devices: Sequence[DeviceReport], on_new: set[str], release_version: int,
                 config: CanaryConfig) -> Check:
    failing = sorted(
        d.device_id for d in devices
        if d.last_error
        # ran the new release (its frames arrived) but now reports an older one: rolled back
        or (d.device_id in on_new and 0 < d.release_version < release_version))
    shown = f": {', '.join(failing[:5])}" if failing else ""
    return Check("error_devices", len(failing) <= config.max_error_devices, len(failing),
                 config.max_error_devices,
                 f"{len(failing)} canary devices report an error or rolled back{shown} "
                 f"(at most {config.max_error_devices})")


def _usable(baseline: pd.DataFrame | None, config: CanaryConfig) -> bool:
    return baseline is not None and len(baseline) >= config.min_baseline_frames


def _vs_reference(new: pd.DataFrame, reference: pd.DataFrame | None,
                  config: CanaryConfig) -> list[Check]:
    if reference is None or not _usable(reference, config):
        return []
    limit_ks = config.max_confidence_ks_vs_reference
    ks = ks_statistic(_values(new, "conf_mean"), _values(reference, "conf_mean"))
    checks = [Check("confidence_ks_vs_reference", ks <= limit_ks, round(ks, 4), limit_ks,
                    f"confidence distribution vs reference: K-S {ks:.3f} "
                    f"{'<=' if ks <= limit_ks else '>'} {limit_ks:g}")]
    if labelled_rate(reference) is not None:
        # A labelled round's frames were chosen for their uncertainty: more crowded than the
        # line at large (measured: 5.76 detections per frame on them, 3.94 live, one model).
        # Their detections are judged against the previous version's there (`_detection_ratio`).
        return checks
    rate_new, rate_ref = detection_rate(new), detection_rate(reference)
    change = _relative(rate_new, rate_ref)
    limit_rate = config.max_detection_rate_change_vs_reference
    return [Check("detection_rate_vs_reference", abs(change) <= limit_rate, round(change, 4),
                  limit_rate, f"detections per frame {rate_new:.3g} vs reference "
                  f"{rate_ref:.3g}: {change:+.1%} "
                  f"({'within' if abs(change) <= limit_rate else 'beyond'} ±{limit_rate:.0%})"),
            *checks]


def _vs_previous(new: pd.DataFrame, previous: pd.DataFrame | None,
                 reference: pd.DataFrame | None, config: CanaryConfig) -> list[Check]:
    if previous is None or not _usable(previous, config):
        return []
    p95_new, p95_prev = _p95(_values(new, "infer_ms")), _p95(_values(previous, "infer_ms"))
    ratio = p95_new / p95_prev if p95_prev > 0 else (1.0 if p95_new == 0 else math.inf)
    c = config
    on_reference = reference if reference is not None and _usable(reference, config) else None
    return [
        _detection_ratio(detection_rate(new), detection_rate(previous), on_reference,
                         c.max_detection_ratio_change_vs_previous),
        Check("latency_p95_vs_previous", ratio <= c.max_latency_p95_ratio, round(ratio, 4),
              c.max_latency_p95_ratio,
              f"p95 inference {p95_new:.1f} ms vs previous version {p95_prev:.1f} ms: "
              f"x{ratio:.2f} (at most x{c.max_latency_p95_ratio:g})"),
    ]


# Detections per frame added to both sides of a ratio of rates, so that a version blind on the
# new domain (0 per frame) still gives a finite ratio that a blind successor cannot match.
RATE_SMOOTHING = 0.5


def _rate_ratio(rate: float, baseline: float) -> float:
    return (rate + RATE_SMOOTHING) / (baseline + RATE_SMOOTHING)


def _detection_ratio(rate_new: float, rate_prev: float, reference: pd.DataFrame | None,
                     limit: float) -> Check:
    """Detections per frame of the new release over the previous version's on the line, against
    that ratio on the reference frames, where both were replayed; without that replay, the new
    release's drop below the previous version."""
    replayed = _values(reference, PREVIOUS_DETECTIONS) if reference is not None else np.empty(0)
    if reference is None or replayed.size < len(reference):
        drop = -_relative(rate_new, rate_prev)
        return Check("detection_rate_vs_previous", drop <= limit, round(drop, 4), limit,
                     f"detections per frame {rate_new:.3g} vs previous version {rate_prev:.3g}: "
                     f"{-drop:+.1%} (a drop of at most {limit:.0%}; the previous version was "
                     "not replayed on the reference frames)")
    ref_new, ref_prev = detection_rate(reference), _mean(replayed)
    live, expected = _rate_ratio(rate_new, rate_prev), _rate_ratio(ref_new, ref_prev)
    change = live / expected - 1
    labelled = labelled_rate(reference)
    labels = f", {labelled:.3g} objects labelled" if labelled is not None else ""
    return Check("detection_rate_vs_previous", abs(change) <= limit, round(change, 4), limit,
                 f"detections per frame {rate_new:.3g} vs previous version {rate_prev:.3g} on "
                 f"the line (x{live:.2f}); {ref_new:.3g} vs {ref_prev:.3g} on the reference "
                 f"frames{labels} (x{expected:.2f}): {change:+.1%} "
                 f"({'within' if abs(change) <= limit else 'beyond'} ±{limit:.0%})")


def labelled_rate(reference: pd.DataFrame | None) -> float | None:
    """Objects per frame in the reference's labels (`labelled_objects`); None when its frames
    carry no labels (a profile replayed on unlabelled frames)."""
    if reference is None:
        return None
    counts = _values(reference, LABELLED_OBJECTS)
    return float(counts.mean()) if counts.size else None


def detection_rate(frame: pd.DataFrame) -> float:
    """Mean detections per frame."""
    return _mean(_values(frame, "detections"))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical
    distribution functions (0 = same, 1 = disjoint); 0 when either sample is empty."""
    if a.size == 0 or b.size == 0:
        return 0.0
    a, b = np.sort(a), np.sort(b)
    points = np.concatenate([a, b])
    gap = np.searchsorted(a, points, side="right") / a.size \
        - np.searchsorted(b, points, side="right") / b.size
    return float(np.max(np.abs(gap)))


def _values(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.empty(0)
    values = np.asarray(frame[column], dtype=float)
    return values[np.isfinite(values)]  # conf_* are empty (None) on frames without detections


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else 0.0


def _p95(values: np.ndarray) -> float:
    return float(np.percentile(values, 95)) if values.size else 0.0


def _relative(value: float, baseline: float) -> float:
    if baseline == 0:
        return 0.0 if value == 0 else math.inf
    return value / baseline - 1
