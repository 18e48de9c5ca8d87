"""The release gate: each reason to refuse, and the int8-or-fp32 choice."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from flows.retrain.gate import (
    DEFAULT_GATE_PATH,
    Artefact,
    FileChecks,
    GateConfig,
    GateConfigError,
    GateInputs,
    Scores,
    decide,
    load_gate_config,
)

CONFIG = GateConfig(min_drift_gain_points=2.0, max_golden_loss_points=1.0,
                    max_int8_drop_points=1.0, max_box_diff_px=0.05, max_score_diff=1e-3,
                    latency_budget_ms=50.0, max_latency_ratio=1.5)
CHAMPION = Scores(golden=70.0, drift=20.0, latency_p50_ms=25.0, latency_p95_ms=30.0)
GOOD_FP32 = Scores(golden=69.8, drift=45.0, latency_p50_ms=25.0, latency_p95_ms=30.0)
GOOD_INT8 = Scores(golden=69.3, drift=44.4, latency_p50_ms=12.0, latency_p95_ms=15.0)
VALID = FileChecks(checker_error=None, box_diff_px=0.01, score_diff=1e-5)


def inputs(**changes: object) -> GateInputs:
    base = GateInputs(champion=CHAMPION, fp32=GOOD_FP32, fp32_checks=VALID, int8=GOOD_INT8,
                      int8_checks=FileChecks(checker_error=None))
    return replace(base, **changes)  # type: ignore[arg-type]


def failed(verdict_checks: object) -> set[str]:
    return {c.name for c in verdict_checks if not c.passed}  # type: ignore[attr-defined]


def test_a_better_challenger_ships_its_int8_file() -> None:
    verdict = decide(inputs(), CONFIG)
    assert verdict.ship and verdict.artefact is Artefact.INT8 and verdict.reasons == []


def test_too_small_a_gain_on_the_drift_slice_is_refused() -> None:
    verdict = decide(inputs(int8=replace(GOOD_INT8, drift=21.5),
                            fp32=replace(GOOD_FP32, drift=21.9)), CONFIG)
    assert not verdict.ship and failed(verdict.checks) == {"drift_gain"}
    assert "+1.50 points" in verdict.reasons[0]


def test_forgetting_the_old_data_is_refused() -> None:
    verdict = decide(inputs(int8=replace(GOOD_INT8, golden=68.5),
                            fp32=replace(GOOD_FP32, golden=68.9)), CONFIG)
    assert not verdict.ship and failed(verdict.checks) == {"golden_loss"}


def test_an_int8_file_that_alone_misses_the_golden_limit_falls_back_to_fp32() -> None:
    # int8 within the int8 limit of fp32, but those 0.8 points take it past the golden limit
    verdict = decide(inputs(fp32=replace(GOOD_FP32, golden=69.5),
                            int8=replace(GOOD_INT8, golden=68.7)), CONFIG)
    assert verdict.ship and verdict.artefact is Artefact.FP32, verdict.reasons
    choice = next(c for c in verdict.checks if c.name == "int8_accuracy")
    assert "int8 misses golden_loss where fp32 does not: ship fp32" in choice.detail
    golden = next(c for c in verdict.checks if c.name == "golden_loss")
    assert golden.value == pytest.approx(0.5)  # fp32's loss, the file that ships


def test_an_int8_file_far_below_fp32_falls_back_to_fp32_and_says_why() -> None:
    verdict = decide(inputs(int8=replace(GOOD_INT8, drift=40.0)), CONFIG)
    assert verdict.ship and verdict.artefact is Artefact.FP32
    choice = next(c for c in verdict.checks if c.name == "int8_accuracy")
    assert choice.value == pytest.approx(5.0) and "ship fp32" in choice.detail


def test_an_int8_file_onnx_checker_refuses_falls_back_to_fp32() -> None:
    verdict = decide(inputs(int8_checks=FileChecks(checker_error="bad graph")), CONFIG)
    assert verdict.ship and verdict.artefact is Artefact.FP32


def test_without_an_int8_file_fp32_is_judged() -> None:
    verdict = decide(inputs(int8=None, int8_checks=None), CONFIG)
    assert verdict.ship and verdict.artefact is Artefact.FP32


def test_an_invalid_fp32_file_is_refused() -> None:
    verdict = decide(inputs(fp32_checks=replace(VALID, checker_error="node 3 has no input")),
                     CONFIG)
    assert not verdict.ship and failed(verdict.checks) == {"fp32_onnx_valid"}


def test_onnx_that_does_not_match_pytorch_is_refused() -> None:
    verdict = decide(inputs(fp32_checks=replace(VALID, box_diff_px=3.0, score_diff=0.2)), CONFIG)
    assert failed(verdict.checks) == {"torch_parity_boxes", "torch_parity_scores"}
    assert not verdict.ship


def test_an_unchecked_parity_is_a_failure_not_a_pass() -> None:
    verdict = decide(inputs(fp32_checks=FileChecks(checker_error=None)), CONFIG)
    assert not verdict.ship and failed(verdict.checks) == {"torch_parity"}


def test_a_file_over_the_latency_budget_is_refused() -> None:
    verdict = decide(inputs(int8=replace(GOOD_INT8, latency_p95_ms=80.0)), CONFIG)
    assert not verdict.ship and failed(verdict.checks) == {"latency"}


def test_a_file_much_slower_than_the_champion_is_refused() -> None:
    verdict = decide(inputs(int8=replace(GOOD_INT8, latency_p50_ms=40.0)), CONFIG)
    assert not verdict.ship and failed(verdict.checks) == {"latency_vs_champion"}
    check = next(c for c in verdict.checks if c.name == "latency_vs_champion")
    assert check.value == pytest.approx(1.6)


def test_the_verdict_json_keeps_every_number() -> None:
    data = decide(inputs(int8=replace(GOOD_INT8, drift=21.0),
                         fp32=replace(GOOD_FP32, drift=21.5)), CONFIG).as_dict()
    assert data["ship"] is False and data["artefact"] == "int8"
    gain = next(c for c in data["checks"] if c["name"] == "drift_gain")
    assert (gain["value"], gain["limit"], gain["passed"]) == (1.0, 2.0, False)


def test_the_shipped_config_loads_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    assert load_gate_config(DEFAULT_GATE_PATH).max_int8_drop_points == 1.0
    bad = tmp_path / "gate.yaml"
    bad.write_text("min_drift_gain: 2\n")
    with pytest.raises(GateConfigError, match="unknown settings min_drift_gain"):
        load_gate_config(bad)
    bad.write_text("latency_budget_ms: -1\n")
    with pytest.raises(GateConfigError, match="latency_budget_ms"):
        load_gate_config(bad)
