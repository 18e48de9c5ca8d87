"""The release gate: does the challenger ship, which file (int8 or fp32), and why.

A pure function over the numbers the export and evaluate stages measured on the exact files
that would ship; every check keeps its value and limit, so `metrics/gate.json` explains itself.
Accuracy is in mAP50-95 points (0-100).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from configs import default_path
from configs.loader import SettingsError, build, layered
from flows.checks import Check

DEFAULT_GATE_PATH = default_path("gate.yaml")


class GateConfigError(SettingsError):
    """The gate settings are unreadable or hold an unknown key or a bad value."""


class Artefact(enum.StrEnum):
    INT8 = "int8"
    FP32 = "fp32"


@dataclass(frozen=True)
class GateConfig:
    min_drift_gain_points: float = 2.0  # challenger over champion on the drift slice
    max_golden_loss_points: float = 1.0  # champion over challenger on the golden set
    max_int8_drop_points: float = 1.0  # fp32 over int8, on each slice; else ship fp32
    max_box_diff_px: float = 0.01  # ONNX vs PyTorch raw output, box coordinates (input pixels)
    max_score_diff: float = 1e-4  # ONNX vs PyTorch raw output, class scores
    latency_budget_ms: float = 200.0  # p95 inference of the shipped file at the evaluated size
    max_latency_ratio: float = 1.5  # shipped p50 over the champion's, timed in the same run

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or value < 0:
                raise GateConfigError(f"gate {f.name} must be a number >= 0, got {value!r}")


def load_gate_config(config: Path | None = None, *, project: Path | None = None) -> GateConfig:
    """The gate's limits: defaults < packaged `gate.yaml` < the project's `configs/gate.yaml`
    and `edgeloop.yaml` (`gate:`) < the file `config` (`--config`)."""
    merged = layered("gate", project=project, config=config, error=GateConfigError)
    return build(GateConfig, merged, error=GateConfigError)


@dataclass(frozen=True)
class Scores:
    """One ONNX file's numbers: mAP50-95 points per slice and its inference latency."""

    golden: float
    drift: float
    latency_p50_ms: float
    latency_p95_ms: float


@dataclass(frozen=True)
class FileChecks:
    """What the export stage found about one file."""

    checker_error: str | None  # onnx.checker's complaint; None = valid
    box_diff_px: float | None = None  # vs PyTorch; measured for the fp32 file
    score_diff: float | None = None


@dataclass(frozen=True)
class GateInputs:
    champion: Scores
    fp32: Scores
    fp32_checks: FileChecks
    int8: Scores | None = None  # None: no int8 file was made
    int8_checks: FileChecks | None = None


@dataclass(frozen=True)
class GateVerdict:
    ship: bool
    artefact: Artefact | None  # the file that ships (or would, had every check passed)
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> list[str]:
        """Why not, one line per failed check; empty when it ships."""
        return [c.detail for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"ship": self.ship, "artefact": self.artefact.value if self.artefact else None,
                "reasons": self.reasons, "checks": [asdict(c) for c in self.checks]}


def _at_most(name: str, value: float, limit: float, what: str) -> Check:
    ok = value <= limit
    return Check(name, ok, round(value, 4), limit,
                 f"{what} {value:.3g} {'<=' if ok else '>'} {limit:g}")


def _integrity(checks: FileChecks, config: GateConfig) -> list[Check]:
    error = checks.checker_error
    verdict = "passes onnx.checker" if error is None else f"fails onnx.checker: {error}"
    out = [Check("fp32_onnx_valid", error is None, None, None, f"fp32 ONNX {verdict}")]
    if checks.box_diff_px is None or checks.score_diff is None:
        out.append(Check("torch_parity", False, None, None,
                         "fp32 ONNX was not compared with PyTorch"))
        return out
    out.append(_at_most("torch_parity_boxes", checks.box_diff_px, config.max_box_diff_px,
                        "ONNX vs PyTorch box difference (px)"))
    out.append(_at_most("torch_parity_scores", checks.score_diff, config.max_score_diff,
                        "ONNX vs PyTorch score difference"))
    return out


def _choose_file(inputs: GateInputs, config: GateConfig) -> tuple[Artefact, Check]:
    """int8 when it is valid and close enough to fp32 on every slice, else fp32, with why."""
    if inputs.int8 is None or inputs.int8_checks is None:
        return Artefact.FP32, Check("int8_accuracy", True, None, None,
                                    "no int8 file: ship fp32")
    if inputs.int8_checks.checker_error is not None:
        return Artefact.FP32, Check("int8_accuracy", True, None, None,
                                    f"int8 fails onnx.checker ({inputs.int8_checks.checker_error})"
                                    ": ship fp32")
    drop = max(inputs.fp32.golden - inputs.int8.golden, inputs.fp32.drift - inputs.int8.drift)
    limit = config.max_int8_drop_points
    if drop > limit:
        return Artefact.FP32, Check("int8_accuracy", True, round(drop, 4), limit,
                                    f"int8 loses {drop:.2f} mAP50-95 points against fp32 "
                                    f"(> {limit:g}): ship fp32")
    return Artefact.INT8, Check("int8_accuracy", True, round(drop, 4), limit,
                                f"int8 within {drop:.2f} mAP50-95 points of fp32: ship int8")


def _accuracy(shipped: Scores, champion: Scores, config: GateConfig) -> list[Check]:
    """The file's gain on the drift slice and its loss on the golden set, against the champion."""
    gain = shipped.drift - champion.drift
    loss = champion.golden - shipped.golden
    return [
        Check("drift_gain", gain >= config.min_drift_gain_points, round(gain, 4),
              config.min_drift_gain_points,
              f"drift slice mAP50-95 {champion.drift:.2f} -> {shipped.drift:.2f}"
              f" ({gain:+.2f} points; needs >= +{config.min_drift_gain_points:g})"),
        Check("golden_loss", loss <= config.max_golden_loss_points, round(loss, 4),
              config.max_golden_loss_points,
              f"golden set mAP50-95 {champion.golden:.2f} -> {shipped.golden:.2f} "
              f"({-loss:+.2f} points; may lose at most {config.max_golden_loss_points:g})"),
    ]


def decide(inputs: GateInputs, config: GateConfig) -> GateVerdict:
    """Every check, in order: file integrity, which file, drift gain, golden loss, latency
    (absolute and against the champion). An int8 file close to fp32 ships, unless it alone
    misses an accuracy limit that fp32 meets: then fp32 ships."""
    checks = _integrity(inputs.fp32_checks, config)
    artefact, choice = _choose_file(inputs, config)
    shipped = inputs.int8 if artefact is Artefact.INT8 and inputs.int8 else inputs.fp32
    accuracy = _accuracy(shipped, inputs.champion, config)
    if artefact is Artefact.INT8 and not all(c.passed for c in accuracy):
        fp32 = _accuracy(inputs.fp32, inputs.champion, config)
        if all(c.passed for c in fp32):
            missed = ", ".join(c.name for c in accuracy if not c.passed)
            artefact, shipped, accuracy = Artefact.FP32, inputs.fp32, fp32
            choice = replace(choice, detail=f"{choice.detail.removesuffix(': ship int8')}, but "
                                            f"int8 misses {missed} where fp32 does not: ship fp32")
    checks += [choice, *accuracy]
    checks.append(_at_most("latency", shipped.latency_p95_ms, config.latency_budget_ms,
                           f"{artefact.value} p95 inference (ms)"))
    # Timed beside the champion in one run, the ratio holds on a loaded machine too.
    ratio = shipped.latency_p50_ms / max(inputs.champion.latency_p50_ms, 1e-9)
    checks.append(_at_most("latency_vs_champion", ratio, config.max_latency_ratio,
                           f"{artefact.value} p50 inference over the champion's"))
    return GateVerdict(all(c.passed for c in checks), artefact, tuple(checks))
