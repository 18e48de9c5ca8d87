"""The layered settings loader: each layer wins over the one below, and a bad document, key or
value is refused naming the key and the layer it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.loader import SettingsError, layered, read_document
from flows.drift.settings import DriftConfigError, load_drift_config
from flows.labelling.settings import LabellingSettings, load_labelling_settings
from flows.release.settings import ReleaseConfig, load_release_config
from flows.retrain.gate import GateConfig, GateConfigError, load_gate_config
from hub.settings import HubSettings, load_settings


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    root = project(tmp_path, {
        "configs/hub.yaml": "port: 9001\nworkers: 2\ndb_url: sqlite:///a.db\nhost: 10.0.0.1\n",
        "edgeloop.yaml": "hub:\n  workers: 3\n  db_url: sqlite:///b.db\n  host: 10.0.0.2\n",
        "extra.yaml": "db_url: sqlite:///c.db\nhost: 10.0.0.3\n",
    })
    settings = load_settings({"EDGELOOP_HUB_HOST": "10.0.0.4"}, project=root,
                             config=root / "extra.yaml", port=None)
    assert settings.port == 9001  # the project's configs/hub.yaml over the packaged one
    assert settings.workers == 3  # edgeloop.yaml over configs/hub.yaml
    assert settings.db_url == "sqlite:///c.db"  # --config over edgeloop.yaml
    assert settings.host == "10.0.0.4"  # the environment over every file
    assert load_settings({"EDGELOOP_HUB_HOST": "10.0.0.4"}, project=root,
                         host="127.0.0.1").host == "127.0.0.1"  # a flag over the environment


def test_sections_merge_key_by_key_and_lists_replace(tmp_path: Path) -> None:
    root = project(tmp_path, {"edgeloop.yaml": "release:\n  canary: {min_frames: 7}\n"
                                               "labelling:\n  classes: [gear, cog]\n"})
    release = load_release_config(project=root)
    assert release.canary.min_frames == 7
    assert release.canary.min_devices == ReleaseConfig().canary.min_devices  # kept
    assert load_labelling_settings(None, {}, project=root).classes == ("gear", "cog")


def test_the_packaged_defaults_are_the_dataclass_defaults() -> None:
    """The shipped YAML files document the defaults; they must not disagree with the code."""
    assert load_settings({}) == HubSettings()
    assert load_gate_config() == GateConfig()
    assert load_release_config() == ReleaseConfig()
    assert load_labelling_settings(None, {}) == LabellingSettings()


@pytest.mark.parametrize(("files", "message"), [
    ({"edgeloop.yaml": "- hub\n"}, r"edgeloop\.yaml must hold a mapping of settings"),
    ({"edgeloop.yaml": "gates: {}\n"}, r"unknown sections gates"),
    ({"edgeloop.yaml": "gate: 3\n"}, r"gate must be a mapping"),
    ({"edgeloop.yaml": "gate: {max_golden_loss: 1}\n"},
     r"unknown settings max_golden_loss \(from .*edgeloop\.yaml \(gate:\)"),
    ({"configs/gate.yaml": "latency_budget_ms: fast\n"},
     r"latency_budget_ms='fast' \(from .*configs/gate\.yaml\)"),
    ({"configs/gate.yaml": "latency_budget_ms: [1\n"}, r"gate\.yaml is not valid YAML"),
    ({"configs/gate.yaml": "max_latency_ratio: true\n"}, r"max_latency_ratio"),
])
def test_bad_project_files_are_refused_with_the_key_and_its_file(
        tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(GateConfigError, match=message):
        load_gate_config(project=project(tmp_path, files))


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"workers='many' \(from EDGELOOP_HUB_WORKERS\)"):
        load_settings({"EDGELOOP_HUB_WORKERS": "many"})
    assert load_settings({"EDGELOOP_HUB_ACCESS_LOG": "on"}).access_log is True


def test_nested_sections_are_typed_and_checked(tmp_path: Path) -> None:
    root = project(tmp_path, {"configs/hub.yaml": "limits: {query_rows: 10}\n"})
    assert load_settings({}, project=root).limits.query_rows == 10
    (root / "configs/hub.yaml").write_text("limits: {query_rows: 0}\n")
    with pytest.raises(SettingsError, match="query_rows=0 must be positive"):
        load_settings({}, project=root)
    (root / "configs/hub.yaml").write_text("limits: {rows: 10}\n")
    with pytest.raises(SettingsError, match=r"unknown settings limits\.rows"):
        load_settings({}, project=root)


def test_drift_errors_name_the_file_the_bad_value_came_from(tmp_path: Path) -> None:
    root = project(tmp_path, {"edgeloop.yaml": "drift:\n  decision: {family_alpha: 2}\n"})
    with pytest.raises(DriftConfigError,
                       match=r"edgeloop\.yaml \(drift:\): decision\.family_alpha"):
        load_drift_config(project=root)
    assert load_drift_config(project=tmp_path / "nowhere").columns  # packaged columns


def test_a_missing_file_is_refused_and_layers_record_their_sources(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        read_document(tmp_path / "absent.yaml")
    merged = layered("gate", environ={"X": "5"}, env={"X": "latency_budget_ms"})
    assert merged.data["latency_budget_ms"] == "5"
    assert merged.source_of("latency_budget_ms") == "X"
    assert merged.source_of("max_score_diff") == "the packaged gate.yaml"
