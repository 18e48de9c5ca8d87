"""The release candidate: the gate's decision, its files and input signature, and its lineage
(git, DVC data increments, params).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.contract import (
    MODEL_FILE,
    InputSignature,
)
from flows.checks import GateReport, GateReportError
from flows.dvc_dataset import dvc_md5
from flows.reference import REFERENCE_FILE

CANDIDATE_MODELS = {"int8": "model.int8.onnx", "fp32": "model.onnx"}
LABELLED = "data/labelled"
MAX_DATASET_VERSION_CHARS = 200  # Lineage.dataset_version


class ReleaseError(ValueError):
    """The release cannot go ahead: the message names what is missing or refused."""


@dataclass(frozen=True)
class GateDecision:
    """metrics/gate.json as the release needs it."""

    ship: bool
    artefact: str | None  # "int8" | "fp32"
    reasons: list[str]
    metrics: dict[str, float]  # each numeric check's value, by check name


def read_gate(path: Path) -> GateDecision:
    try:
        gate = GateReport.read(path)
    except GateReportError as exc:
        raise ReleaseError(str(exc)) from None
    if gate.ship and gate.artefact not in CANDIDATE_MODELS:
        raise ReleaseError(f"{path}: artefact {gate.artefact!r} is not one of "
                           f"{', '.join(CANDIDATE_MODELS)}")
    return GateDecision(gate.ship, gate.artefact, list(gate.reasons), gate.metrics)


def candidate_files(candidate: Path, gate: GateDecision) -> dict[str, Path]:
    """The files a release of the candidate carries, by their name in the release."""
    if not gate.ship or gate.artefact is None:
        raise ReleaseError("the gate refused this candidate: "
                           + ("; ".join(gate.reasons) or "no reason given"))
    files = {MODEL_FILE: candidate / CANDIDATE_MODELS[gate.artefact],
             REFERENCE_FILE: candidate / REFERENCE_FILE}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ReleaseError(f"candidate files missing: {', '.join(missing)} (run the retrain "
                           "pipeline: `edgeloop flows retrain`)")
    return files


def input_signature(model: Path) -> InputSignature:
    """What the model expects, from the metadata the YOLO export wrote into it."""
    import ast

    import onnx

    try:
        meta = {p.key: p.value for p in onnx.load(str(model), load_external_data=False)
                .metadata_props}
        names = ast.literal_eval(meta["names"])
        imgsz = ast.literal_eval(meta.get("imgsz", "[640, 640]"))
    except Exception as exc:  # onnx raises several unrelated types on a broken file
        raise ReleaseError(f"{model}: no readable class names / input size in the model's "
                           f"metadata ({type(exc).__name__}: {exc})") from None
    side = max(imgsz) if isinstance(imgsz, list | tuple) else int(imgsz)
    return InputSignature(imgsz=side, classes=[str(names[i]) for i in range(len(names))])


def git_head(repo: Path) -> str:
    """The commit the release was built from; empty when `repo` is not a git work tree."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=False, timeout=30)
    return done.stdout.strip() if done.returncode == 0 else ""


def dataset_increments(repo: Path) -> dict[str, str]:
    """data/labelled/<batch> -> its DVC hash, from the .dvc files in the working tree."""
    return {str(p.relative_to(repo)).removesuffix(".dvc"): dvc_md5(p)[0]
            for p in sorted((repo / LABELLED).glob("*.dvc"))}


def dataset_version(increments: Mapping[str, str]) -> str:
    """Each increment with its DVC hash; a digest of them all when that is too long."""
    text = ",".join(f"{path}@{md5}" for path, md5 in increments.items())
    if len(text) <= MAX_DATASET_VERSION_CHARS:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    return f"{len(increments)} increments of {LABELLED}, sha256 of path@md5 list {digest}"


def params_hash(params: Path) -> str:
    return hashlib.sha256(params.read_bytes()).hexdigest() if params.is_file() else ""
