"""Writes rendered frames as a YOLO dataset folder: images/, labels/ and data.yaml."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import yaml

from sim.parts import CLASS_NAMES
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


def render_labelled_increment(folder: Path, scenario: str, frames: int, seed: int,
                              width: int = 320, device: str = "sim-1",
                              created_at: str = "2026-01-01T00:00:00+00:00") -> Path:
    """A labelled increment as `collect_labels` writes one (images/, labels/, manifest.json
    naming each frame's `device/frame_id` record), with the simulator's exact labels: for
    benchmarks and tests that need labelled data without a Label Studio round."""
    render_dataset(folder, scenario, frames, seed, width, split=folder.name)
    (folder / "data.yaml").unlink()
    items = [{"record_id": f"{device}/{1000 + 100 * i}", "image": f"images/{image.name}",
              "label": f"labels/{image.stem}.txt"}
             for i, image in enumerate(sorted((folder / "images").iterdir()))]
    manifest = {"batch": folder.name, "created_at": created_at, "classes": list(CLASS_NAMES),
                "scenario": scenario, "frames": len(items), "items": items}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return folder
