"""Which finished annotations become labels, and how an increment is laid out on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.labelling.collect import (
    FinishedLabel,
    chosen_annotation,
    finished_labels,
    write_increment,
)
from flows.labelling.labelstudio_client import Annotation, Task
from flows.labelling.yolo_labels import YoloBox

CLASSES = ("nut", "washer", "bolt")


def rect(label: str, x: float = 10.0) -> dict:
    return {"from_name": "label", "to_name": "image", "type": "rectanglelabels",
            "value": {"x": x, "y": 10.0, "width": 20.0, "height": 20.0, "rotation": 0,
                      "rectanglelabels": [label]}}


def task(task_id: int, *annotations: Annotation) -> Task:
    return Task(task_id, {"record_id": f"cam-1/{task_id * 10}", "image": "/x.jpg"},
                annotations)


def test_skipped_open_and_already_collected_tasks_are_left_out() -> None:
    tasks = [task(1, Annotation(101, [rect("bolt")], False)),
             task(2, Annotation(102, [], True)),  # skipped: a cancelled annotation only
             task(3),  # open
             task(4, Annotation(104, [rect("nut")], False))]
    done, refused = finished_labels(tasks, CLASSES, collected={4})
    assert [(x.task_id, x.annotation_id, x.record_id) for x in done] == [(1, 101, "cam-1/10")]
    assert done[0].boxes[0].cls == 2 and refused == []


def test_an_empty_submitted_annotation_is_a_negative_frame() -> None:
    done, _ = finished_labels([task(5, Annotation(105, [], False))], CLASSES, set())
    assert done == [FinishedLabel(5, 105, "cam-1/50", ())]


def test_ground_truth_wins_then_the_latest_submitted_annotation() -> None:
    first, later = Annotation(1, [rect("nut")], False), Annotation(2, [rect("bolt")], False)
    cancelled = Annotation(3, [], True)
    assert chosen_annotation(task(1, first, later, cancelled)) == later
    marked = Annotation(1, [rect("nut")], False, ground_truth=True)
    assert chosen_annotation(task(1, marked, later)) == marked
    assert chosen_annotation(task(1, cancelled)) is None


def test_a_bad_box_refuses_the_task_with_the_reason_and_keeps_the_others() -> None:
    tasks = [task(1, Annotation(101, [rect("nut", x=95.0)], False)),
             task(2, Annotation(102, [rect("screw")], False)),
             task(3, Annotation(103, [rect("washer")], False)),
             Task(4, {"image": "/y.jpg"}, (Annotation(104, [], False),))]
    done, refused = finished_labels(tasks, CLASSES, set())
    assert [x.task_id for x in done] == [3]
    reasons = {r.task_id: r.reason for r in refused}
    assert "annotation 101: box 0: x from 95% to 115% leaves the image" in reasons[1]
    assert "unknown class 'screw'" in reasons[2]
    assert reasons[4] == "task has no record_id"


def test_increment_holds_images_labels_and_a_manifest_of_records_and_tasks(tmp_path: Path
                                                                          ) -> None:
    labels = [FinishedLabel(1, 101, "cam-1/10", (YoloBox(2, 0.5, 0.5, 0.2, 0.1),)),
              FinishedLabel(2, 102, "cam_2/7", ())]
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 8
    folder = tmp_path / "data" / "labelled" / "b1"
    folder.parent.mkdir(parents=True)
    write_increment(folder, labels, {1: b"\xff\xd8jpeg", 2: png}, {"batch": "b1"})
    assert sorted(p.name for p in (folder / "images").iterdir()) == ["cam-1_10.jpg",
                                                                    "cam_2_7.png"]
    assert (folder / "labels" / "cam-1_10.txt").read_text() == "2 0.500000 0.500000 0.200000 " \
                                                               "0.100000\n"
    assert (folder / "labels" / "cam_2_7.txt").read_text() == ""
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["batch"] == "b1" and manifest["frames"] == 2
    assert [(i["record_id"], i["task_id"], i["annotation_id"]) for i in manifest["items"]] == [
        ("cam-1/10", 1, 101), ("cam_2/7", 2, 102)]
    assert not list(folder.parent.glob(".*partial"))
    with pytest.raises(FileExistsError):
        write_increment(folder, labels, {1: b"", 2: b""}, {})
