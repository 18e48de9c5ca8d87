"""Where frames come from: an image folder, a video, a camera, a stream URL or the simulator;
and `paced`, which holds a source to a camera's frame rate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from sim.stream import Layer

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
    or the synthetic line as `sim:SCENARIO[@ONSET][,SCENARIO@ONSET...]`, each scenario arriving
    at its onset frame (`sim:new_variant@600,camera_bump@300`; `sim_name` keeps devices'
    streams apart)."""
    if spec.startswith("sim:"):
        from sim.stream import StreamSpecError, parse_layers  # the simulator as a camera

        try:
            layers = parse_layers(spec.removeprefix("sim:"))  # refuse a bad spec up front
        except StreamSpecError as error:
            raise SourceError(f"frame source {spec!r}: {error}") from None
        return _simulated(layers, sim_seed, sim_width, sim_name)
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
        return _images(files)
    if spec.isdigit() or "://" in spec or path.is_file():
        return _capture(int(spec) if spec.isdigit() else spec)
    raise SourceError(f"frame source {spec!r} is not a folder, a file, a camera index, a URL "
                      "or sim:SCENARIO[@ONSET][,SCENARIO@ONSET...]")


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


def _simulated(layers: tuple[Layer, ...], seed: int, width: int,
               name: str) -> Iterator[CapturedFrame]:
    from sim.stream import layered_stream

    for frame in layered_stream(layers, seed=seed, width=width, name=name):
        yield CapturedFrame(frame.image, datetime.now(UTC), str(frame.index))


def paced(frames: Iterator[CapturedFrame], fps: float) -> Iterator[CapturedFrame]:
    """`frames` at most `fps` a second, as a camera delivers them.

    Each frame is taken from the source when it is due, so its capture time is fresh. A consumer
    that falls behind gets the next frame at once and the pace restarts from there: no burst of
    frames to catch up.
    """
    if fps <= 0:
        raise ValueError(f"fps {fps} must be > 0")
    interval, source = 1.0 / fps, iter(frames)
    due = time.monotonic()
    while True:
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        else:
            due = now
        frame = next(source, None)
        if frame is None:
            return
        yield frame
        due += interval
