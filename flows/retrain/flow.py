"""The `retrain` Prefect flow: pin a dataset version, run the retrain stages of `dvc.yaml`
(prepare, fine-tune, export fp32 + int8, evaluate, gate, profile) with their output streamed
into the run's log, attach champion vs challenger as a markdown artifact, and say whether the
candidate ships (or the gate's reasons). `flows.chain` hands a passing candidate to release.

Import after `flows.offline.use_offline_environment` (Prefect reads its settings on import).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.retrain.run import (
    Candidate,
    DatasetPin,
    comparison_markdown,
    pin_dataset,
    read_candidate,
    reproduce,
)

ARTIFACT_KEY = "retrain"
LOG_EVERY_S = 2.0  # progress-bar redraws are logged at most this often


@task(cache_policy=NO_CACHE)
def pin(repo: Path, dataset: str | None) -> DatasetPin:
    return pin_dataset(repo, dataset)


@task(cache_policy=NO_CACHE)
def run_pipeline(repo: Path, on_stage: Callable[[str], None] | None = None) -> None:
    logger = get_run_logger()
    last = 0.0

    def log_line(line: str) -> None:
        nonlocal last
        # Ultralytics redraws its bars many times a second; keep one line in LOG_EVERY_S.
        is_bar = "%|" in line or "it/s]" in line or "s/it]" in line
        if is_bar and time.monotonic() - last < LOG_EVERY_S:
            return
        last = time.monotonic() if is_bar else last
        logger.info("%s", line.rstrip())

    reproduce(repo, log_line, on_stage)


@flow(name="retrain")
def retrain(repo: str = ".", dataset: str | None = None,
            on_stage: Callable[[str], None] | None = None) -> Candidate:
    """Fine-tune the champion on `dataset` (a git revision; default HEAD), export and gate it."""
    root = Path(repo).resolve()
    logger = get_run_logger()
    pinned = pin(root, dataset)
    logger.info("dataset %s: %s", pinned.commit[:12], ", ".join(pinned.increments))
    run_pipeline(root, on_stage)
    candidate = read_candidate(root, pinned)
    create_markdown_artifact(comparison_markdown(candidate), key=ARTIFACT_KEY,
                             description="Champion vs challenger and the release gate")
    if candidate.ship:
        logger.info("candidate passes the gate: ship %s (%s)", candidate.artefact,
                    candidate.model)
    else:
        logger.warning("candidate refused by the gate: %s", "; ".join(candidate.reasons))
    return candidate
