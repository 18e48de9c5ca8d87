"""The retrain pipeline driven from Python: pin the dataset version, run `dvc repro` of the
retrain stages (streaming every line), and read back the candidate and the gate's verdict.

No Prefect here: `flows.retrain.flow` wraps these calls as tasks, `edgeloop flows retrain` puts
a progress bar on them, and tests call them directly.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.checks import GateReport
from flows.dvc_dataset import QUIET_ENV, dvc_executable, dvc_md5

STAGES = ("prepare", "train", "export", "evaluate", "gate", "profile")  # dvc.yaml order
LABELLED = "data/labelled"
CANDIDATE = "models/candidate"
STAGE_LINE = re.compile(r"^(?:Running stage|Stage) '([\w-]+)'")
PIPELINE_TIMEOUT_S = 3 * 3600


class RetrainError(RuntimeError):
    """The pipeline could not run or failed; the message names the step and the cause."""


@dataclass(frozen=True)
class DatasetPin:
    """The dataset a candidate was trained on: the git commit and each increment's DVC hash."""

    commit: str
    increments: dict[str, str]  # data/labelled/<batch> -> DVC directory hash

    def as_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "increments": self.increments}


@dataclass(frozen=True)
class Candidate:
    """What the pipeline produced and what the gate said about it."""

    dataset: DatasetPin
    ship: bool
    artefact: str | None  # "int8" | "fp32": the file that ships
    reasons: list[str]
    gate: dict[str, Any]  # metrics/gate.json
    evaluation: dict[str, Any]  # metrics/evaluate.json
    files: dict[str, Path]  # weights, fp32, int8, reference

    @property
    def model(self) -> Path | None:
        """The ONNX file to release, when the gate passed it."""
        return self.files[self.artefact] if self.ship and self.artefact else None


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RetrainError(f"git {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def pin_dataset(repo: Path, rev: str | None = None) -> DatasetPin:
    """The labelled increments at `rev` (default HEAD), which the working tree must match:
    a retrain names its data exactly, so a differing tree is refused, not silently used."""
    commit = _git(repo, "rev-parse", "--verify", f"{rev or 'HEAD'}^{{commit}}").strip()
    at_rev = {p for p in _git(repo, "ls-tree", "-r", "--name-only", commit, "--",
                              LABELLED).split() if p.endswith(".dvc")}
    here = {str(p.relative_to(repo)) for p in (repo / LABELLED).glob("*.dvc")}
    changed = sorted(p for p in at_rev & here
                     if _git(repo, "show", f"{commit}:{p}") != (repo / p).read_text())
    if at_rev != here or changed:
        differ = sorted(at_rev ^ here) + changed
        raise RetrainError(
            f"{LABELLED} in the working tree is not the dataset at {rev or 'HEAD'} "
            f"({commit[:12]}): {', '.join(differ)} differ. Check it out first: "
            f"git checkout {commit[:12]} -- {LABELLED} && dvc checkout {LABELLED}")
    if not at_rev:
        raise RetrainError(f"no labelled increments under {LABELLED} at {commit[:12]}: "
                           "collect labels before a retrain")
    return DatasetPin(commit, {p.removesuffix(".dvc"): dvc_md5(repo / p)[0]
                               for p in sorted(at_rev)})


def _dvc_env() -> dict[str, str]:
    # Stage commands call `python` and `dvc`: this interpreter's, even when PATH lacks its venv.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, **QUIET_ENV, "PATH": path}


def _lines(stream: io.BufferedReader) -> Iterator[str]:
    """Lines of a byte stream, also those a progress bar ends with a carriage return."""
    buffer = ""
    while chunk := stream.read1(4096):
        buffer += chunk.decode(errors="replace")
        *done, buffer = re.split(r"[\r\n]", buffer)
        yield from (line for line in done if line.strip())
    if buffer.strip():
        yield buffer


def reproduce(repo: Path, on_line: Callable[[str], None],
              on_stage: Callable[[str], None] | None = None, target: str = STAGES[-1]) -> None:
    """`dvc checkout` of the labelled data, then `dvc repro <target>`; every output line goes to
    `on_line`, each stage DVC starts or skips to `on_stage`. Raises RetrainError on failure."""
    env = _dvc_env()
    if (repo / LABELLED).is_dir():
        done = subprocess.run([dvc_executable(), "checkout", "--quiet", LABELLED], cwd=repo,
                              env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:  # not in the local cache: fetch it from the remote
            subprocess.run([dvc_executable(), "pull", "--quiet", LABELLED], cwd=repo, env=env,
                           capture_output=True, text=True, check=False)
    started = time.monotonic()
    process = subprocess.Popen([dvc_executable(), "repro", target], cwd=repo, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tail: list[str] = []
    for line in _lines(process.stdout):  # type: ignore[arg-type]  # PIPE: never None
        on_line(line)
        tail = [*tail[-20:], line]
        match = STAGE_LINE.match(line)
        if match and on_stage:
            on_stage(match.group(1))
        if time.monotonic() - started > PIPELINE_TIMEOUT_S:
            process.kill()
            raise RetrainError(f"dvc repro ran past {PIPELINE_TIMEOUT_S} s and was stopped")
    if process.wait() != 0:
        # dvc's own ERROR lines and the stage's (`edgeloop: error: ...`, a traceback's last)
        errors = [t for t in tail if "error" in t.lower()] or tail[-3:]
        raise RetrainError(f"dvc repro {target} failed: {' | '.join(errors)[-600:]}")


def read_candidate(repo: Path, dataset: DatasetPin) -> Candidate:
    gate = GateReport.read(repo / "metrics" / "gate.json")
    evaluation = json.loads((repo / "metrics" / "evaluate.json").read_text())
    folder = repo / CANDIDATE
    files = {"weights": folder / "best.pt", "fp32": folder / "model.onnx",
             "int8": folder / "model.int8.onnx", "reference": folder / "reference.parquet"}
    return Candidate(dataset, gate.ship, gate.artefact, list(gate.reasons), gate.as_dict(),
                     evaluation, files)


def comparison_markdown(candidate: Candidate) -> str:
    """Champion vs challenger, per slice, then the gate's checks: the flow's artifact."""
    models = candidate.evaluation["models"]
    lines = ["# Retrain: champion vs challenger", "",
             f"Dataset: git {candidate.dataset.commit[:12]}, "
             + ", ".join(f"`{k}` ({v[:8]})" for k, v in candidate.dataset.increments.items()), "",
             "| model | golden mAP50 | golden mAP50-95 | drift mAP50 | drift mAP50-95 | "
             "p95 infer ms |", "|---|---|---|---|---|---|"]
    for name in ("champion", "fp32", "int8"):
        if name not in models:
            continue
        m = models[name]
        label = "champion" if name == "champion" else f"challenger {name}"
        p95 = max(m[s]["latency"]["infer"]["p95_ms"] for s in ("golden", "drift"))
        lines.append(f"| {label} | {m['golden']['map50']:.3f} | {m['golden']['map50_95']:.3f} | "
                     f"{m['drift']['map50']:.3f} | {m['drift']['map50_95']:.3f} | {p95:.1f} |")
    verdict = (f"**ship {candidate.artefact}**" if candidate.ship else "**refused**")
    lines += ["", f"Gate: {verdict}", ""]
    lines += [f"- {'pass' if c['passed'] else '**FAIL**'}: {c['detail']}"
              for c in candidate.gate["checks"]]
    return "\n".join(lines) + "\n"
