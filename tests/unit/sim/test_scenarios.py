"""Each scenario changes the frames in the way its summary states (same layouts, paired), and
scenarios combined by name (`a+b`) take each part's changes to the baseline."""

import cv2
import numpy as np
import pytest

from sim import BASELINE, SCENARIOS, Conditions, Scenario, UnknownScenarioError, get_scenario
from sim.parts import NUT
from sim.render import render_scene
from sim.stream import frame_rng

N = 16


def frames(scenario: str):
    conditions = get_scenario(scenario).conditions
    return [render_scene(frame_rng(11, "pair", i), conditions, 320) for i in range(N)]


@pytest.fixture(scope="module")
def baseline():
    return frames("baseline")


def sharpness(image: np.ndarray) -> float:
    """Laplacian variance at half resolution, where sensor noise no longer dominates it."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    half = cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(half, cv2.CV_64F).var())


def mean_of(values) -> float:
    return float(np.mean(list(values)))


def test_dusk_darkens_the_frames(baseline):
    dusk = frames("dusk")
    assert mean_of(s.image.mean() for s in dusk) < 0.5 * mean_of(s.image.mean() for s in baseline)


def test_line_speedup_blurs_along_the_belt(baseline):
    fast = frames("line_speedup")
    assert mean_of(sharpness(s.image) for s in fast) < 0.5 * mean_of(
        sharpness(s.image) for s in baseline)
    grey = [cv2.cvtColor(s.image, cv2.COLOR_BGR2GRAY).astype(float) for s in fast]
    along = mean_of(np.abs(np.diff(g, axis=1)).mean() for g in grey)
    across = mean_of(np.abs(np.diff(g, axis=0)).mean() for g in grey)
    assert along < across  # the belt runs along x: edges across it are smeared


def test_dirty_lens_lowers_contrast_and_sharpness(baseline):
    dirty = frames("dirty_lens")
    assert mean_of(s.image.std() for s in dirty) < 0.8 * mean_of(s.image.std() for s in baseline)
    assert mean_of(sharpness(s.image) for s in dirty) < 0.5 * mean_of(
        sharpness(s.image) for s in baseline)


def test_camera_bump_zooms_the_parts(baseline):
    bumped = frames("camera_bump")

    def area(scenes):
        return mean_of((b[2] - b[0]) * (b[3] - b[1]) for s in scenes for b in s.truth.boxes)

    assert area(bumped) > 1.2 * area(baseline)


def test_new_variant_replaces_every_nut_with_a_coloured_one(baseline):
    variant = frames("new_variant")

    def nut_saturation(scenes):
        values = []
        for s in scenes:
            hsv = cv2.cvtColor(s.image, cv2.COLOR_BGR2HSV)
            for k, cls in enumerate(s.truth.classes, start=1):
                if cls == NUT:
                    values.append(hsv[..., 1][s.instances == k].mean())
        return mean_of(values)

    nuts = [v for s in variant for v, c in zip(s.truth.variant, s.truth.classes, strict=True)
            if c == NUT]
    assert nuts and all(nuts)
    assert not any(v for s in baseline for v in s.truth.variant)
    assert nut_saturation(variant) > 2 * nut_saturation(baseline)


def test_every_scenario_has_a_one_line_summary():
    assert {"baseline", "dusk", "new_variant", "camera_bump", "dirty_lens",
            "line_speedup"} <= set(SCENARIOS)
    for scenario in SCENARIOS.values():
        assert scenario.summary and "\n" not in scenario.summary


def test_unknown_scenario_is_refused_by_name():
    with pytest.raises(UnknownScenarioError, match="'fog'"):
        get_scenario("fog")


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
