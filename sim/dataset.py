"""Writes rendered frames as a YOLO dataset folder: images/, labels/ and data.yaml."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import yaml

from sim.render import CLASS_NAMES
from sim.stream import stream

JPEG_QUALITY = 92


def data_yaml(train: str, val: str, test: str | None = None) -> str:
    """A data.yaml with paths relative to its own folder (pass its absolute path to Ultralytics)."""
    spec: dict[str, object] = {"train": train, "val": val}
    if test:
        spec["test"] = test
    spec["names"] = dict(enumerate(CLASS_NAMES))
    return yaml.safe_dump(spec, sort_keys=False)


def render_dataset(
    out: Path,
    scenario: str,
    frames: int,
    seed: int,
    width: int = 320,
    split: str = "",
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Render `frames` frames of `scenario` into `out`; returns the data.yaml path.

    `split` keeps train, val and test sets of one seed apart; file names are stable, so the
    same arguments give byte-identical files.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    images, labels = out / "images", out / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for frame in stream(scenario, seed=seed, width=width, frames=frames, name=split or scenario):
        stem = f"{split or scenario}_{frame.index:06d}"
        ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError(f"could not encode frame {frame.index}")
        (images / f"{stem}.jpg").write_bytes(jpeg.tobytes())
        lines = frame.truth.yolo_lines()
        (labels / f"{stem}.txt").write_text("".join(f"{line}\n" for line in lines))
        if progress:
            progress(1)
    spec = out / "data.yaml"
    spec.write_text(data_yaml("images", "images"))
    return spec
