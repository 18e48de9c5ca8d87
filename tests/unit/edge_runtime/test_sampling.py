"""The frame sampler: policies, hourly budgets, near-duplicates, configuration, perceptual hash."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.contract import SampleMeta, SamplePolicy
from edge_runtime.detector import Detections, Inference, Letterbox, thumbnail
from edge_runtime.sampling.config import (
    DuplicateConfig,
    EmptyPolicyConfig,
    RandomPolicyConfig,
    RareClassPolicyConfig,
    SamplingConfig,
    SamplingConfigError,
    UncertainPolicyConfig,
    load_sampling_config,
    parse_sampling_config,
)
from edge_runtime.sampling.frame import FrameView, SampleDecision, frame_view, thumbnail_hash
from edge_runtime.sampling.rules import hamming, to_sample_meta, uncertainty
from edge_runtime.sampling.sampler import NullSampler, Sampler, build_sampler

NAMES = ("nut", "washer", "bolt")
NUT, WASHER, BOLT = range(3)
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
NO_DUPLICATES = DuplicateConfig(recent=0)
CONFIDENT = 0.9  # outside the default uncertainty band


def frame(scores: tuple[float, ...] = (), classes: tuple[int, ...] | None = None, *,
          phash: int = 0, embedding: np.ndarray | None = None,
          names: tuple[str, ...] = NAMES) -> FrameView:
    n = len(scores)
    boxes = np.tile(np.array([64.0, 48.0, 320.0, 240.0], np.float32), (n, 1))
    return FrameView(
        scores=np.array(scores, np.float32),
        classes=np.array(classes if classes is not None else (NUT,) * n, np.int64),
        boxes=boxes, names=names, width=640, height=480, phash=phash, embedding=embedding)


def sampler(config: SamplingConfig, seed: int = 0) -> Sampler:
    return build_sampler(config, np.random.default_rng(seed))


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


# --- policies ------------------------------------------------------------------------------------

def test_uncertain_detection_is_kept_until_the_hourly_budget_is_spent() -> None:
    s = sampler(SamplingConfig(uncertain=UncertainPolicyConfig(per_hour=3),
                               duplicates=NO_DUPLICATES))

    kept = [s.decide(frame((0.4,)), minutes(i)) for i in range(5)]

    assert [d.policy if d else None for d in kept] == [SamplePolicy.UNCERTAIN] * 3 + [None] * 2
    counters = s.counters()
    assert counters.kept[SamplePolicy.UNCERTAIN] == 3
    assert counters.over_budget[SamplePolicy.UNCERTAIN] == 2


def test_budget_window_slides_so_room_returns_an_hour_after_each_keep() -> None:
    s = sampler(SamplingConfig(uncertain=UncertainPolicyConfig(per_hour=2),
                               duplicates=NO_DUPLICATES))
    uncertain = frame((0.5,))

    def kept_at(minute: float) -> bool:
        return s.decide(uncertain, minutes(minute)) is not None

    assert kept_at(0) and kept_at(10)
    assert not kept_at(30)
    assert kept_at(60)  # the keep at minute 0 has left the window
    assert not kept_at(65)  # the one at minute 10 has not
    assert kept_at(70)


def test_confident_or_empty_frames_are_not_kept_as_uncertain() -> None:
    s = sampler(SamplingConfig(uncertain=UncertainPolicyConfig(), duplicates=NO_DUPLICATES))

    assert s.decide(frame((CONFIDENT, 0.95)), T0) is None
    assert s.decide(frame(()), T0) is None
    assert s.decide(frame((CONFIDENT, 0.6)), T0) is not None  # the band includes its edges


def test_frame_without_detections_is_kept_as_empty_and_others_are_not() -> None:
    s = sampler(SamplingConfig(empty=EmptyPolicyConfig(), duplicates=NO_DUPLICATES))

    assert s.decide(frame((0.4,)), T0) is None
    decision = s.decide(frame(()), T0)

    assert decision is not None
    assert decision.policy is SamplePolicy.EMPTY
    assert decision.uncertainty == 1.0
    assert decision.predictions == ()


def test_named_rare_class_is_kept_and_common_classes_are_not() -> None:
    s = sampler(SamplingConfig(rare_class=RareClassPolicyConfig(classes=frozenset({"washer"})),
                               duplicates=NO_DUPLICATES))

    assert s.decide(frame((CONFIDENT, CONFIDENT), (NUT, BOLT)), T0) is None
    decision = s.decide(frame((CONFIDENT, CONFIDENT), (NUT, WASHER)), T0)

    assert decision is not None and decision.policy is SamplePolicy.RARE_CLASS


def test_class_below_its_running_share_is_rare_once_enough_detections_are_counted() -> None:
    s = sampler(SamplingConfig(
        rare_class=RareClassPolicyConfig(max_share=0.05, min_detections=100),
        duplicates=NO_DUPLICATES))
    washer = frame((CONFIDENT,), (WASHER,))

    assert s.decide(washer, minutes(0)) is None  # one washer in one detection: not rare
    for i in range(99):
        assert s.decide(frame((CONFIDENT,), (NUT,)), minutes(i)) is None  # nuts: never rare
    decision = s.decide(washer, minutes(100))  # 1 washer in 100 detections, below 5 %

    assert decision is not None and decision.policy is SamplePolicy.RARE_CLASS


def test_class_shares_follow_class_names_across_a_model_update() -> None:
    s = sampler(SamplingConfig(
        rare_class=RareClassPolicyConfig(max_share=0.05, min_detections=100),
        duplicates=NO_DUPLICATES))
    for i in range(100):
        s.decide(frame((CONFIDENT,), (NUT,)), minutes(i))
    reordered = ("bolt", "nut", "washer")  # a new model that numbers the classes differently

    assert s.decide(frame((CONFIDENT,), (1,), names=reordered), minutes(101)) is None  # nut
    assert s.decide(frame((CONFIDENT,), (2,), names=reordered), minutes(102)) is not None


def test_policies_left_out_are_off() -> None:
    s = sampler(SamplingConfig(empty=EmptyPolicyConfig(), duplicates=NO_DUPLICATES))

    assert s.decide(frame((0.4,), (WASHER,)), T0) is None


# --- priority and random share -------------------------------------------------------------------

def test_policies_are_tried_in_priority_order_and_a_spent_budget_passes_the_frame_on() -> None:
    s = sampler(SamplingConfig(
        uncertain=UncertainPolicyConfig(per_hour=1),
        rare_class=RareClassPolicyConfig(per_hour=1, classes=frozenset({"washer"})),
        empty=EmptyPolicyConfig(per_hour=1),
        random=RandomPolicyConfig(per_hour=10, share=1.0),
        duplicates=NO_DUPLICATES))
    uncertain_washer = frame((0.4,), (WASHER,))

    policies = [s.decide(uncertain_washer, minutes(i)) for i in range(3)]
    empty = [s.decide(frame(()), minutes(3 + i)) for i in range(2)]

    assert [d.policy for d in policies if d] == [
        SamplePolicy.UNCERTAIN, SamplePolicy.RARE_CLASS, SamplePolicy.RANDOM]
    assert [d.policy for d in empty if d] == [SamplePolicy.EMPTY, SamplePolicy.RANDOM]
    over = s.counters().over_budget
    assert over[SamplePolicy.UNCERTAIN] == 2 and over[SamplePolicy.RARE_CLASS] == 1
    assert over[SamplePolicy.EMPTY] == 1 and over[SamplePolicy.RANDOM] == 0


def kept_random_frames(seed: int, frames: int, share: float) -> list[int]:
    s = sampler(SamplingConfig(random=RandomPolicyConfig(per_hour=1_000_000, share=share),
                               duplicates=NO_DUPLICATES), seed)
    confident = frame((CONFIDENT,))
    return [i for i in range(frames) if s.decide(confident, T0 + timedelta(seconds=i))]


def test_random_share_is_reproducible_with_a_seeded_generator_and_close_to_the_share() -> None:
    first = kept_random_frames(seed=7, frames=50_000, share=0.02)

    assert first == kept_random_frames(seed=7, frames=50_000, share=0.02)
    assert first != kept_random_frames(seed=8, frames=50_000, share=0.02)
    assert abs(len(first) - 1000) < 100  # 1000 expected; 3 binomial standard deviations ~ 94


# --- near-duplicates -----------------------------------------------------------------------------

def test_near_duplicate_of_a_kept_frame_is_suppressed_and_a_different_frame_is_kept() -> None:
    s = sampler(SamplingConfig(uncertain=UncertainPolicyConfig(per_hour=2),
                               duplicates=DuplicateConfig(hash_max_distance=6)))
    image = 0x0123_4567_89AB_CDEF

    first = s.decide(frame((0.4,), phash=image), minutes(0))
    again = s.decide(frame((0.4,), phash=image), minutes(1))
    close = s.decide(frame((0.4,), phash=image ^ 0b111111), minutes(2))  # 6 bits differ
    other = s.decide(frame((0.4,), phash=~image & (2**64 - 1)), minutes(3))

    assert first is not None and other is not None  # suppressed frames spent no budget
    assert again is None and close is None
    assert s.counters().suppressed_duplicates == 2


def test_only_the_most_recent_kept_frames_are_compared() -> None:
    s = sampler(SamplingConfig(uncertain=UncertainPolicyConfig(),
                               duplicates=DuplicateConfig(recent=1)))
    a, b = 0x00FF_00FF_00FF_00FF, 0xFF00_FF00_FF00_FF00

    assert s.decide(frame((0.4,), phash=a), minutes(0)) is not None
    assert s.decide(frame((0.4,), phash=b), minutes(1)) is not None
    assert s.decide(frame((0.4,), phash=a), minutes(2)) is not None  # a is no longer recent


def test_close_embedding_is_a_duplicate_even_when_the_hashes_differ() -> None:
    s = sampler(SamplingConfig(uncertain=UncertainPolicyConfig(),
                               duplicates=DuplicateConfig(embedding_max_distance=0.05)))
    e = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
    near = np.array([1.0, 0.1, 0.0, 0.0], np.float32)  # cosine distance ~0.005
    far = np.array([0.0, 1.0, 0.0, 0.0], np.float32)

    assert s.decide(frame((0.4,), phash=0, embedding=e), minutes(0)) is not None
    assert s.decide(frame((0.4,), phash=2**64 - 1, embedding=near), minutes(1)) is None
    assert s.decide(frame((0.4,), phash=2**64 - 1, embedding=far), minutes(2)) is not None


# --- decisions, counters, null sampler -----------------------------------------------------------

def test_decision_carries_normalised_predictions_and_becomes_sample_meta() -> None:
    s = sampler(SamplingConfig(uncertain=UncertainPolicyConfig()))

    decision = s.decide(frame((0.4, CONFIDENT), (WASHER, BOLT)), T0)

    assert isinstance(decision, SampleDecision)
    assert decision.uncertainty == pytest.approx(0.8)  # 1 - |2 * 0.4 - 1|
    first = decision.predictions[0]
    assert (first.cls, first.label) == (WASHER, "washer")
    assert first.score == pytest.approx(0.4)
    assert (first.x1, first.y1, first.x2, first.y2) == pytest.approx((0.1, 0.1, 0.5, 0.5))
    assert decision.predictions[1].label == "bolt"
    meta = to_sample_meta(decision, device_id="line-3", model_version="v7", frame_id=42)
    assert isinstance(meta, SampleMeta)
    assert (meta.policy, meta.width, meta.height, meta.captured_at) == (
        SamplePolicy.UNCERTAIN, 640, 480, T0)
    assert meta.record_id == "line-3/42" and len(meta.predictions) == 2


def test_uncertainty_is_that_of_the_least_certain_detection_and_one_when_empty() -> None:
    assert uncertainty([]) == 1.0
    assert uncertainty([0.99, 0.5]) == pytest.approx(1.0)
    assert uncertainty([0.9, 0.3]) == pytest.approx(0.6)


def test_counters_read_as_flat_names_for_the_device_status() -> None:
    s = sampler(SamplingConfig(uncertain=UncertainPolicyConfig(per_hour=1),
                               empty=EmptyPolicyConfig(), duplicates=NO_DUPLICATES))
    s.decide(frame((0.4,)), T0)
    s.decide(frame((0.4,)), T0)

    assert s.counters().as_dict() == {
        "kept.uncertain": 1, "kept.empty": 0, "over_budget.uncertain": 1,
        "over_budget.empty": 0, "suppressed_duplicates": 0}


def test_disabled_sampling_keeps_nothing() -> None:
    s = sampler(parse_sampling_config({"enabled": False, "policies": {"empty": None}}))

    assert isinstance(s, NullSampler)
    assert s.decide(frame(()), T0) is None
    assert s.counters().as_dict() == {"suppressed_duplicates": 0}


def test_capture_time_without_time_zone_is_refused() -> None:
    s = sampler(SamplingConfig(empty=EmptyPolicyConfig()))

    with pytest.raises(ValueError, match="time zone"):
        s.decide(frame(()), datetime(2025, 3, 1, 8, 0))


def test_frame_view_is_built_from_an_inference() -> None:
    image = scene(1)
    tensor = np.zeros((1, 3, 640, 640), np.float32)
    box = Letterbox(1.0, 1.0, 0, 80, 640, 480, (slice(80, 560), slice(0, 640)))
    detections = Detections(np.array([[0, 0, 64, 48]], np.float32), np.array([0.4], np.float32),
                            np.array([BOLT], np.int64))
    inference = Inference(detections, tensor, box, thumbnail(image), None, 1.0, 2.0, 3.0, 0.1)

    view = frame_view(inference, NAMES)

    assert (view.width, view.height, view.names) == (640, 480, NAMES)
    assert view.perceptual_hash() == phash(image)
    assert view.classes.tolist() == [BOLT]


# --- configuration -------------------------------------------------------------------------------

def test_config_file_in_configs_loads(repo_root: Path) -> None:
    config = load_sampling_config(repo_root / "configs" / "sampling.yaml")

    assert config.enabled
    assert list(config.policies()) == [SamplePolicy.UNCERTAIN, SamplePolicy.RARE_CLASS,
                                       SamplePolicy.EMPTY, SamplePolicy.RANDOM]
    assert config.uncertain == UncertainPolicyConfig(per_hour=120, low=0.25, high=0.6)
    assert config.random == RandomPolicyConfig(per_hour=20, share=0.002)
    assert config.rare_class is not None and config.rare_class.max_share == 0.02
    assert config.duplicates == DuplicateConfig(hash_max_distance=6, recent=32,
                                                embedding_max_distance=0.05)


@pytest.mark.parametrize(("data", "key"), [
    ({"policies": {"uncertain": {"per_hour": 0}}}, "policies.uncertain.per_hour"),
    ({"policies": {"empty": {"per_hour": True}}}, "policies.empty.per_hour"),
    ({"policies": {"empty": {"per_hour": 2.5}}}, "policies.empty.per_hour"),
    ({"policies": {"uncertain": {"low": 0.7, "high": 0.6}}}, "policies.uncertain.low"),
    ({"policies": {"uncertain": {"high": 1.2}}}, "policies.uncertain.high"),
    ({"policies": {"uncertain": {"hihg": 0.5}}}, "policies.uncertain.hihg"),
    ({"policies": {"uncertian": {}}}, "policies.uncertian"),
    ({"policies": {"random": {"share": 0}}}, "policies.random.share"),
    ({"policies": {"random": {"share": "0.2%"}}}, "policies.random.share"),
    ({"policies": {"rare_class": {}}}, "policies.rare_class"),
    ({"policies": {"rare_class": {"classes": "washer"}}}, "policies.rare_class.classes"),
    ({"policies": {"rare_class": {"classes": [3]}}}, "policies.rare_class.classes"),
    ({"policies": {"rare_class": {"max_share": 1.0}}}, "policies.rare_class.max_share"),
    ({"policies": {"empty": None}, "duplicates": {"hash_max_distance": 40}},
     "duplicates.hash_max_distance"),
    ({"policies": {"empty": None}, "duplicates": {"embedding_max_distance": float("nan")}},
     "duplicates.embedding_max_distance"),
    ({"policies": {"empty": None}, "duplicates": {"recent": -1}}, "duplicates.recent"),
    ({"policies": {}}, "policies"),
    ({"policies": ["empty"]}, "policies"),
    ({"enabled": "yes", "policies": {"empty": None}}, "enabled"),
    ({"polices": {"empty": None}}, "polices"),
])
def test_bad_config_is_refused_naming_the_key(data: object, key: str) -> None:
    with pytest.raises(SamplingConfigError, match=rf"(^|\s){re.escape(key)}\b"):
        parse_sampling_config(data)


def test_bad_config_file_is_refused_naming_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "sampling.yaml"
    path.write_text("policies:\n  random:\n    share: 2\n")

    with pytest.raises(SamplingConfigError, match=r"policies\.random\.share") as error:
        load_sampling_config(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("text", [None, "policies: [unclosed\n"])
def test_missing_or_unparsable_config_file_is_refused(tmp_path: Path, text: str | None) -> None:
    path = tmp_path / "sampling.yaml"
    if text is not None:
        path.write_text(text)

    with pytest.raises(SamplingConfigError, match=re.escape(str(path))):
        load_sampling_config(path)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(SamplingConfigError, ValueError)


# --- perceptual hash -----------------------------------------------------------------------------

def scene(seed: int, height: int = 480, width: int = 640) -> np.ndarray:
    """A BGR uint8 frame of coarse random blocks, like parts on a belt at hash scale."""
    blocks = np.random.default_rng(seed).integers(0, 256, (height // 40, width // 40, 3))
    return np.kron(blocks, np.ones((40, 40, 1))).astype(np.uint8)


def phash(image: np.ndarray) -> int:
    return thumbnail_hash(thumbnail(image))


def test_perceptual_hash_is_stable_for_the_same_image() -> None:
    assert phash(scene(1)) == phash(scene(1))


def test_perceptual_hash_does_not_depend_on_the_frame_resolution() -> None:
    half = cv2.resize(scene(1), (320, 240), interpolation=cv2.INTER_AREA)

    assert hamming(phash(half), phash(scene(1))) <= DuplicateConfig().hash_max_distance


def test_perceptual_hash_differs_for_different_content() -> None:
    assert hamming(phash(scene(1)), phash(scene(2))) > 16  # unrelated: about half of 64 bits


def test_perceptual_hash_barely_moves_under_sensor_noise() -> None:
    clean = scene(3)
    noise = np.random.default_rng(0).normal(0, 5, clean.shape)
    noisy = np.clip(clean + noise, 0, 255).astype(np.uint8)

    assert hamming(phash(clean), phash(noisy)) <= DuplicateConfig().hash_max_distance


def test_perceptual_hash_is_64_bits() -> None:
    hashes = [phash(scene(seed)) for seed in range(20)]

    assert all(0 <= h < 2**64 for h in hashes)
    assert max(hashes).bit_length() > 56  # the high bits are used too


def test_the_hash_is_taken_only_for_a_frame_a_policy_would_keep() -> None:
    taken: list[int] = []

    def hashed() -> int:
        taken.append(1)
        return 0

    s = sampler(SamplingConfig(uncertain=UncertainPolicyConfig(per_hour=1)))
    lazy = replace(frame((CONFIDENT,)), phash=hashed)
    assert s.decide(lazy, T0) is None and not taken  # no rule fired: no hash needed
    assert s.decide(replace(lazy, scores=np.array([0.4], np.float32)), T0) is not None
    assert len(taken) == 1  # kept: hashed once, compared and remembered
    assert s.decide(replace(lazy, scores=np.array([0.4], np.float32)), T0) is None
    assert len(taken) == 1  # the budget is spent: no hash needed
