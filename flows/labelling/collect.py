"""Finished annotations become a new dataset increment: YOLO labels under
`data/labelled/<batch>/`, added to DVC, committed, pushed; the returned version is what a retrain
names. `collect_round` is the whole step; the choice of annotations is pure (`finished_labels`).

Idempotent: a task already in the ledger's `collected` table is never collected again; a task
whose annotation is refused (a box outside the image, an unknown class) is reported and left
for the next round, once someone fixes it in Label Studio.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows.dvc_dataset import (
    DatasetVersion,
    check_repository,
    commit_folder,
    discard_folder,
    push_version,
)
from flows.labelling.labelstudio_client import Annotation, LabelStudioClient, Task
from flows.labelling.ledger import Ledger
from flows.labelling.settings import LabellingSettings, label_config_xml
from flows.labelling.yolo_labels import LabelError, YoloBox, result_to_yolo, yolo_text

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FinishedLabel:
    task_id: int
    annotation_id: int
    record_id: str
    boxes: tuple[YoloBox, ...]  # empty: a negative frame (nothing to find on it)

    @property
    def stem(self) -> str:
        """File name stem: the record id with its slash made a separator safe in a path."""
        device, _, frame = self.record_id.rpartition("/")
        return f"{device}_{frame}"


@dataclass(frozen=True)
class RejectedLabel:
    task_id: int
    record_id: str
    reason: str


@dataclass(frozen=True)
class CollectReport:
    project_id: int
    finished: int  # finished tasks not collected before
    rejected: list[RejectedLabel] = field(default_factory=list)
    batch: str | None = None
    version: DatasetVersion | None = None
    boxes: int = 0
    negatives: int = 0

    @property
    def frames(self) -> int:
        """Frames in the new version (0 without one)."""
        return 0 if self.version is None else self.finished - len(self.rejected)

    def summary(self) -> str:
        if self.version is None:
            return (f"no new dataset version: {self.finished} finished tasks to collect, "
                    f"{len(self.rejected)} refused")
        return (f"dataset version {self.version.ref}: {self.frames} "
                f"frames ({self.boxes} boxes, {self.negatives} negatives), "
                f"{len(self.rejected)} refused, pushed: {self.version.pushed}")

    def as_dict(self) -> dict[str, Any]:
        version = None if self.version is None else {
            "path": self.version.path, "git_commit": self.version.git_commit,
            "dvc_md5": self.version.dvc_md5, "ref": self.version.ref,
            "pushed": self.version.pushed}
        return {"project_id": self.project_id, "batch": self.batch, "finished": self.finished,
                "frames": self.frames, "boxes": self.boxes, "negatives": self.negatives,
                "version": version, "rejected": [vars(r) for r in self.rejected]}


def chosen_annotation(task: Task) -> Annotation | None:
    """The annotation a task's label comes from: one marked ground truth, else the latest
    submitted one; None when there is none (open) or all were cancelled (skipped)."""
    submitted = [a for a in task.annotations if not a.was_cancelled]
    if not submitted:
        return None
    return max(submitted, key=lambda a: (a.ground_truth, a.id))


def finished_labels(tasks: Iterable[Task], classes: Sequence[str], collected: set[int]
                    ) -> tuple[list[FinishedLabel], list[RejectedLabel]]:
    """The labels of finished, not yet collected tasks, and the ones refused (with why)."""
    done, refused = [], []
    for task in sorted(tasks, key=lambda t: t.id):
        annotation = chosen_annotation(task)
        record_id = task.data.get("record_id")
        if task.id in collected or annotation is None:
            continue
        if not isinstance(record_id, str) or "/" not in record_id:
            refused.append(RejectedLabel(task.id, str(record_id), "task has no record_id"))
            continue
        try:
            boxes = tuple(result_to_yolo(annotation.result, classes))
        except LabelError as exc:
            refused.append(RejectedLabel(task.id, record_id, f"annotation {annotation.id}: "
                                                             f"{exc}"))
            continue
        done.append(FinishedLabel(task.id, annotation.id, record_id, boxes))
    return done, refused


def _suffix(data: bytes) -> str:
    return ".png" if data[:8] == b"\x89PNG\r\n\x1a\n" else ".jpg"


def write_increment(folder: Path, labels: Sequence[FinishedLabel], images: dict[int, bytes],
                    manifest: dict[str, Any]) -> None:
    """images/, labels/ and manifest.json, written beside `folder` and renamed into place, so
    a crash never leaves half an increment where DVC would pick it up."""
    if folder.exists():
        raise FileExistsError(f"increment {folder} exists already")
    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "images").mkdir(parents=True)
    (staging / "labels").mkdir()
    items = []
    for label in labels:
        image = images[label.task_id]
        name = label.stem + _suffix(image)
        (staging / "images" / name).write_bytes(image)
        (staging / "labels" / f"{label.stem}.txt").write_text(yolo_text(label.boxes))
        items.append({"record_id": label.record_id, "task_id": label.task_id,
                      "annotation_id": label.annotation_id, "image": f"images/{name}",
                      "label": f"labels/{label.stem}.txt", "boxes": len(label.boxes)})
    (staging / MANIFEST).write_text(json.dumps({**manifest, "frames": len(items),
                                                "items": items}, indent=1) + "\n")
    os.replace(staging, folder)


def batch_name(project_id: int, now: datetime, existing: Path) -> str:
    base = f"ls{project_id}-{now.strftime('%Y%m%dT%H%M%SZ')}"
    name, n = base, 1
    while (existing / name).exists() or (existing / f"{name}.dvc").exists():
        n += 1
        name = f"{base}-{n}"
    return name


def collect_round(settings: LabellingSettings, ls: LabelStudioClient, ledger: Ledger,
                  repo: Path, *, now: datetime | None = None) -> CollectReport:
    """Collects every finished, uncollected task of the fleet's project into one new version."""
    check_repository(repo)
    now = now or datetime.now(UTC)
    project = ls.ensure_project(settings.project_title, settings.project_description,
                                label_config_xml(settings.classes))
    tasks = list(ls.tasks(project.id, "finished"))
    labels, refused = finished_labels(tasks, settings.classes, ledger.collected(project.id))
    report = CollectReport(project.id, len(labels) + len(refused), refused)
    if len(labels) < settings.collection.min_frames:
        return report
    by_id = {t.id: t for t in tasks}
    images = {label.task_id: ls.image(by_id[label.task_id]) for label in labels}
    parent = repo / settings.collection.dataset_dir
    parent.mkdir(parents=True, exist_ok=True)
    batch = batch_name(project.id, now, parent)
    folder = parent / batch
    manifest = {"batch": batch, "project_id": project.id, "project": project.title,
                "labelstudio": ls.url, "created_at": now.isoformat(),
                "classes": list(settings.classes)}
    write_increment(folder, labels, images, manifest)
    try:
        version = commit_folder(repo, folder, f"labels: {batch}, {len(labels)} frames from "
                                              f"Label Studio project {project.id}")
    except BaseException:
        discard_folder(folder)  # not committed: the next round starts clean
        raise
    ledger.record_collected(project.id, [(x.task_id, x.annotation_id) for x in labels], batch)
    if settings.collection.push:
        version = push_version(repo, version)
    return CollectReport(project.id, report.finished, refused, batch, version,
                         boxes=sum(len(x.boxes) for x in labels),
                         negatives=sum(1 for x in labels if not x.boxes))
