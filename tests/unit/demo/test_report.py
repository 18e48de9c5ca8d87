"""The demo's outputs: timeline JSON, headline checks against their targets, the timeline PNG
and the markdown report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from demo.report import (
    MARKER_KINDS,
    AccuracySample,
    DriftPoint,
    Marker,
    Summary,
    Timeline,
    TimelineFormatError,
    plot_timeline,
    report_markdown,
    rich_summary_table,
    summary_rows,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEVICES = ("cam-a", "cam-b", "cam-c")

SUMMARY = Summary(frames_to_alarm=240, labels_used=180, map50_before_drift=0.8,
                  map50_after_drift=0.41234, map50_after_release=0.78,
                  minutes_drift_to_fleet_updated=11.256, monitor_overhead_pct=1.234,
                  device_fault_isolated=True, fleet_drift="new_variant", fault="camera_bump")


def three_device_timeline() -> Timeline:
    samples, drift = [], []
    for i, device in enumerate(DEVICES):
        for frame in range(0, 1200, 100):
            t = frame / 10 + i
            fogged = frame >= 400 and device != "cam-c"
            model = "v2" if frame >= 900 else "v1"
            map50 = 0.8 if not fogged else (0.78 if model == "v2" else 0.4)
            if device == "cam-c" and frame >= 600:
                map50 = 0.3
            samples.append(AccuracySample(t, device, frame, model,
                                          "fog" if fogged else "clear", map50))
            drift.append(DriftPoint(t, device, frame, 0.6 if map50 < 0.5 else 0.05,
                                    map50 < 0.5))
    markers = [Marker(t_s=40.0 + 10 * k, frame=400 + 100 * k, kind=kind, label=f"{kind} here")
               for k, kind in enumerate(MARKER_KINDS)]
    return Timeline(devices=DEVICES, samples=tuple(samples), drift=tuple(drift),
                    markers=tuple(reversed(markers)), fault_device="cam-c")


def minimal_timeline() -> Timeline:
    return Timeline(devices=("solo",),
                    samples=(AccuracySample(0.0, "solo", 0, "v1", "clear", 0.7),),
                    drift=(), markers=(), fault_device=None)


def test_timeline_survives_a_json_round_trip():
    timeline = three_device_timeline()
    back = Timeline.from_dict(json.loads(json.dumps(timeline.to_dict())))
    assert back == timeline
    assert isinstance(back.samples[0], AccuracySample) and isinstance(back.markers, tuple)


def test_a_timeline_with_an_unknown_marker_kind_is_refused():
    with pytest.raises(TimelineFormatError, match="marker kind"):
        Timeline(devices=("a",), samples=(), drift=(),
                 markers=(Marker(1.0, 10, "coffee_break", "x"),), fault_device=None)


def test_a_timeline_whose_fault_device_is_not_in_the_fleet_is_refused():
    with pytest.raises(TimelineFormatError, match="ghost"):
        Timeline(devices=("a",), samples=(), drift=(), markers=(), fault_device="ghost")


def test_a_dict_missing_a_key_is_not_a_timeline():
    data = minimal_timeline().to_dict()
    del data["markers"]
    with pytest.raises(TimelineFormatError):
        Timeline.from_dict(data)


def test_summary_json_has_the_eight_headline_figures_rounded_and_what_explains_them():
    assert SUMMARY.to_json_dict() == {
        "fleet_drift": "new_variant",
        "fault": "camera_bump",
        "frames_to_alarm": 240,
        "labels_used": 180,
        "map50_before_drift": 0.8,
        "map50_after_drift": 0.4123,
        "map50_after_release": 0.78,
        "minutes_drift_to_fleet_updated": 11.26,
        "monitor_overhead_pct": 1.23,
        "device_fault_isolated": True,
        "labels_per_recovered_map50_point": 4.9,  # 180 labels for 36.8 points
        "retrain_stages_s": {},
        "gate_checks": [],
        "canary_checks": [],
    }
    assert json.loads(json.dumps(SUMMARY.to_json_dict())) == SUMMARY.to_json_dict()


def test_recovered_share_is_after_release_over_before_drift():
    assert SUMMARY.recovered_share == pytest.approx(0.975)
    assert replace(SUMMARY, map50_after_release=None).recovered_share is None


def met(summary: Summary, name: str) -> bool | None:
    return {c.name: c.met for c in summary.checks()}[name]


@pytest.mark.parametrize(("after_release", "expected"), [(0.76, True), (0.7592, False)])
def test_recovery_target_is_met_at_exactly_95_percent_and_missed_just_below(after_release,
                                                                           expected):
    summary = replace(SUMMARY, map50_after_release=after_release)
    assert met(summary, "mAP50 after release") is expected


def test_recovery_of_exactly_95_percent_is_met_despite_float_division():
    summary = replace(SUMMARY, map50_before_drift=0.554, map50_after_release=0.5263)
    assert summary.recovered_share is not None and summary.recovered_share < 0.95  # in floats
    assert met(summary, "mAP50 after release") is True


@pytest.mark.parametrize(("labels", "expected"), [(200, True), (201, False)])
def test_labels_target_is_met_at_200_and_missed_at_201(labels, expected):
    assert met(replace(SUMMARY, labels_used=labels), "labels used") is expected


@pytest.mark.parametrize(("minutes", "expected"), [(15.0, True), (15.01, False), (None, False)])
def test_minutes_to_fleet_updated_target_is_at_most_15(minutes, expected):
    summary = replace(SUMMARY, minutes_drift_to_fleet_updated=minutes)
    assert met(summary, "minutes drift → fleet updated") is expected


def test_no_release_shows_not_reached_and_misses_the_recovery_target():
    summary = replace(SUMMARY, map50_after_release=None, minutes_drift_to_fleet_updated=None,
                      frames_to_alarm=None)
    checks = {c.name: c for c in summary.checks()}
    assert checks["mAP50 after release"].value == "not reached"
    assert checks["mAP50 after release"].met is False
    assert checks["minutes drift → fleet updated"].value == "not reached"
    assert checks["frames to alarm"].value == "not reached"
    assert checks["frames to alarm"].met is None


def test_an_unisolated_device_fault_misses_its_target():
    assert met(SUMMARY, "device fault isolated") is True
    assert met(replace(SUMMARY, device_fault_isolated=False), "device fault isolated") is False


def test_a_run_without_a_fault_has_no_isolation_figure_to_meet() -> None:
    summary = replace(SUMMARY, device_fault_isolated=None, fault="none")
    assert summary.to_json_dict()["device_fault_isolated"] is None
    assert summary.to_json_dict()["fault"] == "none"
    assert met(summary, "device fault isolated") is None
    assert rich_summary_table(summary).row_count == len(SUMMARY.checks())
    text = report_markdown(summary, minimal_timeline(), urls={}, timings={})
    assert "| device fault isolated | no fault in this run | – | – |" in text
    assert "Fleet drift `new_variant` on every device; fault `none`." in text


def test_checks_have_one_row_per_headline_figure_and_untargeted_ones_are_unmarked():
    rows = summary_rows(SUMMARY)
    assert [r[0] for r in rows] == [
        "frames to alarm", "labels used", "mAP50 before drift", "mAP50 after drift",
        "mAP50 after release", "minutes drift → fleet updated", "monitoring overhead",
        "device fault isolated",
    ]
    assert {r[0]: r[3] for r in rows} == {
        "frames to alarm": "–", "labels used": "✓", "mAP50 before drift": "–",
        "mAP50 after drift": "–", "mAP50 after release": "✓",
        "minutes drift → fleet updated": "✓", "monitoring overhead": "–",
        "device fault isolated": "✓",
    }
    assert "97.5%" in dict((r[0], r[1]) for r in rows)["mAP50 after release"]


def test_rich_table_has_a_row_per_check():
    table = rich_summary_table(replace(SUMMARY, labels_used=500))
    assert table.row_count == len(SUMMARY.checks())
    assert len(table.columns) == 4


def png_width_height(path: Path) -> tuple[int, int]:
    import matplotlib.image as mpimg

    height, width = mpimg.imread(path).shape[:2]
    return width, height


@pytest.mark.parametrize("timeline", [three_device_timeline(), minimal_timeline()],
                         ids=["three-devices-all-markers", "minimal"])
def test_plot_timeline_writes_a_wide_png(tmp_path: Path, timeline: Timeline):
    path = plot_timeline(timeline, tmp_path / "out" / "timeline.png")
    assert path == tmp_path / "out" / "timeline.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    width, height = png_width_height(path)
    assert width > 600 and height > 300
    assert [p.name for p in path.parent.iterdir()] == ["timeline.png"]  # no temp file left


def test_report_markdown_has_the_headline_rows_and_the_markers_in_time_order():
    timeline = three_device_timeline()
    text = report_markdown(SUMMARY, timeline,
                           urls={"hub": "http://localhost:8000", "prefect": "http://x:4200"},
                           timings={"retrain": 61.2, "release": 3.0}, plot_name="t.png")
    assert "| labels used | 180 | ≤ 200 | ✓ |" in text
    assert "| frames to alarm | 240 | – | – |" in text
    assert "| device fault isolated | yes | yes | ✓ |" in text
    positions = [text.index(f"{kind} here") for kind in MARKER_KINDS]
    assert positions == sorted(positions)  # given reversed, reported in time order
    assert "`00:40` frame 400: drift_onset here" in text
    assert "`01:40` frame 1000: fleet_updated here" in text
    assert "| cam-c (device fault) | v2 | 1100 | 0.300 | clear |" in text
    assert "Fleet drift `new_variant` on every device; fault `camera_bump`." in text
    assert "| cam-a | v2 | 1100 | 0.780 | clear → fog |" in text
    assert "| retrain | 61.2 |" in text
    assert "<http://localhost:8000>" in text
    assert "![timeline](t.png)" in text


def test_report_markdown_marks_unmet_targets():
    summary = replace(SUMMARY, labels_used=201, map50_after_release=None)
    text = report_markdown(summary, minimal_timeline(), urls={}, timings={})
    assert "| labels used | 201 | ≤ 200 | ✗ |" in text
    assert "| mAP50 after release | not reached | ≥ 95% of before drift | ✗ |" in text
    assert "nothing was marked" in text


def test_the_summary_records_labels_per_point_retrain_stages_and_the_canary_checks() -> None:
    from dataclasses import replace

    from flows.checks import Check as CanaryCheck

    summary = replace(SUMMARY, retrain_stages_s={"prepare": 4.0, "train": 300.5},
                      canary_checks=(CanaryCheck("error_devices", True, 0.0, 0.0, "none"),),
                      gate_checks=(CanaryCheck("golden_loss", True, 0.4, 1.0, "-0.40"),))
    data = summary.to_json_dict()
    # 180 labels won back 0.78 - 0.41234 = 36.8 mAP50 points
    assert data["labels_per_recovered_map50_point"] == pytest.approx(180 / 36.766, abs=0.05)
    assert data["retrain_stages_s"] == {"prepare": 4.0, "train": 300.5}
    assert data["canary_checks"] == [
        {"name": "error_devices", "passed": True, "value": 0.0, "limit": 0.0, "detail": "none"}]
    assert data["gate_checks"][0]["name"] == "golden_loss"
    report = report_markdown(summary, minimal_timeline(), urls={}, timings={"retrain": 310.0})
    assert "| train | 300.5 |" in report and "| error_devices | 0 | 0 | yes |" in report
    assert "## Release gate" in report and "| golden_loss | 0.4 | 1 | yes |" in report
    lost = replace(SUMMARY, map50_after_release=0.40)
    assert lost.to_json_dict()["labels_per_recovered_map50_point"] is None


def test_stage_durations_run_from_each_stage_start_to_the_next() -> None:
    from demo.loop import stage_durations

    assert stage_durations([("prepare", 10.0), ("train", 14.0), ("gate", 300.0)], 301.5) == {
        "prepare": 4.0, "train": 286.0, "gate": 1.5}
    assert stage_durations([], 5.0) == {}
