"""The device's settings: read once through the layers, refused when half-built, naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.contract import SamplePolicy
from edge_runtime.device import DeviceSettings, DeviceSettingsError, load_device_settings
from edge_runtime.sampling.config import SamplingConfigError, load_sampling_config
from edge_runtime.update.policy import HealthBudget, SmokeBudget

MODEL = Path("model.onnx")


def test_the_packaged_defaults_are_the_dataclass_defaults() -> None:
    assert load_device_settings({}, model=MODEL) == DeviceSettings(
        sampling=load_sampling_config(), model=MODEL)


def test_project_files_the_environment_and_flags_each_win_over_the_layer_below(
        tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "edge.yaml").write_text("device_id: cam-7\nspool_mb: 64\nfps: 5\n")
    (tmp_path / "edgeloop.yaml").write_text(
        "edge:\n  spool_mb: 32\n  source: sim:dusk\nsampling:\n  policies:\n    random: false\n"
        "    empty: {per_hour: 3}\n")
    settings = load_device_settings({"EDGELOOP_DEVICE_ID": "cam-8"}, project=tmp_path,
                                    model=MODEL, fps=2.0, threads=None)
    assert settings.device_id == "cam-8"  # the environment over the project's files
    assert settings.spool_mb == 32  # edgeloop.yaml over configs/edge.yaml
    assert settings.source == "sim:dusk" and settings.fps == 2.0  # a flag over the files
    assert settings.threads == 0  # a flag not given leaves the default
    assert SamplePolicy.RANDOM not in settings.sampling.policies()  # turned off by the project
    assert settings.sampling.empty is not None and settings.sampling.empty.per_hour == 3
    assert settings.sampling.uncertain is not None  # the packaged policy, kept


@pytest.mark.parametrize(("flags", "message"), [
    ({}, "give --model, or --state"),
    ({"model": MODEL, "hub_url": "http://127.0.0.1:1"}, "--hub needs --token"),
    ({"state_dir": Path("s"), "hub_url": "http://h", "token": "t", "imgsz": 320},
     "cannot go with --model or --imgsz"),
    ({"state_dir": Path("s")}, "--state needs --hub and --token"),
    ({"model": MODEL, "spool_mb": 0}, "spool_mb=0 must be >= 1"),
    ({"model": MODEL, "colour": "red"}, "unknown settings colour"),
    ({"model": MODEL, "conf": 0.0}, r"conf=0.0 must be in \(0, 1\)"),
    ({"model": MODEL, "conf": 1.5}, r"conf=1.5 must be in \(0, 1\)"),
    ({"model": MODEL, "iou": 0}, r"iou=0.0 in \(0, 1\]"),
])
def test_half_built_settings_are_refused_naming_the_flag(flags: dict, message: str) -> None:
    with pytest.raises(DeviceSettingsError, match=message):
        load_device_settings({}, **flags)


def test_a_bad_value_names_its_key_and_where_it_came_from(tmp_path: Path) -> None:
    config = tmp_path / "device.yaml"
    config.write_text("spool_mb: lots\n")
    with pytest.raises(DeviceSettingsError, match=r"spool_mb='lots' \(from .*device\.yaml\)"):
        load_device_settings({}, config=config, model=MODEL)
    (tmp_path / "edgeloop.yaml").write_text("edge:\n  sampling: {enabled: false}\n")
    with pytest.raises(DeviceSettingsError, match="has its own file"):
        load_device_settings({}, project=tmp_path, model=MODEL)
    (tmp_path / "edgeloop.yaml").write_text("sampling:\n  policies: {random: {share: 2}}\n")
    with pytest.raises(SamplingConfigError, match=r"policies\.random\.share.*edgeloop\.yaml"):
        load_device_settings({}, project=tmp_path, model=MODEL)


def test_thresholds_and_update_check_limits_come_through_the_layers(tmp_path: Path) -> None:
    (tmp_path / "edgeloop.yaml").write_text(
        "edge:\n  conf: 0.4\n  iou: 0.5\n  smoke: {frames: 5}\n"
        "  health: {frames: 20, min_detection_ratio: 0.8, max_latency_ms: 150}\n")
    settings = load_device_settings({}, project=tmp_path, model=MODEL, conf=0.3)
    assert (settings.conf, settings.iou) == (0.3, 0.5)  # --conf over the project's file
    assert settings.smoke == SmokeBudget(frames=5)  # a key left out keeps its default
    assert settings.health == HealthBudget(frames=20, min_detection_ratio=0.8,
                                           max_latency_ms=150.0)


@pytest.mark.parametrize(("yaml", "message"), [
    ("health: {frames: 0}", "health: frames=0 must be at least 1"),
    ("health: {min_detection_ratio: 1.5}", "health: min_detection_ratio=1.5 must be in"),
    ("smoke: {max_latency_ms: -1}", "smoke: .*max_latency_ms=-1.0 positive"),
    ("health: {frames: many}", r"health.frames='many' \(from .*device\.yaml\)"),
    ("health: {patience: 3}", "unknown settings health.patience"),
    ("health: 8", "health must be a mapping"),
    ("conf: high", r"conf='high' \(from .*device\.yaml\)"),
])
def test_bad_thresholds_and_limits_are_refused_naming_the_key(tmp_path: Path, yaml: str,
                                                              message: str) -> None:
    config = tmp_path / "device.yaml"
    config.write_text(yaml + "\n")
    with pytest.raises(DeviceSettingsError, match=message):
        load_device_settings({}, config=config, model=MODEL)
