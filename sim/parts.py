"""The parts on the belt: nuts, washers and bolts (and the new flanged variant), where they lie
and how each is drawn with its shading and shadow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sim.conditions import Conditions

CLASS_NAMES: tuple[str, ...] = ("nut", "washer", "bolt")
NUT, WASHER, BOLT = range(3)


MAX_PARTS = 6
MIN_VISIBLE = 0.35  # a part less visible than this (frame edge) is redrawn elsewhere
MAX_COVERED = 0.2  # a part may hide at most this share of another part
PLACEMENT_TRIES = 30
FLANGE = 1.5  # the new variant's flange radius, in hexagon circumradii


@dataclass(frozen=True)
class Part:
    cls: int
    variant: bool
    center: tuple[float, float]  # frame coordinates
    size: float  # nut/washer: circumradius or outer radius; bolt: half length
    angle: float  # radians


def place_parts(
    rng: np.random.Generator,
    c: Conditions,
    camera: np.ndarray,
    width: int,
    height: int,
    pad: int,
    instances: np.ndarray,
    unit: float,
) -> list[tuple[Part, np.ndarray]]:
    """Pick parts and poses on the belt; keep each only if visible enough and not hiding others."""
    placed: list[tuple[Part, np.ndarray]] = []
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
            part = Part(cls, variant, (float(centre[0]), float(centre[1])),
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


def _polygon(part: Part, radius: float, sides: int) -> np.ndarray:
    angles = part.angle + np.arange(sides) * 2 * np.pi / sides
    return np.stack([part.center[0] + radius * np.cos(angles),
                     part.center[1] + radius * np.sin(angles)], axis=1)


def _bolt_outline(part: Part) -> tuple[np.ndarray, np.ndarray]:
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


def _footprint(part: Part, shape: tuple[int, ...], unit: float) -> np.ndarray:
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


def draw_part(
    rng: np.random.Generator,
    image: np.ndarray,
    instances: np.ndarray,
    part: Part,
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
    part: Part,
    shape: tuple[int, int],
    origin: tuple[int, int],
    unit: float,
) -> np.ndarray:
    """The part's own colour and detail in its bounding box (float32 BGR)."""
    h, w = shape
    local = Part(part.cls, part.variant, (part.center[0] - origin[0], part.center[1] - origin[1]),
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
    rng: np.random.Generator, local: Part, centre: tuple[int, int], grain: np.ndarray,
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
