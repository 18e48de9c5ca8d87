"""Fleet attribution: is a drift one event of the whole line, or one device's fault?

When most checked devices drift in the same signal group it is one fleet-wide event (the light
changed, a new part arrived): their frames go to labelling and retraining. A device that drifts
on its own is a device problem (camera knocked, dirty lens): it is reported for a technician and
its frames are kept out of retraining. Pure logic over verdicts; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flows.drift.settings import FleetRule, SignalGroup
from flows.drift.verdict import DriftVerdict


@dataclass(frozen=True)
class FleetDriftReport:
    """Who should trigger labelling (the labelling flow decides how)."""

    fleet_event: bool
    event_groups: tuple[SignalGroup, ...]  # groups most of the fleet drifted in
    retrain_devices: tuple[str, ...]  # drifting with the fleet: send their frames to labelling
    device_faults: tuple[str, ...]  # drifting alone: fix the device, do not retrain on it
    checked: int  # devices with a verdict

    @property
    def triggers_labelling(self) -> bool:
        return bool(self.retrain_devices)

    def to_dict(self) -> dict[str, object]:
        return {"fleet_event": self.fleet_event,
                "event_groups": [g.value for g in self.event_groups],
                "retrain_devices": list(self.retrain_devices),
                "device_faults": list(self.device_faults),
                "checked": self.checked}


def attribute_fleet(verdicts: Mapping[str, DriftVerdict], rule: FleetRule) -> FleetDriftReport:
    """Splits the drifting devices of one fleet into a fleet-wide event and device faults.

    A group is a fleet event when at least `rule.event_share` of the checked devices, and at
    least `rule.min_devices`, drift in it. A drifting device that shares a fleet-event group
    belongs to the event; any other drifting device is a device fault.
    """
    drifting = {d: set(v.groups) for d, v in sorted(verdicts.items()) if v.drift}
    checked = len(verdicts)
    counts = {g: sum(g in groups for groups in drifting.values()) for g in SignalGroup}
    event_groups = tuple(g for g in SignalGroup
                         if counts[g] >= rule.min_devices
                         and checked and counts[g] / checked >= rule.event_share)
    retrain = tuple(d for d, groups in drifting.items() if groups & set(event_groups))
    faults = tuple(d for d in drifting if d not in retrain)
    return FleetDriftReport(bool(event_groups), event_groups, retrain, faults, checked)
