"""The labelling Prefect flows: `request_labels` (hub frames to Label Studio) and
`collect_labels` (finished labels to a new DVC dataset version). Thin: parse, call, report.

Import this module only after `flows.offline.use_offline_environment` (Prefect reads its
settings on import).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.events import emit_event

from flows.events import DATASET_EVENT, dataset_resource
from flows.labelling.collect import collect_round
from flows.labelling.labelstudio_client import LabelStudioClient
from flows.labelling.ledger import Ledger
from flows.labelling.request import request_round
from flows.labelling.settings import LabellingSettings, load_labelling_settings
from hub.client import HubClient


def _settings(config: str | None, overrides: dict[str, Any] | None) -> LabellingSettings:
    return load_labelling_settings(Path(config) if config else None, os.environ,
                                   project=Path.cwd(), **(overrides or {}))


@flow(name="request-labels")
def request_labels(config: str | None = None,
                   overrides: dict[str, Any] | None = None,
                   since: datetime | None = None) -> dict[str, Any]:
    """Send the round's most informative unsent hub frames to Label Studio, pre-annotated.

    `overrides` are settings by flag name (`selection__budget`, `labelstudio__url`, ...).
    """
    settings = _settings(config, overrides)
    with HubClient(settings.hub_url, admin_token=settings.require_hub_token()) as hub, \
            LabelStudioClient(settings.labelstudio.url,
                              settings.labelstudio.require_token()) as ls:
        report = request_round(settings, hub, ls, Ledger(settings.ledger), since=since)
    get_run_logger().info(report.summary())
    return report.as_dict()


@flow(name="collect-labels")
def collect_labels(repo: str = ".", config: str | None = None,
                   overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Collect finished annotations into a new dataset increment in `repo` (git + DVC):
    dvc add, git commit, dvc push. Returns the dataset version (None when nothing is new)."""
    settings = _settings(config, overrides)
    with LabelStudioClient(settings.labelstudio.url, settings.labelstudio.require_token()) as ls:
        report = collect_round(settings, ls, Ledger(settings.ledger), Path(repo))
    logger = get_run_logger()
    logger.info(report.summary())
    for refused in report.rejected:
        logger.warning("task %s (%s) refused: %s", refused.task_id, refused.record_id,
                       refused.reason)
    result = report.as_dict()
    if result["version"] is not None:
        try:  # triggers the retrain deployment; a lost event must not fail the collection
            emit_event(DATASET_EVENT, resource={"prefect.resource.id": dataset_resource(repo)},
                       payload={**result["version"], "frames": result["frames"]})
        except Exception as error:
            logger.warning("could not emit %s: %s", DATASET_EVENT, error)
    return result
