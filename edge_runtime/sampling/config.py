"""The sampling policy: its typed configuration, and how a policy file is read and checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from configs.loader import SettingsError, layered
from edge_runtime.contract import SamplePolicy
from edge_runtime.telemetry import UncertaintyBand

# The first policy whose rule fires and whose budget has room keeps the frame.
PRIORITY = (SamplePolicy.UNCERTAIN, SamplePolicy.RARE_CLASS, SamplePolicy.EMPTY,
            SamplePolicy.RANDOM)
T = TypeVar("T")


class SamplingConfigError(SettingsError):
    """A sampling configuration that cannot run as written; the message names the key."""


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
    if policy.value not in policies or policies[policy.value] is False:
        return None  # a policy left out, or set to false over a file that has it, is off
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


def load_sampling_config(config: Path | None = None, *,
                         project: Path | None = None) -> SamplingConfig:
    """The device's sampling policy: packaged `sampling.yaml` < the project's
    `configs/sampling.yaml` and `edgeloop.yaml` (`sampling:`) < the file `config`."""
    merged = layered("sampling", project=project, config=config, error=SamplingConfigError)
    try:
        return parse_sampling_config(merged.data)
    except SamplingConfigError as error:
        sources = ", ".join(dict.fromkeys(merged.origin.values()))
        raise SamplingConfigError(f"{error} (sampling settings from {sources})") from None
