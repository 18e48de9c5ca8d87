"""What a drift check answers (`DriftVerdict`), the errors of its input, and the pure rule that
turns per-column test results into a verdict.

No Evidently here: the adapter (`flows.drift.evidently_drift`) fills `ColumnResult`s from
Evidently and calls `decide`; the flow, the CLI and the fleet logic only read verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from flows.drift.settings import DriftConfig, SignalGroup

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]


class DriftInputError(ValueError):
    """A reference or current table that cannot be checked."""


class TelemetryFileError(DriftInputError):
    """A telemetry file that is missing or unreadable."""


class MissingColumnsError(DriftInputError):
    """A table lacks columns the drift config requires."""

    def __init__(self, which: str, missing: Sequence[str]) -> None:
        super().__init__(f"the {which} table lacks column(s) {', '.join(missing)}")
        self.which = which
        self.missing = tuple(missing)

    def __reduce__(self) -> tuple[type[MissingColumnsError], tuple[str, tuple[str, ...]]]:
        # pickled by its arguments: a worker process's error must reach the parent intact
        return type(self), (self.which, self.missing)


class TooFewRowsError(DriftInputError):
    """A table has fewer rows than the config's minimum for a meaningful test."""

    def __init__(self, which: str, rows: int, minimum: int) -> None:
        super().__init__(f"the {which} table has {rows} row(s); the drift check needs at "
                         f"least {minimum}")
        self.which = which
        self.rows = rows
        self.minimum = minimum

    def __reduce__(self) -> tuple[type[TooFewRowsError], tuple[str, int, int]]:
        # pickled by its arguments: a worker process's error must reach the parent intact
        return type(self), (self.which, self.rows, self.minimum)


def check_tables(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig) -> None:
    """Refuses tables the check cannot use: `TooFewRowsError`, `MissingColumnsError`."""
    for which, table, minimum in (("reference", reference, config.min_reference_rows),
                                  ("current", current, config.min_current_rows)):
        missing = [c for c in config.required_columns() if c not in table.columns]
        if missing:
            raise MissingColumnsError(which, missing)
        if len(table) < minimum:
            raise TooFewRowsError(which, len(table), minimum)


@dataclass(frozen=True)
class ColumnResult:
    """One column's test as the statistics engine reported it."""

    column: str
    group: SignalGroup
    method: str
    score: float | None  # None: not tested (too few values on one side)
    threshold: float
    test_drifted: bool  # the method's own verdict at `threshold`
    effect: float | None = None  # normed Wasserstein distance, when the config asks for it


@dataclass(frozen=True)
class ColumnDrift:
    """One column in a verdict: its score against its threshold, and whether it drifted."""

    column: str
    group: SignalGroup
    method: str
    score: float | None
    threshold: float
    drifted: bool
    effect: float | None = None
    tested: bool = True


@dataclass(frozen=True)
class DriftVerdict:
    """A window of telemetry compared with a reference profile."""

    drift: bool
    drifted_share: float  # drifted columns / tested columns
    drifted_count: int
    tested_count: int
    groups: tuple[SignalGroup, ...]  # signal groups with a drifted column, most columns first
    columns: tuple[ColumnDrift, ...]
    reference_rows: int
    current_rows: int
    family_alpha: float
    min_effect: float
    min_drifted_columns: int

    def top_columns(self, n: int = 3) -> tuple[ColumnDrift, ...]:
        """The most drifted columns, strongest evidence first."""
        drifted = [c for c in self.columns if c.drifted]
        return tuple(sorted(drifted, key=_strength, reverse=True)[:n])

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data (`drift` first; groups by name)."""
        data = asdict(self)
        data["groups"] = [g.value for g in self.groups]
        data["group_labels"] = [g.label for g in self.groups]
        data["columns"] = [{**asdict(c), "group": c.group.value} for c in self.columns]
        return {"drift": data.pop("drift"), **data}


def _strength(column: ColumnDrift) -> float:
    # effect size when there is one; else how far past its threshold the p-value went
    if column.effect is not None:
        return column.effect
    if column.score is None or column.score <= 0:
        return math.inf
    return math.log(column.threshold / column.score) if column.score < column.threshold \
        else column.score / max(column.threshold, 1e-12)


def decide(results: Sequence[ColumnResult], config: DriftConfig, *, reference_rows: int,
           current_rows: int) -> DriftVerdict:
    """The verdict over column results: a column drifts when its test says so and (when the
    config sets `min_effect`) it moved at least that far; the window drifts when
    `min_drifted_columns` columns do."""
    columns = []
    for r in results:
        tested = r.score is not None
        big_enough = config.min_effect <= 0 or (r.effect is not None
                                                and r.effect >= config.min_effect)
        columns.append(ColumnDrift(r.column, r.group, r.method, r.score, r.threshold,
                                   tested and r.test_drifted and big_enough, r.effect, tested))
    tested_count = sum(c.tested for c in columns)
    drifted = [c for c in columns if c.drifted]
    per_group: dict[SignalGroup, int] = {}
    for c in drifted:
        per_group[c.group] = per_group.get(c.group, 0) + 1
    groups = tuple(sorted(per_group, key=lambda g: (-per_group[g], list(SignalGroup).index(g))))
    return DriftVerdict(
        drift=len(drifted) >= config.min_drifted_columns,
        drifted_share=len(drifted) / tested_count if tested_count else 0.0,
        drifted_count=len(drifted),
        tested_count=tested_count,
        groups=groups,
        columns=tuple(columns),
        reference_rows=reference_rows,
        current_rows=current_rows,
        family_alpha=config.family_alpha,
        min_effect=config.min_effect,
        min_drifted_columns=config.min_drifted_columns,
    )
