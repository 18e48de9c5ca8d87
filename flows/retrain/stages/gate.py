"""Stage `gate`: the release gate's verdict on the candidate (flows.retrain.gate), with every
number it used, as `metrics/gate.json`. A refusal is a verdict, not a failed stage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from flows.checks import GateReport
from flows.retrain.gate import (
    FileChecks,
    GateInputs,
    Scores,
    decide,
    load_gate_config,
)


def scores(model: dict[str, Any]) -> Scores:
    """mAP50-95 points per slice and inference latency, from one model's evaluation: p95 the
    slower slice's; p50 as timed side by side with the other files (`paired_latency`; an older
    evaluation without it: the slower slice's)."""
    infer = [model[s]["latency"]["infer"] for s in ("golden", "drift")]
    paired = model.get("paired_latency")
    return Scores(golden=100 * model["golden"]["map50_95"], drift=100 * model["drift"]["map50_95"],
                  latency_p50_ms=paired["p50_ms"] if paired else max(x["p50_ms"] for x in infer),
                  latency_p95_ms=max(x["p95_ms"] for x in infer))


def gate_inputs(evaluation: dict[str, Any], export: dict[str, Any]) -> GateInputs:
    models, fp32 = evaluation["models"], export["fp32"]
    int8 = export.get("int8")
    return GateInputs(
        champion=scores(models["champion"]),
        fp32=scores(models["fp32"]),
        fp32_checks=FileChecks(fp32["checker_error"], fp32["parity"]["box_max_abs_px"],
                               fp32["parity"]["score_max_abs"]),
        int8=scores(models["int8"]) if int8 and "int8" in models else None,
        int8_checks=FileChecks(int8["checker_error"]) if int8 else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=None,
                        help="gate settings over the packaged and the project's own")
    parser.add_argument("--evaluation", type=Path, required=True)
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = load_gate_config(args.config, project=Path.cwd())
    evaluation = json.loads(args.evaluation.read_text())
    inputs = gate_inputs(evaluation, json.loads(args.export.read_text()))
    verdict = decide(inputs, config)
    files = {name: model.get("file") for name, model in evaluation["models"].items()}
    GateReport(verdict.ship, verdict.artefact.value if verdict.artefact else None,
               tuple(verdict.reasons), verdict.checks, files).write(args.out)
    for check in verdict.checks:
        print(f"  [{'pass' if check.passed else 'FAIL'}] {check.detail}", flush=True)
    shipped = verdict.artefact.value if verdict.ship and verdict.artefact else None
    print(f"gate: {'ship ' + shipped if shipped else 'REFUSED'}", flush=True)


if __name__ == "__main__":
    main()
