"""Where frames come from: an image folder, a video, a camera, a stream URL, or a source
plugged in by name (`SCHEME:SPEC`, e.g. the simulator's `sim:`) through the
`edgeloop.frame_sources` entry point or `register_source`; and `paced`, which holds a source to
a camera's frame rate."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
ENTRY_POINT_GROUP = "edgeloop.frame_sources"  # name = the scheme before ':' in a source spec


class PluggedSource(Protocol):
    """Opens `SCHEME:SPEC`'s SPEC: (frame name, BGR image) pairs; a bad SPEC raises ValueError
    before the first frame. `seed`, `width` and `name` keep simulated devices apart."""

    def __call__(self, spec: str, *, seed: int, width: int,
                 name: str) -> Iterator[tuple[str, np.ndarray]]: ...


_REGISTERED: dict[str, PluggedSource] = {}


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
    or a plugged-in source such as the synthetic line,
    `sim:SCENARIO[@ONSET][,SCENARIO@ONSET...]`, each scenario arriving at its onset frame
    (`sim:new_variant@600,camera_bump@300`; `sim_name` keeps devices' streams apart)."""
    scheme, colon, rest = spec.partition(":")
    plugged = _plugged(scheme) if colon and not rest.startswith("//") else None
    if plugged is not None:
        try:  # a bad spec is refused up front, before the first frame
            frames = plugged(rest, seed=sim_seed, width=sim_width, name=sim_name)
        except ValueError as error:
            raise SourceError(f"frame source {spec!r}: {error}") from None
        return _stamped(frames)
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
        return image_frames(files)
    if spec.isdigit() or "://" in spec or path.is_file():
        return _capture(int(spec) if spec.isdigit() else spec)
    schemes = ", ".join(f"{s}:SPEC" for s in sorted(_known_schemes()))
    raise SourceError(f"frame source {spec!r} is not a folder, a file, a camera index, a URL "
                      f"or one of {schemes or 'no plugged-in sources'}")


def register_source(scheme: str, opener: PluggedSource) -> None:
    """Plug in `opener` for specs `SCHEME:...` (overrides an entry point of that name)."""
    _REGISTERED[scheme] = opener


def _plugged(scheme: str) -> PluggedSource | None:
    if scheme in _REGISTERED:
        return _REGISTERED[scheme]
    for point in entry_points(group=ENTRY_POINT_GROUP, name=scheme):
        opener: PluggedSource = point.load()
        _REGISTERED[scheme] = opener
        return opener
    return None


def _known_schemes() -> set[str]:
    return set(_REGISTERED) | {p.name for p in entry_points(group=ENTRY_POINT_GROUP)}


def image_frames(files: Iterable[Path]) -> Iterator[CapturedFrame]:
    """The images `files`, decoded, in order (a decode failure is a SourceError)."""
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


def _stamped(frames: Iterator[tuple[str, np.ndarray]]) -> Iterator[CapturedFrame]:
    for name, image in frames:
        yield CapturedFrame(image, datetime.now(UTC), name)


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
