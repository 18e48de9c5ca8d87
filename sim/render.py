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

CLASS_NAMES: tuple[str, ...] = ("nut", "washer", "bolt")
NUT, WASHER, BOLT = range(3)

REFERENCE_WIDTH = 320  # lengths in Conditions and below are in pixels of a frame this wide
MAX_PARTS = 6
MIN_VISIBLE = 0.35  # a part less visible than this (frame edge) is redrawn elsewhere
MAX_COVERED = 0.2  # a part may hide at most this share of another part
PLACEMENT_TRIES = 30
FLANGE = 1.5  # the new variant's flange radius, in hexagon circumradii


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


@dataclass(frozen=True)
class _Part:
    cls: int
    variant: bool
    center: tuple[float, float]  # frame coordinates
    size: float  # nut/washer: circumradius or outer radius; bolt: half length
    angle: float  # radians


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
    parts = _place_parts(layout_rng, conditions, camera, width, height, pad, instances, unit)
    for ident, (part, mask) in enumerate(parts, start=1):
        _draw_part(look_rng, image, instances, part, mask, ident, light_dir, unit)

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


# --- parts ---------------------------------------------------------------------------------------


def _place_parts(
    rng: np.random.Generator,
    c: Conditions,
    camera: np.ndarray,
    width: int,
    height: int,
    pad: int,
    instances: np.ndarray,
    unit: float,
) -> list[tuple[_Part, np.ndarray]]:
    """Pick parts and poses on the belt; keep each only if visible enough and not hiding others."""
    placed: list[tuple[_Part, np.ndarray]] = []
    occupied = np.zeros_like(instances, dtype=bool)
    frame_area = np.zeros_like(occupied)
    frame_area[pad : pad + height, pad : pad + width] = True
    for _ in range(int(rng.integers(1, MAX_PARTS + 1))):
        cls = int(rng.integers(0, 3))
        variant = cls == NUT and rng.random() < c.variant_share
        for _ in range(PLACEMENT_TRIES):
            world = rng.uniform((-0.05 * width, -0.05 * height), (1.05 * width, 1.05 * height))
            centre = camera[:, :2] @ world + camera[:, 2]
            size = {NUT: 0.045, WASHER: 0.045, BOLT: 0.10}[cls] * width * rng.uniform(0.8, 1.25)
            part = _Part(cls, variant, (float(centre[0]), float(centre[1])),
                         float(size * c.zoom), float(rng.uniform(0, 2 * math.pi)))
            mask = _footprint(part, instances.shape, unit) > 127
            area = int(mask.sum())
            if area == 0 or (mask & frame_area).sum() < MIN_VISIBLE * area:
                continue
            if (mask & occupied).sum() > MAX_COVERED * area:
                continue
            if any((mask & m).sum() > MAX_COVERED * m.sum() for _, m in placed):
                continue
            placed.append((part, mask))
            occupied |= mask
            break
    return placed


def _pts(points: np.ndarray) -> np.ndarray:
    """Points for OpenCV's anti-aliased drawing with 4 bits of sub-pixel precision."""
    return np.round(points * 16).astype(np.int32).reshape(-1, 1, 2)


def _polygon(part: _Part, radius: float, sides: int) -> np.ndarray:
    angles = part.angle + np.arange(sides) * 2 * np.pi / sides
    return np.stack([part.center[0] + radius * np.cos(angles),
                     part.center[1] + radius * np.sin(angles)], axis=1)


def _bolt_outline(part: _Part) -> tuple[np.ndarray, np.ndarray]:
    """Shaft and head rectangles of a bolt lying on its side."""
    half, thick = part.size, part.size * 0.2
    axis = np.array([math.cos(part.angle), math.sin(part.angle)])
    normal = np.array([-axis[1], axis[0]])
    centre = np.array(part.center)

    def rect(start: float, stop: float, half_width: float) -> np.ndarray:
        return np.array([centre + axis * s + normal * w
                         for s, w in ((start, -half_width), (stop, -half_width),
                                      (stop, half_width), (start, half_width))])

    return rect(-half, half * 0.62, thick), rect(half * 0.62, half, thick * 1.7)


def _footprint(part: _Part, shape: tuple[int, ...], unit: float) -> np.ndarray:
    """The part's silhouette (uint8, 255 inside, anti-aliased edges)."""
    mask = np.zeros(shape[:2], np.uint8)
    x, y = part.center
    if part.cls == NUT:
        cv2.fillPoly(mask, [_pts(_polygon(part, part.size, 6))], 255, cv2.LINE_AA, 4)
        if part.variant:  # the flange sticks out beyond the hexagon
            cv2.circle(mask, tuple(_pts(np.array([x, y]))[0, 0]), int(part.size * FLANGE * 16),
                       255, -1, cv2.LINE_AA, 4)
    elif part.cls == WASHER:
        cv2.circle(mask, tuple(_pts(np.array([x, y]))[0, 0]), int(part.size * 16), 255, -1,
                   cv2.LINE_AA, 4)
        cv2.circle(mask, tuple(_pts(np.array([x, y]))[0, 0]), int(part.size * 0.45 * 16), 0, -1,
                   cv2.LINE_AA, 4)
    else:
        shaft, head = _bolt_outline(part)
        cv2.fillPoly(mask, [_pts(shaft), _pts(head)], 255, cv2.LINE_AA, 4)
    return mask


def _draw_part(
    rng: np.random.Generator,
    image: np.ndarray,
    instances: np.ndarray,
    part: _Part,
    mask: np.ndarray,
    ident: int,
    light_dir: float,
    unit: float,
) -> None:
    """Composite one part (shadow, body, detail, shading) onto the canvas, in place."""
    alpha = _footprint(part, image.shape, unit).astype(np.float32) / 255
    # Work only inside the part's bounding box (plus room for its shadow): it is cheap.
    left, top, w, h = cv2.boundingRect(cv2.findNonZero((alpha > 0).view(np.uint8)))
    margin = int(6 * unit) + 2
    y0, y1 = max(top - margin, 0), min(top + h + margin, image.shape[0])
    x0, x1 = max(left - margin, 0), min(left + w + margin, image.shape[1])
    box = (slice(y0, y1), slice(x0, x1))
    a = alpha[box]
    offset = np.array([math.cos(light_dir), math.sin(light_dir)]) * 3 * unit
    shift = np.array([[1, 0, offset[0]], [0, 1, offset[1]]], np.float32)
    shadow = cv2.GaussianBlur(cv2.warpAffine(a, shift, (a.shape[1], a.shape[0])), (0, 0),
                              1.5 * unit)
    patch = image[box] * (1 - 0.45 * shadow[..., None])

    colour = _body(rng, part, (a.shape[0], a.shape[1]), (x0, y0), unit)
    # Light falls from one side: a linear gradient across the part.
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    along = ((xx - part.center[0]) * math.cos(light_dir)
             + (yy - part.center[1]) * math.sin(light_dir)) / max(part.size, 1.0)
    colour *= (1 - 0.18 * np.clip(along, -1.5, 1.5))[..., None]
    image[box] = patch * (1 - a[..., None]) + colour * a[..., None]
    instances[box][a > 0.5] = ident


def _body(
    rng: np.random.Generator,
    part: _Part,
    shape: tuple[int, int],
    origin: tuple[int, int],
    unit: float,
) -> np.ndarray:
    """The part's own colour and detail in its bounding box (float32 BGR)."""
    h, w = shape
    local = _Part(part.cls, part.variant, (part.center[0] - origin[0], part.center[1] - origin[1]),
                  part.size, part.angle)
    centre = tuple(_pts(np.array(local.center))[0, 0])
    grain = cv2.GaussianBlur(rng.normal(0, 5, (h, w)).astype(np.float32), (0, 0), 0.6 * unit)
    if part.cls == NUT and part.variant:
        return _brass_nyloc(rng, local, centre, grain, unit)
    if part.cls == NUT:
        level = rng.uniform(55, 90)
        body = np.full((h, w, 3), level, np.float32) + rng.uniform(-4, 4, 3).astype(np.float32)
        chamfer = np.zeros((h, w), np.float32)
        cv2.fillPoly(chamfer, [_pts(_polygon(local, local.size, 6))], 1.0, cv2.LINE_AA, 4)
        cv2.circle(chamfer, centre, int(local.size * 0.9 * 16), 0.0, -1, cv2.LINE_AA, 4)
        body += 30 * chamfer[..., None]
        hole = np.zeros((h, w), np.float32)
        cv2.circle(hole, centre, int(local.size * 0.45 * 16), 1.0, -1, cv2.LINE_AA, 4)
        body = body * (1 - 0.6 * hole[..., None])
        return body + grain[..., None]
    if part.cls == WASHER:
        level = rng.uniform(175, 215)
        body = np.full((h, w, 3), level, np.float32) + rng.uniform(-5, 5, 3).astype(np.float32)
        ring = np.zeros((h, w), np.float32)
        cv2.circle(ring, centre, int(local.size * 0.72 * 16), 1.0, max(1, int(unit)),
                   cv2.LINE_AA, 4)
        return body - 25 * ring[..., None] + grain[..., None]
    level = rng.uniform(115, 150)
    body = np.full((h, w, 3), level, np.float32) + rng.uniform(-4, 4, 3).astype(np.float32)
    _, head = _bolt_outline(local)
    threads = np.zeros((h, w), np.float32)
    axis = np.array([math.cos(local.angle), math.sin(local.angle)])
    normal = np.array([-axis[1], axis[0]]) * local.size * 0.2
    for s in np.arange(-0.95, 0.2, 0.12) * local.size:
        p = np.array(local.center) + axis * s
        cv2.line(threads, tuple(_pts(p - normal)[0, 0]), tuple(_pts(p + normal)[0, 0]), 1.0,
                 max(1, int(unit)), cv2.LINE_AA, 4)
    head_mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(head_mask, [_pts(head)], 1.0, cv2.LINE_AA, 4)
    return body - 35 * threads[..., None] + 15 * head_mask[..., None] + grain[..., None]


def _brass_nyloc(
    rng: np.random.Generator, local: _Part, centre: tuple[int, int], grain: np.ndarray,
    unit: float,
) -> np.ndarray:
    """The new variant: a wide-flanged nyloc nut in brass, brushed, with a white nylon insert
    that hides the dark bore the seed model learned nuts by."""
    h, w = grain.shape
    brass = np.array([45, 150, 195], np.float32) * rng.uniform(0.85, 1.1)
    body = np.broadcast_to(brass, (h, w, 3)).copy()
    brushed = cv2.blur(rng.normal(0, 14, (h, w)).astype(np.float32), (max(3, int(7 * unit)), 1))
    flange = np.ones((h, w), np.float32)
    cv2.fillPoly(flange, [_pts(_polygon(local, local.size, 6))], 0.0, cv2.LINE_AA, 4)
    body *= (1 - 0.2 * flange)[..., None]
    insert = np.zeros((h, w), np.float32)
    cv2.circle(insert, centre, int(local.size * 0.72 * 16), 1.0, -1, cv2.LINE_AA, 4)
    nylon = np.array([225, 220, 205], np.float32)
    body = body * (1 - insert[..., None]) + nylon * insert[..., None]
    hole = np.zeros((h, w), np.float32)
    cv2.circle(hole, centre, int(local.size * 0.2 * 16), 1.0, -1, cv2.LINE_AA, 4)
    body = body * (1 - 0.5 * hole[..., None])
    return body + (brushed + grain)[..., None]


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
    instances: np.ndarray, parts: list[_Part], width: int, height: int
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
