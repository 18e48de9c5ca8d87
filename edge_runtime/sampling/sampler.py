"""The frame sampler: which frames are worth a human's time, within an hourly budget per policy.

Each policy's rule is a small pure function; `build_sampler` binds them, in priority order, to
their budgets, near-duplicate suppression and counters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np

from edge_runtime.contract import SamplePolicy
from edge_runtime.sampling.config import (
    RandomPolicyConfig,
    RareClassPolicyConfig,
    SamplingConfig,
    UncertainPolicyConfig,
)
from edge_runtime.sampling.frame import FrameView, SampleDecision, SamplerCounters
from edge_runtime.sampling.rules import (
    has_rare_class,
    has_uncertain_detection,
    is_empty,
    predictions,
    uncertainty,
)
from edge_runtime.sampling.state import ClassShares, HourlyBudget, RandomPick, RecentKept

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
