"""The wings chained where the loop needs it: retrain, then release a candidate that passes the
gate. Kept out of both wings so that neither imports the other.

Import after `flows.offline.use_offline_environment` (Prefect reads its settings on import).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect import flow, get_run_logger

from flows.release.flow import release
from flows.retrain.flow import retrain
from flows.retrain.run import Candidate


@flow(name="retrain-and-release")
def retrain_and_release(repo: str = ".", dataset: str | None = None,
                        on_stage: Callable[[str], None] | None = None) -> Candidate:
    """`retrain` on `dataset` (a git revision; default HEAD); a candidate that passes the gate
    goes on to the `release` flow (signed, to canary)."""
    candidate = retrain(repo=repo, dataset=dataset, on_stage=on_stage)
    if candidate.ship:
        outcome = release(project=str(Path(repo).resolve()))
        get_run_logger().info("released as %s: %s", outcome.manifest.release_id, outcome.action)
    return candidate
