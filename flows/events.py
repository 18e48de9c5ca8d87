"""The loop's events: emitted by the flows, matched by the deployments' triggers (one list, so
an emitter and its trigger cannot drift apart)."""

from __future__ import annotations

from pathlib import Path

FLEET_EVENT = "edgeloop.drift.fleet-event"  # drift-check: most of the fleet drifted together
FLEET_RESOURCE = "edgeloop.fleet"
DATASET_EVENT = "edgeloop.dataset.version"  # collect-labels: a new labelled dataset version
DATASET_RESOURCE_PREFIX = "edgeloop.dataset."


def dataset_resource(repo: str | Path) -> str:
    """The resource id of a repository's labelled dataset, e.g. `edgeloop.dataset.edgeloop`."""
    return DATASET_RESOURCE_PREFIX + Path(repo).resolve().name
