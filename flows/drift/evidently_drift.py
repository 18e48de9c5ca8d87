"""The one adapter to Evidently (0.7, new API): telemetry windows in, our `DriftVerdict` out.

`check_drift` runs an Evidently `Report` of per-column `ValueDrift` metrics (the HTML report and
the workspace snapshot come from it); `screen_drift` asks the same Evidently stattests directly,
without building the report's plots (~30x cheaper, for calibration sweeps). Both end in the same
pure `decide`. Nothing else in edgeloop imports evidently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.calculations.stattests.registry import get_stattest
from evidently.legacy.core import ColumnType
from evidently.metrics import ValueDrift

from flows.drift.settings import (
    EFFECT_METHOD,
    METHODS,
    ColumnRule,
    DriftConfig,
    ScoreKind,
    SignalGroup,
)
from flows.drift.verdict import (
    ColumnResult,
    DriftInputError,
    DriftVerdict,
    check_tables,
    decide,
)

_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"


@dataclass(frozen=True)
class _Plan:
    """What will be tested: the cleaned tables and each column's rule and threshold."""

    reference: pd.DataFrame
    current: pd.DataFrame
    tested: dict[str, tuple[ColumnRule, float]]  # column -> (rule, threshold)
    untested: dict[str, tuple[ColumnRule, float]]  # too few values on one side


def plan_check(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig) -> _Plan:
    """Checks both tables against the config and picks the columns to test.

    Raises `TooFewRowsError` or `MissingColumnsError` (both `DriftInputError`s).
    """
    check_tables(reference, current, config)
    shared = [c for c in reference.columns if c in set(current.columns)]
    rules = config.rules_for(shared)
    ref = _numeric(reference, list(rules), "reference")
    cur = _numeric(current, list(rules), "current")
    enough = {c for c in rules
              if min(ref[c].notna().sum(), cur[c].notna().sum()) >= config.min_values}
    # The false-alarm budget is split over the columns actually tested in this window.
    tested = {c: (rules[c], config.threshold_for(rules[c], len(enough))) for c in rules
              if c in enough}
    untested = {c: (rules[c], config.threshold_for(rules[c], len(enough))) for c in rules
                if c not in enough}
    return _Plan(ref, cur, tested, untested)


def _numeric(table: pd.DataFrame, columns: list[str], which: str) -> pd.DataFrame:
    """The columns as floats; empty values (a frame without detections has no conf_max) stay
    NaN, anything else that is not a number is refused."""
    out = table[columns].apply(pd.to_numeric, errors="coerce").astype("float64")
    for column in columns:
        bad = out[column].isna() & table[column].notna()
        if bad.any():
            raise DriftInputError(f"the {which} table's column {column} holds a non-number: "
                                  f"{table[column][bad].iloc[0]!r}")
    # Evidently drops NaN and +-inf per column; doing it up front keeps both paths identical.
    return out.replace([np.inf, -np.inf], np.nan)


def _untested(plan: _Plan) -> list[ColumnResult]:
    return [ColumnResult(c, rule.group, rule.method, None, threshold, False)
            for c, (rule, threshold) in plan.untested.items()]


# -- the full report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftCheck:
    """A verdict and the Evidently run behind it (for the HTML report and the workspace)."""

    verdict: DriftVerdict
    snapshot: Any  # evidently Snapshot; only this module looks inside

    def html(self) -> str:
        return str(self.snapshot.get_html_str(as_iframe=False))

    def save_html(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.html(), encoding="utf-8")
        tmp.replace(path)
        return path


def check_drift(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig, *,
                name: str | None = None, timestamp: datetime | None = None,
                tags: Sequence[str] = (), metadata: Mapping[str, str] | None = None
                ) -> DriftCheck:
    """Compare `current` with `reference` through an Evidently Report; our verdict and the run."""
    plan = plan_check(reference, current, config)
    metrics = []
    for column, (rule, threshold) in plan.tested.items():
        metrics.append(ValueDrift(column=column, method=rule.method, threshold=threshold))
        if config.min_effect > 0 and rule.method != EFFECT_METHOD:
            metrics.append(ValueDrift(column=column, method=EFFECT_METHOD,
                                      threshold=config.min_effect))
    columns = list(plan.tested)
    definition = DataDefinition(numerical_columns=columns)
    report = Report(metrics, include_tests=True)  # type: ignore[arg-type]
    snapshot = report.run(
        current_data=Dataset.from_pandas(plan.current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(plan.reference[columns], data_definition=definition),
        timestamp=timestamp, name=name, tags=list(tags), metadata=dict(metadata or {}))
    scores, flags = _read_run(snapshot.dict())
    results = []
    for column, (rule, threshold) in plan.tested.items():
        effect = scores.get((column, EFFECT_METHOD)) if config.min_effect > 0 else None
        results.append(ColumnResult(column, rule.group, rule.method, scores[(column, rule.method)],
                                    threshold, flags[(column, rule.method)], effect))
    verdict = decide(results + _untested(plan), config, reference_rows=len(reference),
                     current_rows=len(current))
    return DriftCheck(verdict, snapshot)


def _read_run(run: dict[str, Any]) -> tuple[dict[tuple[str, str], float],
                                            dict[tuple[str, str], bool]]:
    """(column, method) -> score, and -> drifted as Evidently's own test reported it."""
    scores: dict[tuple[str, str], float] = {}
    by_id: dict[str, tuple[str, str]] = {}
    for metric in run["metrics"]:
        config = metric["config"]
        if config.get("type") == _VALUE_DRIFT:
            key = (config["column"], config["method"])
            scores[key] = float(metric["value"])
            by_id[metric["id"]] = key
    flags = {key: False for key in scores}
    for test in run.get("tests", []):
        tested = by_id.get(test.get("metric_config", {}).get("metric_id", ""))
        if tested is not None:
            flags[tested] = test["status"] == "FAIL"
    return scores, flags


# -- the fast path --------------------------------------------------------------------------------


def screen_drift(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig
                 ) -> DriftVerdict:
    """The same verdict as `check_drift` from the same Evidently stattests, without a Report."""
    plan = plan_check(reference, current, config)
    results = []
    for column, (rule, threshold) in plan.tested.items():
        ref, cur = plan.reference[column].dropna(), plan.current[column].dropna()
        score, drifted = _stattest(rule.method, ref, cur, threshold)
        effect = None
        if config.min_effect > 0:
            effect = score if rule.method == EFFECT_METHOD else \
                _stattest(EFFECT_METHOD, ref, cur, config.min_effect)[0]
        results.append(ColumnResult(column, rule.group, rule.method, score, threshold, drifted,
                                    effect))
    return decide(results + _untested(plan), config, reference_rows=len(reference),
                  current_rows=len(current))


def _stattest(method: str, ref: pd.Series, cur: pd.Series, threshold: float
              ) -> tuple[float, bool]:
    test = get_stattest(ref, cur, ColumnType.Numerical, method)
    result = test(ref, cur, ColumnType.Numerical, threshold)
    return float(result.drift_score), bool(result.drifted)


def registered_methods() -> set[str]:
    """The stattest names this Evidently knows for numerical columns (checked by the tests)."""
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests

    return {name for name, kinds in _registered_stat_tests.items()
            if ColumnType.Numerical in kinds}


# -- the workspace ---------------------------------------------------------------------------------


def add_to_workspace(workspace_dir: Path, project_name: str, check: DriftCheck,
                     config: DriftConfig, description: str = "") -> str:
    """Stores the check's run in the local Evidently workspace under `project_name` (created,
    with a dashboard of effect sizes per signal group, on first use); returns the run's id.

    `evidently ui --workspace DIR` shows one project (dashboard) per device.
    """
    # The workspace pulls in Evidently's UI service (litestar): only the flow needs it.
    from evidently.ui.workspace import Workspace

    workspace_dir.mkdir(parents=True, exist_ok=True)
    workspace = Workspace.create(str(workspace_dir))
    found = workspace.search_project(project_name)
    project = found[0] if found else _new_project(workspace, project_name, description, check,
                                                  config)
    ref = workspace.add_run(project.id, check.snapshot, include_data=False)
    return str(ref.id)


def _new_project(workspace: Any, name: str, description: str, check: DriftCheck,
                 config: DriftConfig) -> Any:
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel, text_panel

    project = workspace.create_project(name, description=description or None)
    project.dashboard.add_panel(text_panel(
        title=f"Drift of {name}",
        description=(f"Per-column tests vs the release's reference; family alpha "
                     f"{config.family_alpha}, min effect {config.min_effect}.")))
    method = EFFECT_METHOD if config.min_effect > 0 else None
    for group in SignalGroup:
        columns = [c for c in check.verdict.columns if c.group is group]
        if not columns:
            continue
        labels = [{"column": c.column, "method": method or c.method} for c in columns]
        p_values = all(METHODS.get(c.method) is ScoreKind.P_VALUE for c in columns)
        score = "p-value, low = drift" if p_values else "score"
        project.dashboard.add_panel(line_plot_panel(
            title=f"{group.label}: " + ("effect size (normed Wasserstein)" if method
                                        else f"drift score ({score})"),
            values=[PanelMetric(legend=label["column"], metric=_VALUE_DRIFT,
                                metric_labels=label) for label in labels],
            size="half"))
    project.save()
    return project
