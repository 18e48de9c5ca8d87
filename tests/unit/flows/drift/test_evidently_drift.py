"""The Evidently adapter against the real Evidently: known answers on synthetic telemetry, the
report path and the fast path agreeing, and the shapes our verdict promises."""

from __future__ import annotations

import pickle
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.drift.settings import METHODS, ScoreKind, SignalGroup, load_drift_config
from flows.drift.verdict import DriftInputError, MissingColumnsError, TooFewRowsError

with warnings.catch_warnings():  # Evidently imports litestar, which warns about itself
    warnings.simplefilter("ignore", DeprecationWarning)
    from flows.drift.evidently_drift import (
        add_to_workspace,
        check_drift,
        registered_methods,
        screen_drift,
    )

CONFIG = load_drift_config()


def telemetry(seed: int, rows: int, *, brightness: float = 0.45, conf_scale: float = 1.0,
              detections: float = 3.0) -> pd.DataFrame:
    """Telemetry shaped like stats_row's: frames with no detection have no conf_/box_ values."""
    rng = np.random.default_rng(seed)
    det = rng.poisson(detections, rows)
    has = det > 0
    conf = np.where(has, rng.uniform(0.3, 1.0, rows) * conf_scale, np.nan)
    nut = rng.binomial(det, 0.3)
    washer = rng.binomial(det - nut, 0.4)
    return pd.DataFrame({
        "device_id": "d1", "model_version": "m1", "frame_id": np.arange(rows),
        "infer_ms": rng.normal(15, 2, rows),
        "brightness": rng.normal(brightness, 0.05, rows), "contrast": rng.normal(0.05, 0.01, rows),
        "sharpness": rng.gamma(4.0, 60.0, rows), "saturation": rng.normal(0.05, 0.015, rows),
        "conf_max": conf, "conf_mean": conf * 0.8, "conf_min": conf * 0.6,
        "uncertain": rng.poisson(1.5, rows), "detections": det,
        "count_nut": nut, "count_washer": washer, "count_bolt": det - nut - washer,
        "box_area_mean": np.where(has, rng.gamma(3.0, 0.007, rows), np.nan),
        "box_area_min": np.where(has, rng.gamma(3.0, 0.003, rows), np.nan),
        "box_area_max": np.where(has, rng.gamma(3.0, 0.01, rows), np.nan),
        "box_aspect_mean": np.where(has, rng.normal(1.0, 0.3, rows), np.nan),
    })


REFERENCE = telemetry(0, 1000)


def test_a_window_from_the_same_distribution_does_not_drift():
    verdict = check_drift(REFERENCE, telemetry(1, 500), CONFIG).verdict
    assert not verdict.drift
    assert verdict.drifted_count == 0 and verdict.drifted_share == 0.0
    assert verdict.groups == ()
    assert (verdict.reference_rows, verdict.current_rows) == (1000, 500)
    # every configured column present in both tables is tested; timing columns are not
    assert {c.column for c in verdict.columns} == {
        "brightness", "contrast", "sharpness", "saturation", "conf_max", "conf_mean", "conf_min",
        "uncertain", "detections", "count_nut", "count_washer", "count_bolt", "box_area_mean",
        "box_area_min", "box_area_max", "box_aspect_mean"}
    assert verdict.tested_count == 16


def test_the_reference_against_itself_does_not_drift():
    assert not check_drift(REFERENCE, REFERENCE.copy(), CONFIG).verdict.drift


def test_a_darker_window_drifts_in_brightness_and_names_the_image_quality_group():
    verdict = check_drift(REFERENCE, telemetry(2, 500, brightness=0.40), CONFIG).verdict
    assert verdict.drift
    assert verdict.groups == (SignalGroup.IMAGE_QUALITY,)
    assert [c.column for c in verdict.columns if c.drifted] == ["brightness"]
    column = verdict.top_columns(1)[0]
    assert column.method == "ks"
    assert column.threshold == pytest.approx(CONFIG.family_alpha / verdict.tested_count)
    assert column.score is not None and column.score <= column.threshold
    assert verdict.to_dict()["group_labels"] == ["image quality"]


def test_a_confidence_collapse_drifts_in_the_confidence_group():
    verdict = check_drift(REFERENCE, telemetry(3, 500, conf_scale=0.7), CONFIG).verdict
    assert verdict.drift
    assert verdict.groups[0] is SignalGroup.CONFIDENCE


def test_the_report_and_the_fast_path_give_the_same_verdict():
    for current in (telemetry(4, 250), telemetry(5, 250, brightness=0.43),
                    telemetry(6, 300, detections=2.0)):
        assert check_drift(REFERENCE, current, CONFIG).verdict == \
            screen_drift(REFERENCE, current, CONFIG)


def test_min_effect_ignores_a_significant_but_tiny_shift_and_reports_the_effect():
    big_reference, shifted = telemetry(7, 20000), telemetry(8, 20000, brightness=0.452)
    plain = replace(CONFIG, min_reference_rows=2, min_current_rows=2)
    guarded = replace(plain, min_effect=0.1)
    assert screen_drift(big_reference, shifted, plain).drift
    verdict = screen_drift(big_reference, shifted, guarded)
    assert not verdict.drift
    brightness = next(c for c in verdict.columns if c.column == "brightness")
    assert brightness.effect is not None and 0 < brightness.effect < 0.1


def test_columns_without_enough_values_are_reported_untested_and_do_not_break_the_check():
    current = telemetry(9, 200, detections=0.0)  # nothing detected: no conf_ or box_ values
    verdict = check_drift(REFERENCE, current, CONFIG).verdict
    untested = {c.column for c in verdict.columns if not c.tested}
    assert untested == {"conf_max", "conf_mean", "conf_min", "box_area_mean", "box_area_min",
                        "box_area_max", "box_aspect_mean"}
    assert all(c.score is None and not c.drifted for c in verdict.columns if not c.tested)
    assert verdict.drift and SignalGroup.CLASS_MIX in verdict.groups


def test_bad_tables_are_refused_with_named_errors():
    with pytest.raises(MissingColumnsError, match=r"current table lacks column.*sharpness"):
        check_drift(REFERENCE, telemetry(10, 200).drop(columns=["sharpness"]), CONFIG)
    with pytest.raises(TooFewRowsError, match="current table has 10 row"):
        check_drift(REFERENCE, telemetry(11, 10), CONFIG)
    with pytest.raises(TooFewRowsError, match="reference table has 100 row"):
        screen_drift(telemetry(12, 100), telemetry(13, 200), CONFIG)
    garbled = telemetry(14, 200).astype({"contrast": object})
    garbled.loc[5, "contrast"] = "n/a"
    with pytest.raises(DriftInputError, match="column contrast holds a non-number: 'n/a'"):
        check_drift(REFERENCE, garbled, CONFIG)


@pytest.mark.parametrize("error", [TooFewRowsError("current", 10, 50),
                                   MissingColumnsError("reference", ["sharpness", "contrast"])])
def test_a_refusal_survives_pickling_so_a_worker_process_can_raise_it(error: DriftInputError):
    # multiprocessing pickles a worker's exception to the parent; one that cannot be rebuilt
    # there hangs the pool instead of failing the run (bench/drift_power.py did)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert vars(again) == vars(error)


def test_every_method_the_config_accepts_is_an_evidently_stattest():
    assert set(METHODS) <= registered_methods()
    assert {m for m, kind in METHODS.items() if kind is ScoreKind.DISTANCE} >= {"wasserstein"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # litestar, under Evidently's UI
def test_the_html_report_and_workspace_keep_one_project_per_device(tmp_path: Path):
    check = check_drift(REFERENCE, telemetry(14, 300, brightness=0.4), CONFIG, name="dev-a run")
    html = check.save_html(tmp_path / "reports" / "dev-a.html").read_text()
    assert "brightness" in html and "<html" in html.lower()
    workspace = tmp_path / "workspace"
    first = add_to_workspace(workspace, "dev-a", check, CONFIG)
    second = add_to_workspace(workspace, "dev-a", check, CONFIG)
    add_to_workspace(workspace, "dev-b", check, CONFIG)
    assert first != second
    from evidently.ui.workspace import Workspace  # the test reads back what the UI would show

    projects = {p.name: p for p in Workspace.create(str(workspace)).list_projects()}
    assert set(projects) == {"dev-a", "dev-b"}
    assert len(Workspace.create(str(workspace)).list_runs(projects["dev-a"].id)) == 2
