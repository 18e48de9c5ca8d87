"""Named scenarios: each is a parameterised shift that a real production line sees.

Scenarios combine as "a+b" (a new variant seen through a bumped camera, say).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from sim.conditions import BASELINE, Conditions


class UnknownScenarioError(ValueError):
    """A scenario name that the simulator does not know."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
        self.name = name


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str  # one line, shown by `edgeloop sim scenarios`
    conditions: Conditions
    device_only: bool = False  # a fault of one camera rather than a change of the line


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("baseline", "the line the seed model was trained on", BASELINE),
        Scenario("dusk", "lighting drops to 35% and sensor noise triples (dark parts fade)",
                 Conditions(light=0.35, noise=3.0)),
        Scenario("new_variant",
                 "every nut is a new flanged nyloc variant in brass: new outline, finish, insert",
                 Conditions(variant_share=1.0)),
        Scenario("camera_bump", "the camera is knocked: shifted, rolled 8 degrees, zoomed 1.2x",
                 Conditions(shift_x=0.08, shift_y=0.14, rotation=8.0, zoom=1.2), device_only=True),
        Scenario("dirty_lens", "haze over the lens and soft focus",
                 Conditions(haze=0.45, defocus=1.6), device_only=True),
        Scenario("line_speedup", "the belt runs faster: strong motion blur along the belt",
                 Conditions(motion_blur=9.0)),
    )
}


COMPOSITE_SEPARATOR = "+"


def get_scenario(name: str) -> Scenario:
    """The scenario called `name`, or the composite of the named ones in "a+b"."""
    if COMPOSITE_SEPARATOR in name:
        return _composite(name)
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UnknownScenarioError(name) from None


def _composite(name: str) -> Scenario:
    """Each part's departures from the baseline, later parts winning where two set one knob."""
    parts = [get_scenario(part) for part in name.split(COMPOSITE_SEPARATOR)]
    shifts = [p for p in parts if p.name != "baseline"]  # baseline as a part adds nothing
    if not shifts:
        return replace(SCENARIOS["baseline"], name=name)
    changed = {}
    for part in shifts:
        for f in fields(Conditions):
            value = getattr(part.conditions, f.name)
            if value != getattr(BASELINE, f.name):
                changed[f.name] = value
    return Scenario(name, "; ".join(p.summary for p in shifts), replace(BASELINE, **changed),
                    device_only=all(p.device_only for p in shifts))
