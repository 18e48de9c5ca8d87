"""Where frames come from: an image folder, a video, a camera, a stream URL or the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class SourceError(ValueError):
    """A frame source that cannot be opened or read."""


@dataclass(frozen=True)
class CapturedFrame:
    image: np.ndarray  # BGR uint8
    captured_at: datetime
    name: str  # file name, or the frame's position in the stream


def open_source(spec: str, *, sim_seed: int = 0, sim_width: int = 320,
                sim_name: str = "device") -> Iterator[CapturedFrame]:
    """Frames from `spec`: a folder of images, a video file, a camera index, an rtsp/http URL,
    or `sim:SCENARIO` (the synthetic line; `sim_name` keeps devices' streams apart)."""
    if spec.startswith("sim:"):
        from sim.scenarios import get_scenario  # the simulator stands in for a camera

        scenario = get_scenario(spec.removeprefix("sim:")).name  # refuse a bad name up front
        return _simulated(scenario, sim_seed, sim_width, sim_name)
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
        return _images(files)
    if spec.isdigit() or "://" in spec or path.is_file():
        return _capture(int(spec) if spec.isdigit() else spec)
    raise SourceError(f"frame source {spec!r} is not a folder, a file, a camera index, a URL "
                      "or sim:SCENARIO")


def _images(files: list[Path]) -> Iterator[CapturedFrame]:
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"cannot decode image {path}")
        yield CapturedFrame(image, datetime.now(UTC), path.name)


def _capture(target: int | str) -> Iterator[CapturedFrame]:
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        raise SourceError(f"cannot open video source {target!r}")
    index = 0
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield CapturedFrame(image, datetime.now(UTC), str(index))
            index += 1
    finally:
        capture.release()


def _simulated(scenario: str, seed: int, width: int, name: str) -> Iterator[CapturedFrame]:
    from sim.stream import stream

    for frame in stream(scenario, seed=seed, width=width, name=name):
        yield CapturedFrame(frame.image, datetime.now(UTC), str(frame.index))
