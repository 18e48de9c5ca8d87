"""Renders one conveyor-belt camera frame and its exact ground truth (numpy + OpenCV only).

The scene is composed on a padded canvas in frame coordinates: belt texture (warped by the
camera), then each part with its drop shadow; every part keeps an instance id, so the boxes are
the tight extent of each part's *visible* pixels after occlusion, camera motion and cropping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sim.conditions import Conditions
from sim.parts import Part, draw_part, place_parts

REFERENCE_WIDTH = 320  # lengths in Conditions and below are in pixels of a frame this wide


@dataclass(frozen=True)
class GroundTruth:
    """The parts visible in one frame: tight boxes (x1, y1, x2, y2 in pixels) and class ids."""

    boxes: np.ndarray  # (n, 4) float32, pixel edges: x2/y2 are one past the last pixel
    classes: np.ndarray  # (n,) int64
    variant: np.ndarray  # (n,) bool: the part is the new nut variant
    width: int
    height: int

    def yolo_lines(self) -> list[str]:
        """One `class cx cy w h` line per part, normalised to the frame, as YOLO reads them."""
        lines = []
        for (x1, y1, x2, y2), cls in zip(self.boxes, self.classes, strict=True):
            cx, cy = (x1 + x2) / 2 / self.width, (y1 + y2) / 2 / self.height
            bw, bh = (x2 - x1) / self.width, (y2 - y1) / self.height
            lines.append(f"{int(cls)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
        return lines


def frame_height(width: int) -> int:
    """Frames are 4:3, like most line cameras."""
    return round(width * 0.75)


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # BGR uint8
    truth: GroundTruth
    instances: np.ndarray  # uint8 per pixel: 0 = belt, k = the part of the k-th label


def render_frame(
    rng: np.random.Generator, conditions: Conditions, width: int
) -> tuple[np.ndarray, GroundTruth]:
    """Render one BGR uint8 frame of `width` x 3/4 `width` pixels under `conditions`."""
    scene = render_scene(rng, conditions, width)
    return scene.image, scene.truth


def render_scene(rng: np.random.Generator, conditions: Conditions, width: int) -> Scene:
    """Like `render_frame`, and also which part each pixel shows."""
    height = frame_height(width)
    unit = width / REFERENCE_WIDTH
    pad = int(0.3 * width)
    canvas_w, canvas_h = width + 2 * pad, height + 2 * pad
    camera = _camera_matrix(conditions, width, height, pad)

    belt_rng, layout_rng, look_rng, sensor_rng = rng.spawn(4)
    image = _belt(belt_rng, camera, width, height, canvas_w, canvas_h, unit)
    instances = np.zeros((canvas_h, canvas_w), np.uint8)
    light_dir = layout_rng.uniform(0, 2 * math.pi)
    parts = place_parts(layout_rng, conditions, camera, width, height, pad, instances, unit)
    for ident, (part, mask) in enumerate(parts, start=1):
        draw_part(look_rng, image, instances, part, mask, ident, light_dir, unit)

    crop = (slice(pad, pad + height), slice(pad, pad + width))
    frame = _sensor(sensor_rng, image[crop], conditions, unit)
    visible, truth = _ground_truth(instances[crop], [p for p, _ in parts], width, height)
    return Scene(frame, truth, visible)


# --- camera and belt -----------------------------------------------------------------------------


def _camera_matrix(c: Conditions, width: int, height: int, pad: int) -> np.ndarray:
    """Affine map from world (belt) coordinates to padded-canvas coordinates."""
    centre = (width / 2, height / 2)
    rot = cv2.getRotationMatrix2D(centre, c.rotation, c.zoom)
    rot[0, 2] += c.shift_x * width + pad
    rot[1, 2] += c.shift_y * height + pad
    return rot


def _belt(
    rng: np.random.Generator,
    camera: np.ndarray,
    width: int,
    height: int,
    canvas_w: int,
    canvas_h: int,
    unit: float,
) -> np.ndarray:
    """Belt texture in world coordinates, warped through the camera onto the padded canvas."""
    margin = int(0.6 * width)  # the world canvas extends this far beyond the baseline frame
    ww, wh = width + 2 * margin, height + 2 * margin
    base = rng.uniform(105, 140)
    low = cv2.resize(rng.normal(0, 1, (6, 8)).astype(np.float32), (ww, wh),
                     interpolation=cv2.INTER_CUBIC) * 7
    fine = cv2.GaussianBlur(rng.normal(0, 5, (wh, ww)).astype(np.float32), (0, 0), 0.8 * unit)
    xs = np.arange(ww, dtype=np.float32)
    period = width * rng.uniform(0.05, 0.09)
    ribs = (5 * np.sin(2 * np.pi * xs / period + rng.uniform(0, 2 * np.pi)))[None, :]
    marks = np.zeros((wh, ww), np.float32)
    for _ in range(int(rng.integers(2, 7))):
        p1 = rng.uniform((0, 0), (ww, wh)).astype(int)
        p2 = p1 + rng.normal(0, 25 * unit, 2).astype(int)
        cv2.line(marks, tuple(map(int, p1)), tuple(map(int, p2)), float(rng.uniform(-25, -10)),
                 max(1, int(unit)))
    if rng.random() < 0.25:  # a belt seam with rivets
        x = int(rng.uniform(margin, margin + width))
        marks[:, x : x + max(2, int(3 * unit))] -= 22
        for y in range(0, wh, int(18 * unit)):
            cv2.circle(marks, (x + int(unit), y), max(1, int(2 * unit)), 25.0, -1)
    blurred = cv2.GaussianBlur(marks, (0, 0), 0.7 * unit)
    grey = base + low + fine + ribs + blurred
    # Side rails beyond the belt's edges: visible only when the camera moves.
    belt_top, belt_bottom = margin - int(0.1 * height), margin + height + int(0.1 * height)
    grey[:belt_top] = 175 + 0.5 * fine[:belt_top]
    grey[belt_bottom:] = 175 + 0.5 * fine[belt_bottom:]
    grey[belt_top - int(4 * unit) : belt_top] = 60
    grey[belt_bottom : belt_bottom + int(4 * unit)] = 60
    tint = rng.uniform(-6, 6, 3).astype(np.float32)
    world = cv2.merge([grey + t for t in tint])  # = grey[..., None] + tint, 6x faster
    to_canvas = camera.copy()
    to_canvas[:, 2] -= camera[:, :2] @ np.array([margin, margin], np.float64)
    return cv2.warpAffine(world, to_canvas, (canvas_w, canvas_h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


# --- sensor and labels ---------------------------------------------------------------------------


def _sensor(rng: np.random.Generator, scene: np.ndarray, c: Conditions, unit: float) -> np.ndarray:
    """Lighting falloff, haze, optics and sensor noise; returns the uint8 frame."""
    h, w = scene.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (w / 2)) ** 2
    falloff = 1 - rng.uniform(0.12, 0.28) * r2
    gain = rng.uniform(0.9, 1.1) * c.light
    shade = gain * falloff
    image = cv2.merge([scene[..., i] * shade for i in range(3)])  # = scene * shade[..., None]
    if c.haze > 0:
        veil = cv2.GaussianBlur(rng.uniform(170, 230, (8, 8)).astype(np.float32), (0, 0), 2)
        veil = cv2.resize(veil, (w, h), interpolation=cv2.INTER_CUBIC)
        image = image * (1 - c.haze) + veil[..., None] * c.haze
    length = (rng.uniform(1, 3) + c.motion_blur) * unit
    if length >= 1.5:
        size = round(length) | 1
        kernel = np.zeros((1, size), np.float32)
        kernel[0, :] = 1 / size
        image = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)
    sigma = (rng.uniform(0.3, 0.6) + c.defocus) * unit
    image = cv2.GaussianBlur(image, (0, 0), sigma)
    noise_sigma = rng.uniform(2, 5) * c.noise
    image = image + rng.normal(0, 1, image.shape).astype(np.float32) * noise_sigma
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _ground_truth(
    instances: np.ndarray, parts: list[Part], width: int, height: int
) -> tuple[np.ndarray, GroundTruth]:
    """Tight boxes of each part's visible pixels; the instance map renumbered to label order."""
    boxes, classes, variant = [], [], []
    relabelled = np.zeros_like(instances)
    for ident, part in enumerate(parts, start=1):
        ys, xs = np.nonzero(instances == ident)
        if len(xs) == 0:
            continue
        boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        classes.append(part.cls)
        variant.append(part.variant)
        relabelled[ys, xs] = len(boxes)
    truth = GroundTruth(
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        classes=np.array(classes, np.int64),
        variant=np.array(variant, bool),
        width=width,
        height=height,
    )
    return relabelled, truth
