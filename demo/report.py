"""What the demo measured (`Timeline`, `Summary`) and the pure functions that turn it into the
demo's outputs: the headline checks, a timeline PNG, a markdown report and a rich table.

No servers here: the demo flow records samples and markers, then calls these functions.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.checks import Check as CanaryCheck

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from rich.table import Table

MARKER_KINDS = (
    "drift_onset", "device_fault", "alarm", "labels_done", "release", "promotion", "fleet_updated",
)

# Targets of the demo's headline figures.
RECOVERED_SHARE_TARGET = 0.95  # of map50_before_drift, reached after the release
LABELS_USED_TARGET = 200  # labels, at most
MINUTES_DRIFT_TO_FLEET_UPDATED_TARGET = 15.0  # minutes, at most

NOT_REACHED = "not reached"
NO_TARGET = "–"
FAULT_NOTE = "(device fault)"
# A share computed from rounded mAP50s may land a hair under the target it exactly meets.
_SHARE_TOLERANCE = 1e-9

# kind -> (colour, line style) of its vertical line
_MARKER_STYLE: dict[str, tuple[str, str]] = {
    "drift_onset": ("tab:orange", "--"),
    "device_fault": ("tab:red", ":"),
    "alarm": ("crimson", "-"),
    "labels_done": ("tab:purple", "-."),
    "release": ("tab:green", "--"),
    "promotion": ("darkgreen", "-."),
    "fleet_updated": ("tab:blue", "-"),
}


class TimelineFormatError(ValueError):
    """A timeline, or its JSON form, that does not describe one demo run."""


@dataclass(frozen=True)
class AccuracySample:
    """One device at one moment: the mAP50 of the model it runs on held-out frames of the
    conditions it sees."""

    t_s: float
    device: str
    frame: int
    model_version: str
    conditions: str
    map50: float


@dataclass(frozen=True)
class DriftPoint:
    """One device in one drift check: `score` is the share of tested columns that drifted."""

    t_s: float
    device: str
    frame: int
    score: float
    drifted: bool


@dataclass(frozen=True)
class Marker:
    """A moment of the loop worth a vertical line: `kind` is one of MARKER_KINDS."""

    t_s: float
    frame: int
    kind: str
    label: str


@dataclass(frozen=True)
class Timeline:
    devices: tuple[str, ...]
    samples: tuple[AccuracySample, ...]
    drift: tuple[DriftPoint, ...]
    markers: tuple[Marker, ...]
    fault_device: str | None

    def __post_init__(self) -> None:
        known = set(self.devices)
        unknown = {s.device for s in self.samples} | {d.device for d in self.drift}
        if self.fault_device is not None:
            unknown.add(self.fault_device)
        if unknown - known:
            raise TimelineFormatError(f"unknown device(s) {', '.join(sorted(unknown - known))}")
        bad_kinds = {m.kind for m in self.markers} - set(MARKER_KINDS)
        if bad_kinds:
            raise TimelineFormatError(f"unknown marker kind(s) {', '.join(sorted(bad_kinds))}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "devices": list(self.devices),
            "samples": [asdict(s) for s in self.samples],
            "drift": [asdict(d) for d in self.drift],
            "markers": [asdict(m) for m in self.markers],
            "fault_device": self.fault_device,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timeline:
        try:
            return cls(
                devices=tuple(str(d) for d in data["devices"]),
                samples=tuple(AccuracySample(**s) for s in data["samples"]),
                drift=tuple(DriftPoint(**d) for d in data["drift"]),
                markers=tuple(Marker(**m) for m in data["markers"]),
                fault_device=data["fault_device"],
            )
        except (KeyError, TypeError) as exc:
            raise TimelineFormatError(f"not a timeline: {exc}") from exc


@dataclass(frozen=True)
class Check:
    """One headline figure against its target; `met` is None where the figure has no target."""

    name: str
    value: str
    target: str
    met: bool | None


def _check_dict(check: CanaryCheck) -> dict[str, Any]:
    return {"name": check.name, "passed": check.passed, "value": check.value,
            "limit": check.limit, "detail": check.detail}


@dataclass(frozen=True)
class Summary:
    frames_to_alarm: int | None
    labels_used: int
    map50_before_drift: float
    map50_after_drift: float
    map50_after_release: float | None
    minutes_drift_to_fleet_updated: float | None
    monitor_overhead_pct: float
    device_fault_isolated: bool | None  # None: the run had no device fault
    fleet_drift: str  # the scenario specs the run ran (demo.scenario)
    fault: str
    retrain_stages_s: Mapping[str, float] = field(default_factory=dict)  # dvc stage -> seconds
    canary_checks: tuple[CanaryCheck, ...] = ()  # the canary's last verdict, with its values
    gate_checks: tuple[CanaryCheck, ...] = ()  # the release gate's, with its values

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "fleet_drift": self.fleet_drift,
            "fault": self.fault,
            "frames_to_alarm": self.frames_to_alarm,
            "labels_used": self.labels_used,
            "map50_before_drift": round(self.map50_before_drift, 4),
            "map50_after_drift": round(self.map50_after_drift, 4),
            "map50_after_release": _round_or_none(self.map50_after_release, 4),
            "minutes_drift_to_fleet_updated": _round_or_none(
                self.minutes_drift_to_fleet_updated, 2),
            "monitor_overhead_pct": round(self.monitor_overhead_pct, 2),
            "device_fault_isolated": self.device_fault_isolated,
            "labels_per_recovered_map50_point": _round_or_none(
                self.labels_per_recovered_point, 1),
            "retrain_stages_s": dict(self.retrain_stages_s),
            "gate_checks": [_check_dict(c) for c in self.gate_checks],
            "canary_checks": [_check_dict(c) for c in self.canary_checks],
        }

    @property
    def labels_per_recovered_point(self) -> float | None:
        """Labels spent per mAP50 point (0.01) won back on the drifted domain; None when the
        release won nothing back."""
        if self.map50_after_release is None:
            return None
        points = (self.map50_after_release - self.map50_after_drift) * 100
        return self.labels_used / points if points > 0 else None

    @property
    def recovered_share(self) -> float | None:
        if self.map50_after_release is None or self.map50_before_drift <= 0:
            return None
        return self.map50_after_release / self.map50_before_drift

    def checks(self) -> list[Check]:
        share = self.recovered_share
        minutes = self.minutes_drift_to_fleet_updated
        after_release = NOT_REACHED
        if self.map50_after_release is not None:
            after_release = f"{self.map50_after_release:.3f}"
            if share is not None:
                after_release += f" ({share:.1%} of before drift)"
        return [
            Check("frames to alarm", _or_not_reached(self.frames_to_alarm), NO_TARGET, None),
            Check("labels used", str(self.labels_used), f"≤ {LABELS_USED_TARGET}",
                  self.labels_used <= LABELS_USED_TARGET),
            Check("mAP50 before drift", f"{self.map50_before_drift:.3f}", NO_TARGET, None),
            Check("mAP50 after drift", f"{self.map50_after_drift:.3f}", NO_TARGET, None),
            Check("mAP50 after release", after_release,
                  f"≥ {RECOVERED_SHARE_TARGET:.0%} of before drift",
                  share is not None and share >= RECOVERED_SHARE_TARGET - _SHARE_TOLERANCE),
            Check("minutes drift → fleet updated",
                  NOT_REACHED if minutes is None else f"{minutes:.1f}",
                  f"≤ {MINUTES_DRIFT_TO_FLEET_UPDATED_TARGET:g}",
                  minutes is not None and minutes <= MINUTES_DRIFT_TO_FLEET_UPDATED_TARGET),
            Check("monitoring overhead", f"{self.monitor_overhead_pct:.1f} %", NO_TARGET, None),
            self._fault_check(),
        ]

    def _fault_check(self) -> Check:
        if self.device_fault_isolated is None:
            return Check("device fault isolated", "no fault in this run", NO_TARGET, None)
        return Check("device fault isolated", "yes" if self.device_fault_isolated else "no",
                     "yes", self.device_fault_isolated)


def _round_or_none(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _or_not_reached(value: int | None) -> str:
    return NOT_REACHED if value is None else str(value)


def _met_symbol(met: bool | None) -> str:
    return NO_TARGET if met is None else ("✓" if met else "✗")


def summary_rows(summary: Summary) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, met ✓/✗/–) for each headline check."""
    return [(c.name, c.value, c.target, _met_symbol(c.met)) for c in summary.checks()]


def rich_summary_table(summary: Summary) -> Table:
    from rich.table import Table

    table = Table(title="edgeloop demo: headline figures")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target")
    table.add_column("met", justify="center")
    for check, row in zip(summary.checks(), summary_rows(summary), strict=True):
        style = {True: "green", False: "bold red", None: "dim"}[check.met]
        table.add_row(*row[:3], f"[{style}]{row[3]}[/{style}]")
    return table


# ---------------------------------------------------------------- the timeline figure


def _device_label(timeline: Timeline, device: str) -> str:
    return f"{device} {FAULT_NOTE}" if device == timeline.fault_device else device


def _draw_accuracy(ax: Axes, timeline: Timeline, colours: Mapping[str, Any]) -> None:
    for device in timeline.devices:
        points = sorted((s.frame, s.map50) for s in timeline.samples if s.device == device)
        if not points:
            continue
        frames, values = zip(*points, strict=True)
        dashed = device == timeline.fault_device
        ax.step(frames, values, where="post", color=colours[device], linewidth=2,
                linestyle="--" if dashed else "-", marker="o" if len(points) == 1 else None,
                label=_device_label(timeline, device))
    ax.set_ylim(0, 1)
    ax.set_ylabel("mAP50")
    ax.grid(alpha=0.3)
    if timeline.samples:
        ax.legend(loc="lower left", fontsize=9)


def _draw_drift(ax: Axes, timeline: Timeline, colours: Mapping[str, Any]) -> None:
    for device in timeline.devices:
        points = sorted((d.frame, d.score, d.drifted) for d in timeline.drift
                        if d.device == device)
        if not points:
            continue
        frames, scores, drifted = zip(*points, strict=True)
        ax.plot(frames, scores, color=colours[device], linewidth=1.2, alpha=0.8,
                linestyle="--" if device == timeline.fault_device else "-")
        hit_frames = [f for f, d in zip(frames, drifted, strict=True) if d]
        hit_scores = [s for s, d in zip(scores, drifted, strict=True) if d]
        ax.scatter(hit_frames, hit_scores, color=colours[device], marker="X", s=60, zorder=3)
    if not timeline.drift:
        ax.text(0.5, 0.5, "no drift checks", transform=ax.transAxes, ha="center", va="center",
                color="grey")
    ax.set_ylim(0, 1)
    ax.set_ylabel("drift score\n(share of columns drifted; X = drifted)")
    ax.set_xlabel("frames per device")
    ax.grid(alpha=0.3)


def _draw_markers(top: Axes, bottom: Axes, markers: Iterable[Marker]) -> None:
    for marker in sorted(markers, key=lambda m: (m.frame, m.t_s)):
        colour, style = _MARKER_STYLE[marker.kind]
        for ax in (top, bottom):
            ax.axvline(marker.frame, color=colour, linestyle=style, linewidth=1.2, alpha=0.8)
        top.text(marker.frame, 0.98, f" {marker.label or marker.kind}", rotation=90,
                 transform=top.get_xaxis_transform(), ha="right", va="top", fontsize=8,
                 color=colour, bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0,
                                     "pad": 1})


def plot_timeline(timeline: Timeline, path: Path, *, title: str = "edgeloop demo") -> Path:
    """Write the two-panel timeline (mAP50 per device above, drift score below) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure with its own Agg canvas: no pyplot, so no global backend or open figures.
    fig = Figure(figsize=(14, 8), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    cycle = [f"C{i}" for i in range(10)]
    colours = {d: cycle[i % len(cycle)] for i, d in enumerate(timeline.devices)}
    _draw_accuracy(top, timeline, colours)
    _draw_drift(bottom, timeline, colours)
    _draw_markers(top, bottom, timeline.markers)
    _frame_axis(bottom, timeline)
    top.set_title(title)
    fig.tight_layout()
    return _write_png(fig, Path(path))


def _frame_axis(ax: Axes, timeline: Timeline) -> None:
    from matplotlib.ticker import MaxNLocator

    frames = [s.frame for s in timeline.samples] + [d.frame for d in timeline.drift]
    span = max([1, *frames, *(m.frame for m in timeline.markers)])
    ax.set_xlim(-0.02 * span, 1.02 * span)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _write_png(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as out:
            fig.savefig(out, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------- the markdown report


def _mmss(t_s: float) -> str:
    minutes, seconds = divmod(max(0, round(t_s)), 60)
    return f"{minutes:02d}:{seconds:02d}"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _table(header: tuple[str, ...], rows: Iterable[tuple[object, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _device_rows(timeline: Timeline) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for device in timeline.devices:
        samples = sorted((s for s in timeline.samples if s.device == device),
                         key=lambda s: (s.t_s, s.frame))
        frames = [s.frame for s in samples] + [d.frame for d in timeline.drift
                                               if d.device == device]
        conditions = list(dict.fromkeys(s.conditions for s in samples))
        last = samples[-1] if samples else None
        rows.append((
            _device_label(timeline, device),
            last.model_version if last else NO_TARGET,
            str(max(frames)) if frames else "0",
            f"{last.map50:.3f}" if last else NO_TARGET,
            " → ".join(conditions) or NO_TARGET,
        ))
    return rows


def report_markdown(summary: Summary, timeline: Timeline, *, urls: Mapping[str, str],
                    timings: Mapping[str, float], plot_name: str = "timeline.png") -> str:
    """The demo's report: headline checks, what happened when, each device, timings and UIs."""
    lines = ["# edgeloop demo report", "",
             f"Fleet drift `{summary.fleet_drift}` on every device; fault `{summary.fault}`.", "",
             f"![timeline]({plot_name})", "", "## Headline", ""]
    lines += _table(("figure", "value", "target", "met"), summary_rows(summary))
    lines += ["", "## What happened", ""]
    markers = sorted(timeline.markers, key=lambda m: (m.t_s, m.frame))
    lines += [f"- `{_mmss(m.t_s)}` frame {m.frame}: {m.label or m.kind} ({m.kind})"
              for m in markers] or ["- nothing was marked"]
    lines += ["", "## Devices", ""]
    lines += _table(("device", "final model", "frames seen", "final mAP50", "conditions"),
                    _device_rows(timeline))
    lines += ["", "## Timings", ""]
    lines += _table(("stage", "seconds"),
                    [(stage, f"{seconds:.1f}") for stage, seconds in timings.items()])
    total = sum(timings.values())
    if timings and math.isfinite(total):
        lines.append(f"| **total** | **{total:.1f}** |")
    if summary.retrain_stages_s:
        lines += ["", "Retrain, by DVC stage:", ""]
        lines += _table(("retrain stage", "seconds"), [
            (stage, f"{seconds:.1f}") for stage, seconds in summary.retrain_stages_s.items()])
    for title, checks in (("Release gate", summary.gate_checks),
                          ("Canary verdict", summary.canary_checks)):
        if checks:
            lines += ["", f"## {title}", ""]
            lines += _table(("check", "value", "limit", "passed"), [
                (c.name, _num(c.value), _num(c.limit), "yes" if c.passed else "no")
                for c in checks])
    lines += ["", "## UIs", ""]
    lines += [f"- {name}: <{url}>" for name, url in urls.items()] or ["- none"]
    return "\n".join(lines) + "\n"
