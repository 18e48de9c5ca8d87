"""The demo conductor's plain parts: device streams, configs at the demo's sizes, the desk's
frame-id mapping, the summary from what was seen."""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from demo.loop import (
    DemoConfig,
    DemoState,
    DeviceView,
    Outcome,
    StreamDesk,
    device_sources,
    enter_in_background,
    mark_arrivals,
    monitor_overhead_pct,
    scenario_of,
    summarise,
    timeline_of,
    tiny,
    write_demo_configs,
)
from edge_runtime.sampling.config import load_sampling_config
from flows.checks import Check
from flows.drift.settings import load_drift_config
from flows.release.settings import load_release_config
from flows.retrain.gate import GateConfig, load_gate_config
from sim.annotate import DeskTask
from sim.scenarios import get_scenario
from sim.stream import active_scenario, parse_layers


def test_every_device_gets_the_fleet_drift_and_only_the_last_one_the_camera_bump() -> None:
    config = DemoConfig(devices=4, fault_at=100, drift_at=300)
    sources = device_sources(config)
    assert list(sources) == ["cam-1", "cam-2", "cam-3", "cam-4"]
    for device, spec in sources.items():
        layers = parse_layers(spec.removeprefix("sim:"))
        assert active_scenario(layers, 299).startswith("baseline") or device == "cam-4"
        assert "new_variant" in active_scenario(layers, 300)
        assert ("camera_bump" in active_scenario(layers, 100)) == (device == "cam-4")


def test_the_config_refuses_too_few_devices_and_a_fault_after_the_drift() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        DemoConfig(devices=2)
    with pytest.raises(ValueError, match="before the fleet drift"):
        DemoConfig(fault_at=500, drift_at=400)
    assert tiny(DemoConfig()).drift_at < DemoConfig().drift_at


def test_the_default_scenario_is_the_new_variant_after_a_camera_bump() -> None:
    scenario = scenario_of(DemoConfig())
    assert scenario.sources()["cam-3"] == "sim:camera_bump@150,new_variant@450"
    assert scenario.conditions() == ["baseline", "new_variant", "camera_bump",
                                     "camera_bump+new_variant"]
    assert scenario.drifted == "new_variant" and scenario.faulted_device == "cam-3"


def test_a_layered_fleet_drift_reaches_every_device_layer_by_layer() -> None:
    config = DemoConfig(fleet_drift="new_variant,dusk@600", fault="dirty_lens", fault_at=100)
    assert device_sources(config) == {
        "cam-1": "sim:new_variant@450,dusk@600", "cam-2": "sim:new_variant@450,dusk@600",
        "cam-3": "sim:dirty_lens@100,new_variant@450,dusk@600"}  # no @: at drift_at, fault_at
    scenario = scenario_of(config)
    assert scenario.conditions() == [
        "baseline", "new_variant", "new_variant+dusk",
        "dirty_lens", "dirty_lens+new_variant", "dirty_lens+new_variant+dusk"]
    assert scenario.drifted == "new_variant+dusk"  # every fleet layer, no fault
    assert (scenario.drift_onset, scenario.last_onset) == (450, 600)
    assert [(a.frame, a.kind, a.label) for a in scenario.arrivals()] == [
        (100, "device_fault", "cam-3: dirty_lens (frame 100)"),
        (450, "drift_onset", "new_variant on every device (frame 450)"),
        (600, "drift_onset", "dusk on every device (frame 600)")]


def test_a_composite_fleet_drift_arrives_all_at_once() -> None:
    scenario = scenario_of(DemoConfig(fleet_drift="dusk+line_speedup"))
    assert scenario.sources()["cam-1"] == "sim:dusk+line_speedup@450"
    assert scenario.drifted == "dusk+line_speedup"
    assert "camera_bump+dusk+line_speedup" in scenario.conditions()
    both = get_scenario(scenario.drifted).conditions
    assert both.light == 0.35 and both.motion_blur == 9.0


def test_without_a_fault_no_device_is_faulted_and_isolation_is_not_measured() -> None:
    config = DemoConfig(fault="none")
    scenario = scenario_of(config)
    assert set(device_sources(config).values()) == {"sim:new_variant@450"}
    assert scenario.faulted_device is None
    assert scenario.conditions() == ["baseline", "new_variant"]
    assert [a.kind for a in scenario.arrivals()] == ["drift_onset"]
    state = DemoState()
    state.accuracy = {("seed", "baseline"): 0.92, ("seed", "new_variant"): 0.63}
    summary = summarise(state, Outcome(fault_isolated=False), config, "seed", [])
    assert summary.device_fault_isolated is None and summary.fault == "none"
    assert timeline_of(state, config).fault_device is None


@pytest.mark.parametrize(("spec", "refused"), [
    ({"fleet_drift": "camera_bump"}, "fleet drift 'camera_bump': camera_bump is device-only"),
    ({"fleet_drift": "new_variant+dirty_lens"}, "dirty_lens is device-only"),
    ({"fault": "dusk"}, "fault 'dusk': dusk is line-wide"),
    ({"fleet_drift": "new_variant,fog@600"}, "unknown scenario 'fog'; known: baseline"),
    ({"fault": "camera_bump@500"}, "camera_bump@500 must arrive .* before the fleet drift"),
    ({"fault": "camera_bump", "fleet_drift": "new_variant@100"}, "before the fleet drift"),
    ({"fleet_drift": ""}, "at least one scenario"),
    ({"fleet_drift": "baseline"}, "changes nothing"),
    ({"fleet_drift": "new_variant@0", "fault": "none"}, "after frame 0"),
])
def test_a_scenario_the_demo_cannot_run_is_refused(spec: dict[str, str], refused: str) -> None:
    with pytest.raises(ValueError, match=refused):
        DemoConfig(**spec)


def test_arrivals_are_marked_once_the_fleet_reaches_them() -> None:
    state, outcome = DemoState(), Outcome()
    arrivals = scenario_of(DemoConfig()).arrivals()
    state.devices = {d: DeviceView(frame=200) for d in ("cam-1", "cam-2", "cam-3")}
    mark_arrivals(state, arrivals, outcome)
    assert [m.kind for m in state.markers] == ["device_fault"] and outcome.onset_t is None
    state.devices = {d: DeviceView(frame=460) for d in ("cam-1", "cam-2", "cam-3")}
    mark_arrivals(state, arrivals, outcome)
    mark_arrivals(state, arrivals, outcome)
    assert [(m.kind, m.frame) for m in state.markers] == [("device_fault", 150),
                                                          ("drift_onset", 450)]
    assert outcome.onset_t is not None and arrivals == []


@pytest.mark.parametrize(("args", "refused"), [
    (["--fleet-drift", "camera_bump"], "Invalid value for '--fleet-drift'"),
    (["--fault", "line_speedup"], "Invalid value for '--fault'"),
    (["--fleet-drift", "fog"], "unknown scenario 'fog'"),
    (["--fault", "camera_bump@500"], "Invalid value for '--fleet-drift' / '--fault'"),
    (["--size", "tiny", "--fault", "camera_bump@200"], "before the fleet drift (frame 130)"),
])
def test_the_cli_refuses_a_bad_scenario_in_one_line_before_anything_starts(
        monkeypatch: pytest.MonkeyPatch, args: list[str], refused: str) -> None:
    import signal

    from demo.cli import demo

    def started(*_: object, **__: object) -> None:
        raise AssertionError("the loop started")

    monkeypatch.setattr("demo.loop.run_demo", started)
    monkeypatch.setenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    sigterm = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(demo, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and refused in errors[0], result.output
    assert "Traceback" not in result.output
    assert signal.getsignal(signal.SIGTERM) == sigterm  # refused before the handler went in


def test_demo_configs_are_the_packaged_defaults_at_the_demos_sizes(tmp_path: Path) -> None:
    config = DemoConfig(drift_window=120, canary_min_frames=90)
    paths = write_demo_configs(config, tmp_path)
    drift = load_drift_config(paths["drift"])
    assert drift.window.frames == 120 and drift.columns == load_drift_config().columns
    release = load_release_config(paths["release"])
    assert release.canary.min_frames == 90
    assert release.tuf_expiry == load_release_config().tuf_expiry
    sampling = load_sampling_config(paths["sampling"])
    assert sampling.uncertain is not None and sampling.uncertain.per_hour == 1800
    assert sampling.random == load_sampling_config().random
    gate = load_gate_config(paths["gate"])
    assert gate.min_drift_gain_points == GateConfig().min_drift_gain_points
    assert gate.max_golden_loss_points == GateConfig().max_golden_loss_points


@pytest.mark.parametrize("size", ["demo", "tiny"])
def test_the_loop_runs_the_shipped_canary_and_gate(tmp_path: Path, size: str) -> None:
    config = DemoConfig() if size == "demo" else tiny(DemoConfig())
    paths = write_demo_configs(config, tmp_path)
    release = load_release_config(paths["release"])
    shipped = load_release_config()
    sizes = {"min_frames": config.canary_min_frames,
             "min_baseline_frames": config.canary_min_baseline_frames
             or shipped.canary.min_baseline_frames,
             "max_confidence_ks_vs_reference": config.canary_max_confidence_ks
             or shipped.canary.max_confidence_ks_vs_reference,
             "max_detection_ratio_change_vs_previous": config.canary_max_detection_ratio_change
             or shipped.canary.max_detection_ratio_change_vs_previous}
    assert release.canary == replace(shipped.canary, **sizes)
    assert config.canary_max_confidence_ks is None
    assert config.canary_max_detection_ratio_change is None
    assert load_gate_config(paths["gate"]) == load_gate_config()


class _Desk:
    def __init__(self) -> None:
        self.submitted: list[int] = []

    def open_tasks(self) -> list[DeskTask]:
        return [DeskTask(1, "cam-1", 1_000_042), DeskTask(2, "cam-9", 7), DeskTask(3, "cam-1",
                                                                                 None)]

    def image(self, task: DeskTask) -> bytes:
        return b"jpeg"

    def submit(self, task: DeskTask, boxes: object, width: int, height: int) -> None:
        self.submitted.append(task.id)


def test_the_desk_turns_frame_ids_into_stream_indices() -> None:
    inner = _Desk()
    desk = StreamDesk(inner, {"cam-1": 1_000_000})
    tasks = desk.open_tasks()
    assert [t.frame_id for t in tasks] == [42, 7, None]  # an unknown device keeps its id
    desk.submit(tasks[0], [], 320, 240)
    assert inner.submitted == [1]


def test_the_summary_is_what_was_seen(tmp_path: Path) -> None:
    state = DemoState()
    state.accuracy = {("seed", "baseline"): 0.92, ("seed", "new_variant"): 0.63,
                      ("new", "new_variant"): 0.88}
    outcome = Outcome(alarm_frame=575, fault_isolated=True, labels_used=64,
                      release_model="new", onset_t=100.0, updated_t=580.0,
                      retrain_stages_s={"train": 250.0},
                      canary_checks=[Check("error_devices", True, 0.0, 0.0, "none")])
    status = tmp_path / "cam-1.json"
    status.write_text(json.dumps({"infer_ms_p50": 25.0, "monitor_ms_p50": 0.5}))
    summary = summarise(state, outcome, DemoConfig(drift_at=450), "seed", [status])
    assert summary.to_json_dict() == {
        "fleet_drift": "new_variant", "fault": "camera_bump",
        "frames_to_alarm": 125, "labels_used": 64, "map50_before_drift": 0.92,
        "map50_after_drift": 0.63, "map50_after_release": 0.88,
        "minutes_drift_to_fleet_updated": 8.0, "monitor_overhead_pct": 2.0,
        "device_fault_isolated": True,
        "labels_per_recovered_map50_point": 2.6,  # 64 labels won back 25 points
        "retrain_stages_s": {"train": 250.0},
        "gate_checks": [],
        "canary_checks": [{"name": "error_devices", "passed": True, "value": 0.0,
                           "limit": 0.0, "detail": "none"}]}
    stopped = summarise(state, Outcome(), DemoConfig(), "seed", [])
    assert stopped.map50_after_release is None and stopped.frames_to_alarm is None
    assert math.isnan(monitor_overhead_pct([tmp_path / "missing.json"]))


def test_the_headline_figures_are_measured_in_the_fleet_drift_with_every_layer() -> None:
    state = DemoState()
    state.accuracy = {("seed", "baseline"): 0.92, ("seed", "new_variant"): 0.63,
                      ("seed", "new_variant+dusk"): 0.41, ("new", "new_variant+dusk"): 0.85}
    config = DemoConfig(fleet_drift="new_variant@450,dusk@600", fault="camera_bump@100")
    summary = summarise(state, Outcome(alarm_frame=500, release_model="new"), config, "seed", [])
    assert (summary.map50_after_drift, summary.map50_after_release) == (0.41, 0.85)
    assert summary.frames_to_alarm == 50  # from the first fleet layer
    assert (summary.fleet_drift, summary.fault) == ("new_variant@450,dusk@600",
                                                    "camera_bump@100")


def test_a_server_started_in_the_background_is_stopped_when_the_demo_unwinds() -> None:
    events: list[str] = []

    @contextlib.contextmanager
    def server() -> Iterator[str]:
        events.append(f"start on {threading.current_thread().name}")
        yield "url"
        events.append("stop")

    with contextlib.ExitStack() as stack:
        started = enter_in_background(stack, server())
        assert started.result(5) == "url"
        assert events == [events[0]] and "demo-start" in events[0]
    assert events[-1] == "stop"


def test_a_server_that_failed_to_start_is_reported_and_not_stopped() -> None:
    @contextlib.contextmanager
    def broken() -> Iterator[str]:
        raise RuntimeError("port taken")
        yield "never"

    with contextlib.ExitStack() as stack:
        started = enter_in_background(stack, broken())
        with pytest.raises(RuntimeError, match="port taken"):
            started.result(5)


def test_the_project_params_validate_every_epoch_unless_the_sizes_say_the_last_only() -> None:
    from demo.project import ProjectSizes, demo_params
    from flows.project import ModelFacts, project_files
    from flows.retrain.stages.train import KEYS
    from flows.retrain.ultralytics_yolo import TrainSettings

    def written() -> dict:  # the params.yaml `edgeloop init` writes for the seed model
        return yaml.safe_load(project_files(ModelFacts(("nut", "washer", "bolt"), 320), "0",
                                            "line-1")["params.yaml"])

    assert demo_params(ProjectSizes(), written())["finetune"]["val"] is True
    tiny_finetune = demo_params(tiny(DemoConfig()).project, written())["finetune"]
    assert tiny_finetune["val"] is False and tiny_finetune["epochs"] == 10
    settings = TrainSettings(**{k: v for k, v in tiny_finetune.items() if k in KEYS})
    assert settings.val is False
