"""What the demo's devices stream: a fleet drift that reaches every device and a fault of the
last device's camera alone, as layers of sim scenarios ("new_variant@450,dusk@600")."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sim.scenarios import COMPOSITE_SEPARATOR, SCENARIOS, get_scenario
from sim.stream import Layer, active_scenario, parse_layers

NO_FAULT = "none"
LINE_WIDE = tuple(n for n, s in SCENARIOS.items() if not s.device_only and n != "baseline")
DEVICE_ONLY = tuple(n for n, s in SCENARIOS.items() if s.device_only)


def parse_spec(spec: str, onset: int, what: str) -> tuple[Layer, ...]:
    """The layers of a scenario ("dusk"), a composite ("dusk+line_speedup") or a layered spec
    ("new_variant@450,dusk@600"); a layer without @ONSET arrives at `onset`."""
    if not spec:
        raise ValueError(f"{what} is empty: give at least one scenario")
    items = spec.split(",")
    try:
        for item in items:  # the name first: UnknownScenarioError's message says what is known
            get_scenario(item.partition("@")[0])
        layers = parse_layers(spec)
    except ValueError as error:
        raise ValueError(f"{what} {spec!r}: {error}") from None
    return tuple(layer if "@" in item else replace(layer, onset=onset)
                 for layer, item in zip(layers, items, strict=True))


def _parts(layers: tuple[Layer, ...]) -> list[str]:
    return [part for layer in layers for part in layer.scenario.split(COMPOSITE_SEPARATOR)]


def fleet_layers(spec: str, drift_at: int) -> tuple[Layer, ...]:
    """The fleet drift's layers: line-wide scenarios only (a device-only one is a fault)."""
    layers = parse_spec(spec, drift_at, "fleet drift")
    for part in _parts(layers):
        if SCENARIOS[part].device_only:
            raise ValueError(f"fleet drift {spec!r}: {part} is device-only (one camera's fault); "
                             f"a fleet drift is line-wide: {', '.join(LINE_WIDE)}")
    if set(_parts(layers)) == {"baseline"}:
        raise ValueError(f"fleet drift {spec!r} changes nothing: give a line-wide scenario "
                         f"({', '.join(LINE_WIDE)})")
    return layers


def fault_layers(spec: str, fault_at: int) -> tuple[Layer, ...]:
    """The faulted device's own layers: device-only scenarios only; none for "none"."""
    if spec == NO_FAULT:
        return ()
    layers = parse_spec(spec, fault_at, "fault")
    for part in _parts(layers):
        if not SCENARIOS[part].device_only:
            raise ValueError(f"fault {spec!r}: {part} is line-wide (every device sees it); a "
                             f"fault is device-only: {', '.join(DEVICE_ONLY)}, or {NO_FAULT}")
    return layers


def spec_text(layers: tuple[Layer, ...]) -> str:
    """The layers in sim.stream's syntax, every onset written out."""
    return ",".join(f"{layer.scenario}@{layer.onset}" for layer in layers)


@dataclass(frozen=True)
class Arrival:
    """A layer reaching the devices it is on: a marker of the timeline."""

    frame: int
    kind: str  # "device_fault" or "drift_onset" (demo.report.MARKER_KINDS)
    label: str


@dataclass(frozen=True)
class DemoScenario:
    """The fleet drift on every device and the fault on the last one, checked together: the
    fault is seen alone first, so the drift check can tell it from the fleet event."""

    devices: tuple[str, ...]
    fleet: tuple[Layer, ...]
    fault: tuple[Layer, ...] = ()  # the last device's own layers; () for no fault

    def __post_init__(self) -> None:
        if not self.devices or not self.fleet:
            raise ValueError("a scenario needs devices and at least one fleet drift layer")
        first = self.drift_onset
        if first < 1:
            raise ValueError(f"the fleet drift arrives at frame {first}: it must come after "
                             "frame 0 (the line starts as the seed model knows it)")
        for layer in self.fault:
            if not 0 < layer.onset < first:
                raise ValueError(f"fault {layer.scenario}@{layer.onset} must arrive after frame "
                                 f"0 and before the fleet drift (frame {first}): the fault is "
                                 "seen alone first")

    @property
    def faulted_device(self) -> str | None:
        return self.devices[-1] if self.fault else None

    @property
    def drift_onset(self) -> int:
        """The frame the fleet drift's first layer reaches every device."""
        return min(layer.onset for layer in self.fleet)

    @property
    def last_onset(self) -> int:
        return max(layer.onset for layer in (*self.fault, *self.fleet))

    @property
    def drifted(self) -> str:
        """The conditions the headline figures are measured in: every fleet layer, no fault."""
        return active_scenario(self.fleet, max(layer.onset for layer in self.fleet))

    def layers(self, device: str) -> tuple[Layer, ...]:
        return (*self.fault, *self.fleet) if device == self.faulted_device else self.fleet

    def sources(self) -> dict[str, str]:
        """Each device's `sim:` spec."""
        return {device: f"sim:{spec_text(self.layers(device))}" for device in self.devices}

    def conditions(self) -> list[str]:
        """Every condition a device can be in (baseline first): the eval sets, the annotator's."""
        seen: dict[str, None] = {}
        for layers in dict.fromkeys(self.layers(d) for d in self.devices):
            for frame in sorted({0, *(layer.onset for layer in layers)}):
                seen[active_scenario(layers, frame)] = None
        return list(seen)

    def arrivals(self) -> list[Arrival]:
        """When each layer reaches its devices, in frame order (layers at one frame together)."""
        found = []
        for kind, layers in (("device_fault", self.fault), ("drift_onset", self.fleet)):
            for onset in sorted({layer.onset for layer in layers}):
                names = COMPOSITE_SEPARATOR.join(
                    dict.fromkeys(layer.scenario for layer in layers if layer.onset == onset))
                where = f"{self.faulted_device}: {names}" if kind == "device_fault" \
                    else f"{names} on every device"
                found.append(Arrival(onset, kind, f"{where} (frame {onset})"))
        return sorted(found, key=lambda arrival: arrival.frame)
