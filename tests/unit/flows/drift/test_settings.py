"""The drift config: the shipped file reads, every bad value is refused naming its key, and the
false-alarm budget is split over the columns tested."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from flows.drift.settings import (
    DEFAULT_CONFIG_PATH,
    Correction,
    DriftConfigError,
    SignalGroup,
    load_drift_config,
    parse_drift_config,
)

BASE = {
    "decision": {"family_alpha": 0.01},
    "columns": [{"column": "brightness", "group": "image_quality"},
                {"column": "count_*", "group": "class_mix"},
                {"column": "conf_max", "group": "confidence", "method": "wasserstein",
                 "threshold": 0.2}],
}


def with_change(path: tuple[str | int, ...], value: object) -> dict:
    data = copy.deepcopy(BASE)
    node: object = data
    for part in path[:-1]:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]  # type: ignore[index]
    node[path[-1]] = value  # type: ignore[index]
    return data


def test_shipped_config_reads_and_covers_every_signal_group_but_embedding_columns_are_optional():
    config = load_drift_config(DEFAULT_CONFIG_PATH)
    groups = {rule.group for rule in config.columns}
    assert groups == set(SignalGroup)
    assert "brightness" in config.required_columns()
    assert not any(r.required for r in config.columns if r.is_pattern)
    assert config.correction is Correction.BONFERRONI


def test_globs_pick_columns_and_the_first_matching_rule_wins():
    config = parse_drift_config(BASE)
    rules = config.rules_for(["brightness", "count_nut", "count_bolt", "infer_ms", "conf_max"])
    assert set(rules) == {"brightness", "count_nut", "count_bolt", "conf_max"}
    assert rules["count_bolt"].group is SignalGroup.CLASS_MIX


def test_bonferroni_splits_family_alpha_over_tested_columns_and_explicit_thresholds_stand():
    config = parse_drift_config(BASE)
    p_rule, distance_rule = config.columns[0], config.columns[2]
    assert config.threshold_for(p_rule, 4) == pytest.approx(0.0025)
    assert config.threshold_for(distance_rule, 4) == 0.2
    uncorrected = parse_drift_config(with_change(("decision", "correction"), "none"))
    assert uncorrected.threshold_for(p_rule, 4) == pytest.approx(0.01)


@pytest.mark.parametrize(("path", "value", "key"), [
    (("decision", "family_alpha"), 1.5, "decision.family_alpha"),
    (("decision", "family_alpha"), 0, "decision.family_alpha"),
    (("decision", "correction"), "holm-ish", "decision.correction"),
    (("decision", "min_drifted_columns"), 0, "decision.min_drifted_columns"),
    (("decision", "typo_key"), 1, "decision.typo_key"),
    (("window", "frames"), "many", "window.frames"),
    (("fleet", "event_share"), 2.0, "fleet.event_share"),
    (("columns", 0, "method"), "pvalue-magic", "columns[0].method"),
    (("columns", 0, "group"), "colour", "columns[0].group"),
    (("columns", 1, "column"), "brightness", "columns[1].column"),
])
def test_a_bad_value_is_refused_with_its_key(path, value, key):
    with pytest.raises(DriftConfigError) as caught:
        parse_drift_config(with_change(path, value))
    assert caught.value.key == key
    assert key in str(caught.value)


def test_a_distance_method_without_a_threshold_is_refused():
    data = copy.deepcopy(BASE)
    del data["columns"][2]["threshold"]
    with pytest.raises(DriftConfigError, match=r"columns\[2\]\.threshold"):
        parse_drift_config(data)


def test_window_frames_null_means_every_record_within_the_age_limit():
    config = parse_drift_config(with_change(("window", "frames"), None))
    assert config.window.frames is None


def test_unreadable_or_invalid_files_name_the_file(tmp_path: Path):
    with pytest.raises(DriftConfigError, match=r"cannot read .*absent\.yaml"):
        load_drift_config(tmp_path / "absent.yaml")
    bad = tmp_path / "drift.yaml"
    bad.write_text(yaml.safe_dump(with_change(("decision", "min_effect"), -1)))
    with pytest.raises(DriftConfigError, match=rf"{bad}: decision.min_effect"):
        load_drift_config(bad)
