"""One labelling round: the hub's most informative unsent frames become Label Studio tasks, each
pre-annotated with the model's boxes, most uncertain first (the Prefect flow around it is
`flows.labelling.flow.request_labels`).

Idempotent: a sample already in the ledger (or already a task in the project) is never sent
again, so a round can be rerun after any failure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edge_runtime.contract import SampleMeta
from flows.labelling.labelstudio_client import LabelStudioClient, NewTask, Project
from flows.labelling.ledger import Ledger, SentTask
from flows.labelling.select import (
    candidate,
    look_of_bytes,
    near_copies,
    select_for_labelling,
    shortlist,
)
from flows.labelling.settings import LabellingSettings, label_config_xml
from flows.labelling.yolo_labels import detections_to_result
from hub.client import HubClient

EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png"}


@dataclass(frozen=True)
class Workspace:
    """The fleet's Label Studio project and the folder its images are served from."""

    project: Project
    files_dir: Path  # below the server's LOCAL_FILES_DOCUMENT_ROOT
    files_root: Path


@dataclass(frozen=True)
class RoundReport:
    project_id: int
    round_id: str
    on_hub: int  # samples listed on the hub
    unsent: int
    shortlisted: int  # the most uncertain, whose images were fetched and compared
    sent: list[SentTask] = field(default_factory=list)
    passed_over: int = 0  # near-copies of sent frames, never considered again

    def summary(self) -> str:
        return (f"round {self.round_id}: {len(self.sent)} new tasks in project "
                f"{self.project_id} ({self.unsent} unsent of {self.on_hub} samples on the hub, "
                f"{self.shortlisted} shortlisted, {self.passed_over} near-copies passed over)")

    def as_dict(self) -> dict[str, Any]:
        return {"project_id": self.project_id, "round": self.round_id, "on_hub": self.on_hub,
                "unsent": self.unsent, "shortlisted": self.shortlisted,
                "passed_over": self.passed_over,
                "sent": [{"record_id": t.record_id, "task_id": t.task_id} for t in self.sent]}


def bootstrap(settings: LabellingSettings, ls: LabelStudioClient) -> Workspace:
    """The fleet's project (created if missing, labelling config from the class names) and its
    local-files storage. Idempotent."""
    project = ls.ensure_project(settings.project_title, settings.project_description,
                                label_config_xml(settings.classes))
    root = settings.labelstudio.files_root.resolve()
    files_dir = root / settings.fleet
    files_dir.mkdir(parents=True, exist_ok=True)
    ls.ensure_local_storage(project.id, files_dir, f"edgeloop frames of {settings.fleet}")
    return Workspace(project, files_dir, root)


def reconcile(ledger: Ledger, ls: LabelStudioClient, project_id: int) -> dict[str, SentTask]:
    """The ledger, with any task Label Studio has that the ledger missed folded back in."""
    sent = ledger.sent(project_id)
    found = [SentTask(str(t.data["record_id"]), t.id) for t in ls.tasks(project_id)
             if isinstance(t.data.get("record_id"), str) and t.data["record_id"] not in sent]
    if found:
        ledger.record_sent(project_id, found, "reconciled")
        sent = ledger.sent(project_id)
    return sent


def task_data(meta: SampleMeta, image_url: str, round_id: str) -> dict[str, Any]:
    """What the Data Manager shows, sorts and filters by; `image` is what the annotator sees."""
    return {"image": image_url, "record_id": meta.record_id, "device": meta.device_id,
            "frame_id": meta.frame_id, "captured_at": meta.captured_at.isoformat(),
            "policy": meta.policy.value, "uncertainty": round(meta.uncertainty, 4),
            "model_version": meta.model_version, "detections": len(meta.predictions),
            "width": meta.width, "height": meta.height, "round": round_id}


def new_task(meta: SampleMeta, image_url: str, round_id: str, classes: Sequence[str]) -> NewTask:
    return NewTask(
        data=task_data(meta, image_url, round_id),
        prediction_result=detections_to_result(meta.predictions, classes, meta.width,
                                               meta.height),
        model_version=meta.model_version,
        score=round(1.0 - meta.uncertainty, 4),  # the model's confidence in the whole frame
    )


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def request_round(settings: LabellingSettings, hub: HubClient, ls: LabelStudioClient,
                  ledger: Ledger, *, since: datetime | None = None,
                  round_id: str | None = None) -> RoundReport:
    """Selects this round's frames and creates their tasks; see the module docstring."""
    round_id = round_id or datetime.now(UTC).strftime("r%Y%m%dT%H%M%SZ")
    space = bootstrap(settings, ls)
    pid = space.project.id
    sent = reconcile(ledger, ls, pid)
    stored = hub.samples(since=since, limit=settings.selection.max_samples)
    skip = ledger.passed_over(pid)
    unsent = [s for s in stored if s.record_id not in sent and s.record_id not in skip]
    kinds = {s.record_id: s.content_type for s in unsent}
    budget = settings.selection.budget
    short = shortlist([s.meta for s in unsent], budget * settings.selection.shortlist_factor)
    images = {m.record_id: hub.sample_image(m.record_id) for m in short}
    candidates = [candidate(m, look_of_bytes(images[m.record_id])) for m in short]
    earlier = [t.look for t in sent.values() if t.look is not None]
    chosen = select_for_labelling(candidates, budget, min_distance=settings.selection.min_distance,
                                  already_chosen=earlier)
    picked = {c.record_id for c in chosen}
    copies = near_copies([c for c in candidates if c.record_id not in picked],
                         [*earlier, *(c.look for c in chosen)],
                         min_distance=settings.selection.min_distance)
    metas = {m.record_id: m for m in short}
    tasks, looks = [], []
    for item in chosen:
        meta = metas[item.record_id]
        path = (space.files_dir / meta.device_id
                / f"{meta.frame_id}{EXTENSIONS.get(kinds[item.record_id], '.jpg')}")
        _write_atomically(path, images[item.record_id])
        url = "/data/local-files/?d=" + quote(str(path.relative_to(space.files_root)))
        tasks.append(new_task(meta, url, round_id, settings.classes))
        looks.append(item.look)
    if tasks:
        ls.fetch(tasks[0].data["image"])  # the server must serve our folder before any task
    ids = ls.import_tasks(pid, tasks)
    created = [SentTask(t.data["record_id"], i, x) for t, i, x in zip(tasks, ids, looks,
                                                                       strict=True)]
    ledger.record_sent(pid, created, round_id)
    ledger.record_passed_over(pid, [c.record_id for c in copies], round_id)
    return RoundReport(pid, round_id, len(stored), len(unsent), len(short), created,
                       passed_over=len(copies))
