import numpy as np
import pytest

from sim import BASELINE, CLASS_NAMES, Conditions, get_scenario
from sim.parts import MIN_VISIBLE
from sim.render import frame_height, render_scene
from sim.stream import frame_rng


def scenes(scenario: str, n: int = 12, width: int = 320, seed: int = 5):
    conditions = get_scenario(scenario).conditions
    return [render_scene(frame_rng(seed, "test", i), conditions, width) for i in range(n)]


def test_same_seed_renders_identical_frames():
    a = render_scene(frame_rng(3, "s", 7), BASELINE, 320)
    b = render_scene(frame_rng(3, "s", 7), BASELINE, 320)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.truth.boxes, b.truth.boxes)


def test_other_seed_or_index_renders_another_frame():
    a = render_scene(frame_rng(3, "s", 7), BASELINE, 320)
    assert not np.array_equal(a.image, render_scene(frame_rng(4, "s", 7), BASELINE, 320).image)
    assert not np.array_equal(a.image, render_scene(frame_rng(3, "s", 8), BASELINE, 320).image)


@pytest.mark.parametrize("width", [128, 320, 640])
def test_frames_are_four_by_three_at_any_width(width):
    scene = render_scene(frame_rng(0, "s", 0), BASELINE, width)
    assert scene.image.shape == (frame_height(width), width, 3)
    assert scene.image.dtype == np.uint8


@pytest.mark.parametrize("scenario", ["baseline", "camera_bump", "new_variant"])
def test_every_visible_part_has_a_tight_box_inside_the_frame(scenario):
    for scene in scenes(scenario):
        truth, ids = scene.truth, scene.instances
        h, w = ids.shape
        assert set(np.unique(ids)) - {0} == set(range(1, len(truth.classes) + 1))
        for k, (box, cls) in enumerate(zip(truth.boxes, truth.classes, strict=True), start=1):
            ys, xs = np.nonzero(ids == k)
            assert tuple(box) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
            assert 0 <= cls < len(CLASS_NAMES)


def test_parts_cut_by_the_frame_edge_are_still_labelled():
    cut = 0
    for scene in scenes("baseline", n=40):
        h, w = scene.instances.shape
        for x1, y1, x2, y2 in scene.truth.boxes:
            cut += x1 == 0 or y1 == 0 or x2 == w or y2 == h
    assert cut > 0


def test_yolo_lines_are_normalised_centre_boxes():
    scene = scenes("baseline", n=1)[0]
    for line, box in zip(scene.truth.yolo_lines(), scene.truth.boxes, strict=True):
        cls, cx, cy, bw, bh = line.split()
        assert int(cls) in range(len(CLASS_NAMES))
        assert float(cx) == pytest.approx((box[0] + box[2]) / 2 / 320, abs=1e-6)
        assert float(bh) == pytest.approx((box[3] - box[1]) / 240, abs=1e-6)
        assert all(0 <= float(v) <= 1 for v in (cx, cy, bw, bh))


def test_min_visible_share_is_a_fraction():
    assert 0 < MIN_VISIBLE < 1


def test_conditions_refuse_out_of_range_values():
    with pytest.raises(ValueError, match="light"):
        Conditions(light=0.0)
    with pytest.raises(ValueError, match="variant_share"):
        Conditions(variant_share=1.5)


def test_conditions_toward_interpolates_and_refuses_bad_severity():
    dusk = get_scenario("dusk").conditions
    half = BASELINE.toward(dusk, 0.5)
    assert half.light == pytest.approx((1.0 + dusk.light) / 2)
    assert BASELINE.toward(dusk, 1.0) == dusk
    with pytest.raises(ValueError, match="severity"):
        BASELINE.toward(dusk, 1.2)
