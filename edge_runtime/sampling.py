"""The frame sampler: which frames are worth a human's time, within an hourly budget per policy.

Each policy's rule is a small pure function; `build_sampler` binds them, in priority order, to
their budgets, near-duplicate suppression and counters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

import cv2
import numpy as np
import yaml

from edge_runtime.contract import Detection, SampleMeta, SamplePolicy
from edge_runtime.detector import Inference
from edge_runtime.telemetry import UncertaintyBand, luma

# The first policy whose rule fires and whose budget has room keeps the frame.
PRIORITY = (SamplePolicy.UNCERTAIN, SamplePolicy.RARE_CLASS, SamplePolicy.EMPTY,
            SamplePolicy.RANDOM)
BUDGET_WINDOW = timedelta(hours=1)
T = TypeVar("T")


class SamplingConfigError(ValueError):
    """A sampling configuration that cannot run as written; the message names the key."""


# --- configuration -------------------------------------------------------------------------------

def _check_int(value: object, key: str, minimum: int, maximum: int | None = None) -> None:
    # bool is an int to Python, but `per_hour: yes` is a typo, not a budget of one
    if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
            or (maximum is not None and value > maximum)):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise SamplingConfigError(f"{key} must be an integer {bound}, got {value!r}")


def _check_number(value: object, key: str, low: float, high: float, *,
                  open_low: bool = False, open_high: bool = False) -> None:
    # written as "not inside" so that NaN, which compares false to everything, is refused too
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        (low < value if open_low else low <= value)
        and (value < high if open_high else value <= high)
    ):
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise SamplingConfigError(f"{key} must be a number in {interval}, got {value!r}")


@dataclass(frozen=True)
class UncertainPolicyConfig:
    """Keep frames with a detection scored inside [low, high]: the model could not decide."""

    per_hour: int = 120
    low: float = 0.25
    high: float = 0.6

    def __post_init__(self) -> None:
        _check_int(self.per_hour, "policies.uncertain.per_hour", 1)
        _check_number(self.low, "policies.uncertain.low", 0.0, 1.0)
        _check_number(self.high, "policies.uncertain.high", 0.0, 1.0)
        if self.low >= self.high:
            raise SamplingConfigError(f"policies.uncertain.low ({self.low}) must be below "
                                      f"policies.uncertain.high ({self.high})")

    @property
    def band(self) -> UncertaintyBand:
        return UncertaintyBand(self.low, self.high)


@dataclass(frozen=True)
class RareClassPolicyConfig:
    """Keep frames showing a rare class: a named one, or one seldom seen so far on this device."""

    per_hour: int = 60
    classes: frozenset[str] = frozenset()  # always rare, by name
    max_share: float | None = None  # rare: below this share of all detections counted so far
    min_detections: int = 500  # shares are noise until this many detections have been counted

    def __post_init__(self) -> None:
        _check_int(self.per_hour, "policies.rare_class.per_hour", 1)
        if not isinstance(self.classes, frozenset) or not all(
                isinstance(name, str) and name for name in self.classes):
            raise SamplingConfigError("policies.rare_class.classes must be a list of class names, "
                                      f"got {self.classes!r}")
        if self.max_share is not None:
            _check_number(self.max_share, "policies.rare_class.max_share", 0.0, 1.0,
                          open_low=True, open_high=True)
        _check_int(self.min_detections, "policies.rare_class.min_detections", 0)
        if not self.classes and self.max_share is None:
            raise SamplingConfigError("policies.rare_class needs classes, max_share or both")


@dataclass(frozen=True)
class EmptyPolicyConfig:
    """Keep frames with no detection at all: a miss there costs the most."""

    per_hour: int = 20

    def __post_init__(self) -> None:
        _check_int(self.per_hour, "policies.empty.per_hour", 1)


@dataclass(frozen=True)
class RandomPolicyConfig:
    """Keep a share of all frames regardless of content: the unbiased view of the line."""

    per_hour: int = 20
    share: float = 0.002

    def __post_init__(self) -> None:
        _check_int(self.per_hour, "policies.random.per_hour", 1)
        _check_number(self.share, "policies.random.share", 0.0, 1.0, open_low=True)


@dataclass(frozen=True)
class DuplicateConfig:
    """A frame this close to one of the last `recent` kept frames is not kept again."""

    hash_max_distance: int = 6  # Hamming distance between 64-bit dHashes
    recent: int = 32  # kept frames compared against; 0 turns suppression off
    embedding_max_distance: float | None = 0.05  # cosine distance; None ignores embeddings

    def __post_init__(self) -> None:
        # From 32 bits on, unrelated images (which differ in about half the bits) would match
        _check_int(self.hash_max_distance, "duplicates.hash_max_distance", 0, 31)
        _check_int(self.recent, "duplicates.recent", 0)
        if self.embedding_max_distance is not None:
            _check_number(self.embedding_max_distance, "duplicates.embedding_max_distance",
                          0.0, 1.0, open_high=True)


PolicyConfig = (UncertainPolicyConfig | RareClassPolicyConfig | EmptyPolicyConfig
                | RandomPolicyConfig)


@dataclass(frozen=True)
class SamplingConfig:
    """The device's sampling policy; a policy left as None is off."""

    enabled: bool = True
    uncertain: UncertainPolicyConfig | None = None
    rare_class: RareClassPolicyConfig | None = None
    empty: EmptyPolicyConfig | None = None
    random: RandomPolicyConfig | None = None
    duplicates: DuplicateConfig = field(default_factory=DuplicateConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise SamplingConfigError(f"enabled must be true or false, got {self.enabled!r}")
        if self.enabled and not self.policies():
            raise SamplingConfigError("policies: sampling is enabled but no policy is listed")

    def policies(self) -> dict[SamplePolicy, PolicyConfig]:
        """The policies that are on, in priority order."""
        sections: dict[SamplePolicy, PolicyConfig | None] = {
            SamplePolicy.UNCERTAIN: self.uncertain,
            SamplePolicy.RARE_CLASS: self.rare_class,
            SamplePolicy.EMPTY: self.empty,
            SamplePolicy.RANDOM: self.random,
        }
        on: dict[SamplePolicy, PolicyConfig] = {}
        for policy in PRIORITY:
            section = sections[policy]
            if section is not None:
                on[policy] = section
        return on


def _section(value: object, key: str, known: Sequence[str]) -> dict[str, object]:
    """A YAML mapping whose keys are all known ones (an empty section is an empty mapping)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SamplingConfigError(f"{key or 'the sampling config'} must be a mapping, "
                                  f"got {value!r}")
    for name in value:
        if name not in known:
            where = f"{key}.{name}" if key else str(name)
            raise SamplingConfigError(f"{where} is not a known key "
                                      f"(known: {', '.join(sorted(known))})")
    return dict(value)


def _dataclass(kind: type[T], key: str, value: object) -> T:
    """`kind` from a YAML section; the dataclass checks each value and names its key."""
    fields = _section(value, key, tuple(kind.__dataclass_fields__))  # type: ignore[attr-defined]
    if "classes" in fields:
        names = fields["classes"]
        if not isinstance(names, list):
            raise SamplingConfigError(f"{key}.classes must be a list of class names, "
                                      f"got {names!r}")
        fields["classes"] = frozenset(names)  # element types are checked by the dataclass
    return kind(**fields)


def _policy(policies: dict[str, object], policy: SamplePolicy, kind: type[T]) -> T | None:
    if policy.value not in policies:
        return None  # a policy left out of the file is off
    return _dataclass(kind, f"policies.{policy.value}", policies[policy.value])


def parse_sampling_config(data: object) -> SamplingConfig:
    """A `SamplingConfig` from plain data (parsed YAML, or settings merged from several places)."""
    top = _section(data, "", ("enabled", "policies", "duplicates"))
    policies = _section(top.get("policies"), "policies", tuple(p.value for p in SamplePolicy))
    enabled = top.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SamplingConfigError(f"enabled must be true or false, got {enabled!r}")
    return SamplingConfig(
        enabled=enabled,
        uncertain=_policy(policies, SamplePolicy.UNCERTAIN, UncertainPolicyConfig),
        rare_class=_policy(policies, SamplePolicy.RARE_CLASS, RareClassPolicyConfig),
        empty=_policy(policies, SamplePolicy.EMPTY, EmptyPolicyConfig),
        random=_policy(policies, SamplePolicy.RANDOM, RandomPolicyConfig),
        duplicates=_dataclass(DuplicateConfig, "duplicates", top.get("duplicates")),
    )


def load_sampling_config(path: Path) -> SamplingConfig:
    """Read and check a sampling policy file such as `configs/sampling.yaml`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SamplingConfigError(f"cannot read sampling config {path}: {error.strerror}"
                                  ) from error
    except yaml.YAMLError as error:
        raise SamplingConfigError(f"{path} is not valid YAML: {error}") from error
    try:
        return parse_sampling_config(data)
    except SamplingConfigError as error:
        raise SamplingConfigError(f"{path}: {error}") from None


# --- what the sampler sees and decides -----------------------------------------------------------

@dataclass(frozen=True)
class FrameView:
    """One frame as the sampler sees it: plain data the agent already has after inference.

    Not validated here: it is built by the agent on every frame, from the detector's own output.
    """

    scores: np.ndarray  # (n,) float32
    classes: np.ndarray  # (n,) int64, indices into names
    boxes: np.ndarray  # (n, 4) float32 xyxy in image pixels
    names: tuple[str, ...]  # the model's class names
    width: int  # image size in pixels
    height: int
    # 64-bit perceptual hash of the image, or how to take it: only a frame a policy would keep
    # is compared with the kept ones, so most frames never need theirs.
    phash: int | Callable[[], int]
    embedding: np.ndarray | None = None

    def perceptual_hash(self) -> int:
        return self.phash if isinstance(self.phash, int) else self.phash()


@dataclass(frozen=True)
class SampleDecision:
    """A frame to keep, why, and the model's boxes to pre-annotate it with."""

    policy: SamplePolicy
    uncertainty: float  # 0..1, see `uncertainty`
    predictions: tuple[Detection, ...]
    captured_at: datetime
    width: int
    height: int


@dataclass(frozen=True)
class SamplerCounters:
    """What the sampler kept and turned away since it started, for the device status."""

    kept: Mapping[SamplePolicy, int]
    over_budget: Mapping[SamplePolicy, int]  # the rule fired but the hour's budget was spent
    suppressed_duplicates: int  # would have been kept, but looked like a recently kept frame

    def as_dict(self) -> dict[str, int]:
        counts = {f"kept.{p.value}": n for p, n in self.kept.items()}
        counts.update({f"over_budget.{p.value}": n for p, n in self.over_budget.items()})
        counts["suppressed_duplicates"] = self.suppressed_duplicates
        return counts


def thumbnail_hash(thumb: np.ndarray) -> int:
    """64-bit dHash of the detector's small BGR uint8 thumbnail."""
    return grey_hash(luma(thumb))


def grey_hash(grey: np.ndarray) -> int:
    """64-bit dHash of a small grey uint8 image."""
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA)
    return int.from_bytes(np.packbits(small[:, 1:] > small[:, :-1]).tobytes(), "big")


def frame_view(inference: Inference, names: tuple[str, ...],
               phash: int | Callable[[], int] | None = None) -> FrameView:
    """The sampler's view of one detector result (`phash`: the thumbnail's hash or how to take
    it, if the caller has a quicker way than from the thumbnail)."""
    det, box = inference.detections, inference.letterbox
    if phash is None:
        phash = partial(thumbnail_hash, inference.thumbnail)
    return FrameView(det.scores, det.classes, det.boxes, names, box.width, box.height, phash,
                     inference.embedding)


# --- policy rules: pure functions over one frame's scores and classes ----------------------------

def has_uncertain_detection(scores: Sequence[float], low: float, high: float) -> bool:
    return any(low <= score <= high for score in scores)


def is_empty(scores: Sequence[float]) -> bool:
    return not scores


def has_rare_class(classes: Sequence[int], rare: frozenset[int], counts: Sequence[int],
                   total: int, max_share: float | None, min_detections: int) -> bool:
    """A detection of a class named rare, or of one below `max_share` of the `total` counted."""
    if any(c in rare for c in classes):
        return True
    if max_share is None or total < min_detections:
        return False
    limit = max_share * total
    return any(counts[c] < limit for c in classes)


def uncertainty(scores: Sequence[float]) -> float:
    """How undecided the model was: 1 - |2 s - 1| of its least certain detection; 1 when empty."""
    return max((1.0 - abs(2.0 * s - 1.0) for s in scores), default=1.0)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def unit_vector(embedding: np.ndarray | None) -> np.ndarray | None:
    """The embedding scaled to length 1 (cosine distance is then 1 - a dot product)."""
    if embedding is None:
        return None
    vector = np.asarray(embedding, np.float64).ravel()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else None  # a zero vector has no direction to compare


def predictions(frame: FrameView) -> tuple[Detection, ...]:
    """The frame's boxes as contract detections, in 0..1 image coordinates."""
    scale = np.array([frame.width, frame.height, frame.width, frame.height], np.float64)
    boxes = np.clip(frame.boxes / scale, 0.0, 1.0).tolist()
    return tuple(
        Detection(cls=c, label=frame.names[c], score=min(max(s, 0.0), 1.0),
                  x1=b[0], y1=b[1], x2=b[2], y2=b[3])
        for c, s, b in zip(frame.classes.tolist(), frame.scores.tolist(), boxes, strict=True)
    )


def to_sample_meta(decision: SampleDecision, *, device_id: str, model_version: str,
                   frame_id: int) -> SampleMeta:
    """The wire record of a kept frame (validated: it leaves the device)."""
    return SampleMeta(
        device_id=device_id, model_version=model_version, frame_id=frame_id,
        captured_at=decision.captured_at, policy=decision.policy,
        uncertainty=decision.uncertainty, width=decision.width, height=decision.height,
        predictions=list(decision.predictions),
    )


# --- state the rules and the sampler keep between frames -----------------------------------------

class HourlyBudget:
    """At most `per_hour` frames kept in any one-hour window of capture time."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._spent: deque[datetime] = deque()

    def has_room(self, now: datetime) -> bool:
        start = now - BUDGET_WINDOW
        spent = self._spent
        while spent and spent[0] <= start:
            spent.popleft()
        return len(spent) < self.per_hour

    def spend(self, now: datetime) -> None:
        self._spent.append(now)


class ClassShares:
    """Detections counted per class so far on this device: what 'rare by share' is measured on."""

    def __init__(self, rare_names: frozenset[str], counting: bool) -> None:
        self._rare_names = rare_names
        self._counting = counting
        self._by_name: dict[str, int] = {}
        self.names: tuple[str, ...] = ()
        self.counts: list[int] = []
        self.rare: frozenset[int] = frozenset()  # indices of the classes named rare
        self.total = 0

    def bind(self, names: tuple[str, ...]) -> None:
        """Follow the model's class list; counts are kept by name across a model update."""
        if names is self.names or names == self.names:
            self.names = names
            return
        self._by_name.update(zip(self.names, self.counts, strict=True))
        self.names = names
        self.counts = [self._by_name.get(name, 0) for name in names]
        self.total = sum(self.counts)
        self.rare = frozenset(i for i, name in enumerate(names) if name in self._rare_names)

    def observe(self, classes: Sequence[int]) -> None:
        if self._counting:
            counts = self.counts
            for c in classes:
                counts[c] += 1
            self.total += len(classes)


class RandomPick:
    """Fires on a share of the frames it is asked about, like a coin flip per frame.

    It counts down a geometric gap between picks, so the generator is drawn once per pick instead
    of once per frame.
    """

    def __init__(self, share: float, rng: np.random.Generator) -> None:
        self._share = share
        self._rng = rng
        self._left = self._gap()

    def _gap(self) -> int:
        return int(self._rng.geometric(self._share))

    def __call__(self) -> bool:
        self._left -= 1
        if self._left:
            return False
        self._left = self._gap()
        return True


class RecentKept:
    """Hashes and unit embeddings of the last kept frames, to turn away their near-duplicates."""

    def __init__(self, config: DuplicateConfig) -> None:
        self._config = config
        self._hashes: deque[int] = deque(maxlen=config.recent)
        self._embeddings: deque[np.ndarray | None] = deque(maxlen=config.recent)

    def is_near_duplicate(self, phash: int, embedding: np.ndarray | None) -> bool:
        limit = self._config.hash_max_distance
        if any(hamming(phash, kept) <= limit for kept in self._hashes):
            return True
        max_distance = self._config.embedding_max_distance
        unit = None if max_distance is None else unit_vector(embedding)
        if max_distance is None or unit is None:
            return False
        return any(kept is not None and kept.shape == unit.shape
                   and 1.0 - float(kept @ unit) <= max_distance
                   for kept in self._embeddings)

    def remember(self, phash: int, embedding: np.ndarray | None) -> None:
        self._hashes.append(phash)
        compared = self._config.embedding_max_distance is not None
        self._embeddings.append(unit_vector(embedding) if compared else None)


# --- samplers ------------------------------------------------------------------------------------

Rule = Callable[[list[float], list[int]], bool]  # (scores, classes) -> does the policy want it


@dataclass(frozen=True)
class BoundPolicy:
    policy: SamplePolicy
    fires: Rule
    budget: HourlyBudget


class Sampler(Protocol):
    def decide(self, frame: FrameView, captured_at: datetime) -> SampleDecision | None: ...

    def counters(self) -> SamplerCounters: ...


class NullSampler:
    """Sampling is off: nothing is kept and nothing is counted."""

    def decide(self, frame: FrameView, captured_at: datetime) -> SampleDecision | None:
        return None

    def counters(self) -> SamplerCounters:
        return SamplerCounters({}, {}, 0)


class PolicySampler:
    """Tries the bound policies in priority order on every frame; keeps at most one per frame."""

    def __init__(self, policies: Sequence[BoundPolicy], recent: RecentKept,
                 shares: ClassShares | None) -> None:
        self._policies = tuple(policies)
        self._recent = recent
        self._shares = shares
        self._kept = {bound.policy: 0 for bound in self._policies}
        self._over_budget = dict(self._kept)
        self._suppressed = 0

    def decide(self, frame: FrameView, captured_at: datetime) -> SampleDecision | None:
        if captured_at.tzinfo is None:
            raise ValueError("captured_at must carry a time zone (UTC)")
        # Plain lists: per-element Python loops beat numpy's per-call overhead on a few boxes
        scores: list[float] = frame.scores.tolist()
        classes: list[int] = frame.classes.tolist()
        shares = self._shares
        if shares is not None:
            shares.bind(frame.names)
        chosen = None
        for bound in self._policies:
            if bound.fires(scores, classes):
                if bound.budget.has_room(captured_at):
                    chosen = bound
                    break
                self._over_budget[bound.policy] += 1
        if shares is not None:
            shares.observe(classes)  # after the rule: a class is rare by what came before it
        if chosen is None:
            return None
        phash = frame.perceptual_hash()
        if self._recent.is_near_duplicate(phash, frame.embedding):
            self._suppressed += 1
            return None
        chosen.budget.spend(captured_at)
        self._recent.remember(phash, frame.embedding)
        self._kept[chosen.policy] += 1
        return SampleDecision(chosen.policy, uncertainty(scores), predictions(frame),
                              captured_at, frame.width, frame.height)

    def counters(self) -> SamplerCounters:
        return SamplerCounters(dict(self._kept), dict(self._over_budget), self._suppressed)


# Each binder fixes a pure rule's parameters (and the state it reads) into a `Rule`.

def _uncertain_rule(config: UncertainPolicyConfig) -> Rule:
    # Scores are float32: round the edges the same way, so that a score of 0.6 is inside a band
    # ending at 0.6, as it is for telemetry's numpy count of uncertain detections
    low, high = float(np.float32(config.low)), float(np.float32(config.high))
    return lambda scores, classes: has_uncertain_detection(scores, low, high)


def _rare_class_rule(config: RareClassPolicyConfig, shares: ClassShares) -> Rule:
    max_share, minimum = config.max_share, config.min_detections
    return lambda scores, classes: has_rare_class(classes, shares.rare, shares.counts,
                                                  shares.total, max_share, minimum)


def _empty_rule(scores: list[float], classes: list[int]) -> bool:
    return is_empty(scores)


def _random_rule(config: RandomPolicyConfig, rng: np.random.Generator) -> Rule:
    pick = RandomPick(config.share, rng)
    return lambda scores, classes: pick()


def build_sampler(config: SamplingConfig, rng: np.random.Generator) -> Sampler:
    """The sampler for `config`: a null one when sampling is off."""
    if not config.enabled:
        return NullSampler()
    rules: dict[SamplePolicy, Rule] = {}
    shares = None
    if config.uncertain is not None:
        rules[SamplePolicy.UNCERTAIN] = _uncertain_rule(config.uncertain)
    if config.rare_class is not None:
        rare = config.rare_class
        shares = ClassShares(rare.classes, counting=rare.max_share is not None)
        rules[SamplePolicy.RARE_CLASS] = _rare_class_rule(rare, shares)
    if config.empty is not None:
        rules[SamplePolicy.EMPTY] = _empty_rule
    if config.random is not None:
        rules[SamplePolicy.RANDOM] = _random_rule(config.random, rng)
    policies = [BoundPolicy(policy, rules[policy], HourlyBudget(section.per_hour))
                for policy, section in config.policies().items()]
    return PolicySampler(policies, RecentKept(config.duplicates), shares)
