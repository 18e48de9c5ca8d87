"""Fleet attribution: most of the fleet drifting in one signal group is one event to relabel; a
device drifting on its own is a device fault, kept out of retraining."""

from __future__ import annotations

from flows.drift.fleet import attribute_fleet
from flows.drift.settings import FleetRule, SignalGroup
from flows.drift.verdict import DriftVerdict

IQ, CONF, MIX = SignalGroup.IMAGE_QUALITY, SignalGroup.CONFIDENCE, SignalGroup.CLASS_MIX
RULE = FleetRule(event_share=0.5, min_devices=2)


def verdict(*groups: SignalGroup) -> DriftVerdict:
    return DriftVerdict(drift=bool(groups), drifted_share=0.1 * len(groups),
                        drifted_count=len(groups), tested_count=16, groups=tuple(groups),
                        columns=(), reference_rows=1000, current_rows=500, family_alpha=0.01,
                        min_effect=0.0, min_drifted_columns=1)


def test_a_quiet_fleet_triggers_nothing():
    report = attribute_fleet({"a": verdict(), "b": verdict(), "c": verdict()}, RULE)
    assert not report.fleet_event
    assert report.retrain_devices == () and report.device_faults == ()
    assert not report.triggers_labelling
    assert report.checked == 3


def test_one_device_drifting_alone_is_a_device_fault_not_a_retraining_trigger():
    report = attribute_fleet({"a": verdict(), "b": verdict(IQ, CONF), "c": verdict()}, RULE)
    assert not report.fleet_event
    assert report.device_faults == ("b",)
    assert report.retrain_devices == ()
    assert not report.triggers_labelling


def test_most_devices_drifting_in_one_group_is_one_fleet_event_sent_to_labelling():
    report = attribute_fleet({"a": verdict(IQ), "b": verdict(IQ, MIX), "c": verdict(IQ),
                              "d": verdict()}, RULE)
    assert report.fleet_event
    assert report.event_groups == (IQ,)
    assert report.retrain_devices == ("a", "b", "c")
    assert report.device_faults == ()
    assert report.triggers_labelling


def test_a_device_drifting_in_another_group_during_a_fleet_event_is_still_a_fault():
    report = attribute_fleet({"a": verdict(CONF), "b": verdict(CONF), "c": verdict(CONF),
                              "d": verdict(IQ)}, RULE)
    assert report.event_groups == (CONF,)
    assert report.retrain_devices == ("a", "b", "c")
    assert report.device_faults == ("d",)


def test_a_minority_sharing_a_group_is_not_a_fleet_event():
    fleet = {f"d{i}": verdict() for i in range(8)} | {"x": verdict(MIX), "y": verdict(MIX)}
    report = attribute_fleet(fleet, RULE)
    assert not report.fleet_event
    assert report.device_faults == ("x", "y")


def test_min_devices_keeps_a_one_device_fleet_from_calling_its_own_drift_fleet_wide():
    assert attribute_fleet({"solo": verdict(IQ)}, RULE).device_faults == ("solo",)
    solo_rule = FleetRule(event_share=0.5, min_devices=1)
    assert attribute_fleet({"solo": verdict(IQ)}, solo_rule).retrain_devices == ("solo",)


def test_the_report_serialises_to_plain_data():
    report = attribute_fleet({"a": verdict(IQ), "b": verdict(IQ)}, RULE)
    assert report.to_dict() == {"fleet_event": True, "event_groups": ["image_quality"],
                                "retrain_devices": ["a", "b"], "device_faults": [],
                                "checked": 2}
