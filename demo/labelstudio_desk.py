"""Label Studio as the simulated annotator's desk (`sim.annotate.Desk`): open tasks, their
images and submitted annotations, all through the public API as a person in the UI would.
"""

from __future__ import annotations

from collections.abc import Sequence

from flows.labelling.labelstudio_client import LabelStudioClient, Task
from flows.labelling.yolo_labels import rectangle
from sim.annotate import DeskTask, TruthBox
from sim.parts import CLASS_NAMES


class LabelStudioDesk:
    def __init__(self, client: LabelStudioClient, project_id: int,
                 names: Sequence[str] = CLASS_NAMES) -> None:
        self.client, self.project_id, self.names = client, project_id, tuple(names)
        self._tasks: dict[int, Task] = {}

    def open_tasks(self) -> list[DeskTask]:
        """Open tasks, most uncertain first (the order the fleet's annotators work in)."""
        out = []
        for task in self.client.tasks(self.project_id, "open",
                                      ordering="-tasks:data.uncertainty"):
            self._tasks[task.id] = task
            frame_id = task.data.get("frame_id")
            out.append(DeskTask(task.id, str(task.data.get("device", "")),
                                frame_id if isinstance(frame_id, int) else None))
        return out

    def image(self, task: DeskTask) -> bytes:
        return self.client.image(self._tasks[task.id])

    def submit(self, task: DeskTask, boxes: Sequence[TruthBox], width: int, height: int
               ) -> None:
        result = [rectangle(self.names[b.cls], b.x1 / width, b.y1 / height, b.x2 / width,
                            b.y2 / height, width, height, region_id=f"a{i}")
                  for i, b in enumerate(boxes)]
        predictions = self._tasks[task.id].predictions
        # Started from the model's boxes, as in the UI: the annotation names its prediction.
        self.client.create_annotation(task.id, result,
                                      parent_prediction=predictions[0].id if predictions
                                      else None)
