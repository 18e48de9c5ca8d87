"""A contact sheet of every scenario, boxes drawn, so a person can see what each one does."""

from __future__ import annotations

import cv2
import numpy as np

from sim.parts import CLASS_NAMES
from sim.scenarios import SCENARIOS
from sim.stream import stream

BOX_COLOURS = ((0, 0, 255), (0, 200, 0), (255, 80, 0))  # BGR per class


def contact_sheet(seed: int = 0, per_scenario: int = 4, width: int = 320) -> np.ndarray:
    """One row per scenario, the same layouts in every row, each row titled with its name."""
    rows = []
    for name in SCENARIOS:
        tiles = []
        for frame in stream(name, seed=seed, width=width, frames=per_scenario, name="preview"):
            tile = frame.image.copy()
            for (x1, y1, x2, y2), cls in zip(frame.truth.boxes, frame.truth.classes, strict=True):
                cv2.rectangle(tile, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1),
                              BOX_COLOURS[cls], 1)
            tiles.append(tile)
        row = np.hstack(tiles)
        title = np.full((22, row.shape[1], 3), 255, np.uint8)
        cv2.putText(title, name, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
        rows.append(np.vstack([title, row]))
    legend = np.full((22, rows[0].shape[1], 3), 255, np.uint8)
    for k, name in enumerate(CLASS_NAMES):
        cv2.putText(legend, name, (6 + 90 * k, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    BOX_COLOURS[k], 1, cv2.LINE_AA)
    return np.vstack([legend, *rows])
