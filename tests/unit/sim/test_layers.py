"""Layered drift specs: scenarios combined by name, each arriving at its own frame, and the
frames pixel for pixel those of the plain stream of the scenario active at each index."""

import numpy as np
import pytest

from sim import BASELINE, SCENARIOS, Conditions, Scenario, UnknownScenarioError, get_scenario
from sim.stream import (
    Layer,
    StreamSpecError,
    active_scenario,
    layered_stream,
    parse_layers,
    stream,
)


@pytest.mark.parametrize(("spec", "layers"), [
    ("baseline", (Layer("baseline", 0),)),
    ("new_variant@600", (Layer("new_variant", 600),)),
    ("new_variant@600,camera_bump@300", (Layer("new_variant", 600), Layer("camera_bump", 300))),
    ("dusk,line_speedup@0", (Layer("dusk", 0), Layer("line_speedup", 0))),
    ("new_variant+camera_bump@7", (Layer("new_variant+camera_bump", 7),)),
])
def test_good_specs_parse_into_layers(spec, layers):
    assert parse_layers(spec) == layers


@pytest.mark.parametrize(("spec", "offending"), [
    ("", "''"),
    ("new_variant@", "'new_variant@'"),
    ("new_variant@1.5", "'new_variant@1.5'"),
    ("@10", "'@10'"),
    ("new_variant@600,", "''"),
    ("new_variant@-5", "onset -5"),
    ("new_variant@600,fog@10", "'fog'"),
])
def test_bad_specs_are_refused_naming_the_offending_text(spec, offending):
    with pytest.raises(StreamSpecError, match=offending):
        parse_layers(spec)


def test_active_scenario_follows_the_onsets_in_spec_order():
    layers = parse_layers("new_variant@600,camera_bump@300,baseline@100")
    assert [active_scenario(layers, i) for i in (0, 299, 300, 599, 600, 10_000)] == [
        "baseline", "baseline", "camera_bump", "camera_bump", "new_variant+camera_bump",
        "new_variant+camera_bump"]


def test_composite_takes_each_parts_changes_to_the_baseline():
    both = get_scenario("new_variant+camera_bump")
    assert both.name == "new_variant+camera_bump"
    assert both.conditions == Conditions(variant_share=1.0, shift_x=0.08, shift_y=0.14,
                                         rotation=8.0, zoom=1.2)
    assert both.summary == (f"{SCENARIOS['new_variant'].summary}; "
                            f"{SCENARIOS['camera_bump'].summary}")
    assert "new_variant+camera_bump" not in SCENARIOS


def test_later_parts_win_only_on_the_knobs_they_change(monkeypatch):
    monkeypatch.setitem(SCENARIOS, "bright", Scenario("bright", "more light",
                                                      Conditions(light=1.5)))
    assert get_scenario("dusk+bright").conditions == Conditions(light=1.5, noise=3.0)
    assert get_scenario("bright+dusk").conditions == Conditions(light=0.35, noise=3.0)


def test_composite_is_device_only_when_every_part_is():
    assert get_scenario("camera_bump+dirty_lens").device_only
    assert get_scenario("camera_bump+baseline").device_only  # baseline adds nothing
    assert not get_scenario("new_variant+camera_bump").device_only
    assert not get_scenario("dirty_lens+line_speedup").device_only


def test_baseline_parts_add_nothing():
    assert get_scenario("baseline+baseline").conditions == BASELINE
    assert get_scenario("baseline+dusk").conditions == get_scenario("dusk").conditions


def test_unknown_part_of_a_composite_is_refused_by_name():
    with pytest.raises(UnknownScenarioError, match="'fog'") as caught:
        get_scenario("new_variant+fog")
    assert caught.value.name == "fog"


def test_layered_frames_equal_the_active_scenarios_stream_frames():
    layers = parse_layers("new_variant@3,camera_bump@2")
    frames = list(layered_stream(layers, seed=4, width=96, name="dev-a", frames=5))
    assert [(f.index, f.scenario, f.severity) for f in frames] == [
        (0, "baseline", 0.0), (1, "baseline", 0.0), (2, "camera_bump", 1.0),
        (3, "new_variant+camera_bump", 1.0), (4, "new_variant+camera_bump", 1.0)]
    for index in (1, 2, 3, 4):
        plain = next(stream(frames[index].scenario, seed=4, width=96, name="dev-a",
                            start=index, frames=1))
        assert np.array_equal(frames[index].image, plain.image)
        assert np.array_equal(frames[index].truth.boxes, plain.truth.boxes)
    assert not np.array_equal(frames[1].image, frames[2].image)


def test_layered_stream_can_start_midway():
    layers = parse_layers("dusk@10")
    late = next(layered_stream(layers, seed=1, width=96, start=12, frames=1))
    assert (late.index, late.scenario) == (12, "dusk")
    plain = next(stream("dusk", seed=1, width=96, start=12, frames=1))
    assert np.array_equal(late.image, plain.image)
