"""What the line and the camera look like at one moment: the knobs every drift scenario turns."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Conditions:
    """Line and camera conditions; the defaults are the baseline line the seed model learns.

    Lengths are in pixels of a 320-px-wide frame and scale with the rendered width.
    """

    light: float = 1.0  # illumination multiplier on top of the per-frame gain
    noise: float = 1.0  # sensor-noise multiplier
    motion_blur: float = 0.0  # extra motion-blur length along the belt, px
    defocus: float = 0.0  # extra Gaussian blur sigma, px
    haze: float = 0.0  # share of a bright, low-contrast veil over the image, 0..1
    shift_x: float = 0.0  # camera shift, fraction of the frame width
    shift_y: float = 0.0  # camera shift, fraction of the frame height
    rotation: float = 0.0  # camera roll, degrees
    zoom: float = 1.0  # camera zoom factor
    variant_share: float = 0.0  # share of nuts that are the new flanged brass nyloc variant

    def __post_init__(self) -> None:
        limits = {
            "light": (0.05, 3.0),
            "noise": (0.0, 20.0),
            "motion_blur": (0.0, 60.0),
            "defocus": (0.0, 20.0),
            "haze": (0.0, 0.95),
            "shift_x": (-0.5, 0.5),
            "shift_y": (-0.5, 0.5),
            "rotation": (-45.0, 45.0),
            "zoom": (0.5, 2.0),
            "variant_share": (0.0, 1.0),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"condition {name}={value} is outside [{low}, {high}]")

    def toward(self, target: Conditions, severity: float) -> Conditions:
        """Conditions `severity` of the way from these to `target` (0 = these, 1 = target)."""
        if not 0.0 <= severity <= 1.0:
            raise ValueError(f"severity {severity} is outside [0, 1]")
        mixed = {}
        for f in fields(self):
            start, end = getattr(self, f.name), getattr(target, f.name)
            mixed[f.name] = start + severity * (end - start)
        return replace(self, **mixed)


BASELINE = Conditions()
