"""The drift check's settings (`configs/drift.yaml`): which telemetry columns are compared, with
which Evidently method and threshold, and how column results add up to a device and fleet verdict.

Read once into a frozen `DriftConfig`; a bad file raises `DriftConfigError` naming the key.
Imports no Evidently: the CLI, the flow and the tests read it cheaply.
"""

from __future__ import annotations

import enum
import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configs import default_path
from configs.loader import SettingsError, layered

DEFAULT_CONFIG_PATH = default_path("drift.yaml")


class DriftConfigError(SettingsError):
    """The drift config is unreadable or a key holds a bad value; `key` names it."""

    def __init__(self, key: str, problem: str | None = None,
                 source: Path | str | None = None) -> None:
        if problem is None:  # one message, from the layered loader (reading a file)
            key, problem = "", key
        where = ": ".join(str(p) for p in (source, key) if p)
        super().__init__(f"{where}: {problem}" if where else problem)
        self.key = key
        self.problem = problem


class SignalGroup(enum.StrEnum):
    """What kind of signal a telemetry column carries; a drift is reported by group."""

    IMAGE_QUALITY = "image_quality"  # brightness, contrast, sharpness, saturation
    CONFIDENCE = "confidence"  # conf_*, uncertain
    CLASS_MIX = "class_mix"  # count_*, detections
    BOXES = "boxes"  # box_*
    EMBEDDING = "embedding"  # emb_*

    @property
    def label(self) -> str:
        return _GROUP_LABELS[self]


_GROUP_LABELS = {
    SignalGroup.IMAGE_QUALITY: "image quality",
    SignalGroup.CONFIDENCE: "prediction confidence",
    SignalGroup.CLASS_MIX: "class mix",
    SignalGroup.BOXES: "boxes",
    SignalGroup.EMBEDDING: "embedding",
}


class ScoreKind(enum.Enum):
    P_VALUE = "p_value"  # drifted when the score is at or below the threshold
    DISTANCE = "distance"  # drifted when the score is at or above the threshold


# Evidently's stattests for numerical columns (registry names), by what their score means
# (read from each implementation's comparison, not its docstring: some docstrings are wrong).
METHODS: Mapping[str, ScoreKind] = {
    "ks": ScoreKind.P_VALUE,
    "anderson": ScoreKind.P_VALUE,
    "cramer_von_mises": ScoreKind.P_VALUE,
    "mannw": ScoreKind.P_VALUE,
    "t_test": ScoreKind.P_VALUE,
    "es": ScoreKind.P_VALUE,
    "wasserstein": ScoreKind.DISTANCE,
    "ed": ScoreKind.DISTANCE,
    "hellinger": ScoreKind.DISTANCE,
    "jensenshannon": ScoreKind.DISTANCE,
    "kl_div": ScoreKind.DISTANCE,
    "psi": ScoreKind.DISTANCE,
}
EFFECT_METHOD = "wasserstein"  # the effect size: Wasserstein distance / reference std


class Correction(enum.StrEnum):
    """How the false-alarm budget of a window is split over the columns tested in it."""

    BONFERRONI = "bonferroni"  # each p-value column gets family_alpha / columns tested
    NONE = "none"  # each p-value column gets family_alpha


@dataclass(frozen=True)
class ColumnRule:
    """Columns (a name, or a glob such as `count_*`) tested with one method."""

    column: str
    group: SignalGroup
    method: str = "ks"
    threshold: float | None = None  # None: a p-value column's share of family_alpha
    required: bool = True  # a name that must be in both tables (globs may match nothing)

    @property
    def is_pattern(self) -> bool:
        return any(c in self.column for c in "*?[")

    @property
    def kind(self) -> ScoreKind:
        return METHODS[self.method]

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.column)


@dataclass(frozen=True)
class WindowSpec:
    """The live window of one device: its last `frames` records (None: all of them) captured in
    the last `max_age_s` seconds."""

    frames: int | None = 500
    max_age_s: float = 86400.0


@dataclass(frozen=True)
class FleetRule:
    """One fleet-wide event: at least `event_share` of the devices checked (and at least
    `min_devices` of them) drift in the same signal group."""

    event_share: float = 0.5
    min_devices: int = 2


@dataclass(frozen=True)
class DriftConfig:
    columns: tuple[ColumnRule, ...]
    family_alpha: float = 0.01  # false-alarm budget of one window (p-value columns)
    correction: Correction = Correction.BONFERRONI
    min_effect: float = 0.0  # a drifted column must also move this far (normed Wasserstein)
    min_drifted_columns: int = 1  # the window drifts when this many columns do
    min_values: int = 30  # non-empty values a column needs on each side to be tested
    min_reference_rows: int = 200
    min_current_rows: int = 50
    window: WindowSpec = WindowSpec()
    fleet: FleetRule = FleetRule()

    def rules_for(self, names: Sequence[str]) -> dict[str, ColumnRule]:
        """Each configured column present in `names`, with its rule (first rule that matches)."""
        chosen: dict[str, ColumnRule] = {}
        for rule in self.columns:
            for name in names:
                if name not in chosen and (rule.matches(name) if rule.is_pattern
                                           else name == rule.column):
                    chosen[name] = rule
        return chosen

    def required_columns(self) -> tuple[str, ...]:
        return tuple(r.column for r in self.columns if r.required and not r.is_pattern)

    def threshold_for(self, rule: ColumnRule, tested: int) -> float:
        """A column's threshold when `tested` columns share the window's false-alarm budget."""
        if rule.threshold is not None:
            return rule.threshold
        if self.correction is Correction.BONFERRONI:
            return self.family_alpha / max(tested, 1)
        return self.family_alpha


# -- parsing ---------------------------------------------------------------------------------------


def _mapping(value: object, key: str, known: Sequence[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DriftConfigError(key, f"must be a mapping, got {value!r}")
    for name in value:
        if name not in known:
            where = f"{key}.{name}" if key else str(name)
            raise DriftConfigError(where, f"is not a known key (known: {', '.join(known)})")
    return dict(value)


def _number(value: object, key: str, low: float, high: float, *, integer: bool = False,
            open_low: bool = False) -> float:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise DriftConfigError(key, f"must be {'an integer' if integer else 'a number'}, "
                                    f"got {value!r}")
    if value < low or value > high or (open_low and value == low):
        bounds = f"{'(' if open_low else '['}{low}, {high}]"
        raise DriftConfigError(key, f"must be in {bounds}, got {value!r}")
    return value


def _column(value: object, key: str) -> ColumnRule:
    fields = _mapping(value, key, ("column", "group", "method", "threshold", "required"))
    name = fields.get("column")
    if not isinstance(name, str) or not name:
        raise DriftConfigError(f"{key}.column", f"must be a column name or glob, got {name!r}")
    try:
        group = SignalGroup(str(fields.get("group")))
    except ValueError:
        raise DriftConfigError(f"{key}.group", f"must be one of "
                               f"{', '.join(g.value for g in SignalGroup)}, "
                               f"got {fields.get('group')!r}") from None
    method = fields.get("method", "ks")
    if method not in METHODS:
        raise DriftConfigError(f"{key}.method", f"must be one of {', '.join(METHODS)}, "
                                                f"got {method!r}")
    threshold = fields.get("threshold")
    if threshold is not None:
        threshold = _number(threshold, f"{key}.threshold", 0.0, math.inf, open_low=True)
    elif METHODS[method] is ScoreKind.DISTANCE:
        raise DriftConfigError(f"{key}.threshold", f"a distance method ({method}) needs one")
    required = fields.get("required", not any(c in name for c in "*?["))
    if not isinstance(required, bool):
        raise DriftConfigError(f"{key}.required", f"must be true or false, got {required!r}")
    return ColumnRule(name, group, method, threshold, required)


def parse_drift_config(data: object) -> DriftConfig:
    """A `DriftConfig` from plain data (parsed YAML)."""
    top = _mapping(data, "", ("decision", "window", "fleet", "columns"))
    dec = _mapping(top.get("decision"), "decision", (
        "family_alpha", "correction", "min_effect", "min_drifted_columns", "min_values",
        "min_reference_rows", "min_current_rows"))
    win = _mapping(top.get("window"), "window", ("frames", "max_age_s"))
    fleet = _mapping(top.get("fleet"), "fleet", ("event_share", "min_devices"))
    raw = top.get("columns")
    if not isinstance(raw, list) or not raw:
        raise DriftConfigError("columns", f"must be a non-empty list, got {raw!r}")
    columns = tuple(_column(c, f"columns[{i}]") for i, c in enumerate(raw))
    seen: set[str] = set()
    for i, rule in enumerate(columns):
        if rule.column in seen:
            raise DriftConfigError(f"columns[{i}].column", f"{rule.column!r} is listed twice")
        seen.add(rule.column)
    try:
        correction = Correction(dec.get("correction", Correction.BONFERRONI.value))
    except ValueError:
        raise DriftConfigError("decision.correction", f"must be one of "
                               f"{', '.join(c.value for c in Correction)}, "
                               f"got {dec.get('correction')!r}") from None
    defaults = DriftConfig(columns=columns)
    return DriftConfig(
        columns=columns,
        family_alpha=_number(dec.get("family_alpha", defaults.family_alpha),
                             "decision.family_alpha", 0.0, 1.0, open_low=True),
        correction=correction,
        min_effect=_number(dec.get("min_effect", defaults.min_effect), "decision.min_effect",
                           0.0, math.inf),
        min_drifted_columns=int(_number(dec.get("min_drifted_columns", 1),
                                        "decision.min_drifted_columns", 1, len(columns) * 1000,
                                        integer=True)),
        min_values=int(_number(dec.get("min_values", defaults.min_values),
                               "decision.min_values", 2, 10**9, integer=True)),
        min_reference_rows=int(_number(dec.get("min_reference_rows",
                                               defaults.min_reference_rows),
                                       "decision.min_reference_rows", 2, 10**9, integer=True)),
        min_current_rows=int(_number(dec.get("min_current_rows", defaults.min_current_rows),
                                     "decision.min_current_rows", 2, 10**9, integer=True)),
        window=WindowSpec(
            frames=None if "frames" in win and win["frames"] is None else int(_number(
                win.get("frames", WindowSpec.frames), "window.frames", 2, 10**7, integer=True)),
            max_age_s=_number(win.get("max_age_s", WindowSpec.max_age_s), "window.max_age_s",
                              0.0, math.inf, open_low=True)),
        fleet=FleetRule(
            event_share=_number(fleet.get("event_share", FleetRule.event_share),
                                "fleet.event_share", 0.0, 1.0, open_low=True),
            min_devices=int(_number(fleet.get("min_devices", FleetRule.min_devices),
                                    "fleet.min_devices", 1, 10**6, integer=True))),
    )


def load_drift_config(path: Path | None = None, *, project: Path | None = None) -> DriftConfig:
    """The drift config: packaged `drift.yaml` < the project's `configs/drift.yaml` and
    `edgeloop.yaml` (`drift:`) < the file `path` (`--config`); the error names the file a bad
    value came from."""
    merged = layered("drift", project=project, config=path, error=DriftConfigError)
    try:
        return parse_drift_config(merged.data)
    except DriftConfigError as error:
        top = error.key.split(".")[0].split("[")[0]
        raise DriftConfigError(error.key, error.problem, merged.source_of(top if top == "columns"
                                                                          else error.key)
                               ) from None
