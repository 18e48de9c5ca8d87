"""Every bench under bench/ runs as a user runs it (`python bench/<name>.py --json`), at tiny
sizes: it exits 0 and prints the JSON it documents, so a bench cannot rot unseen. The figures
are not checked: they are measurements, not behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import FIXTURES, ROOT

pytestmark = pytest.mark.slow

BENCH = ROOT / "bench"
TIMEOUT_S = 400  # tiny runs take seconds to a minute; a loaded 2-core machine takes longer
# Benches with their smoke test elsewhere, and bench modules that are not benches.
ELSEWHERE = {
    "fleet_soak": "tests/integration/test_fleet_soak_smoke.py",
    "hub_hostile_memory": "tests/reliability/test_hub_memory.py",
}
TESTED_HERE = {"bench_edge_install", "bench_edge_monitor", "bench_hub_ingest", "bench_sim_render",
               "drift_many_classes", "drift_power", "export", "label_efficiency",
               "many_class_model", "retrain_cycle", "retrain_recipe"}


def run_bench(name: str, *flags: str) -> list[dict[str, Any]]:
    """The JSON objects (one per stdout line) that `bench/<name>.py --json FLAGS` printed."""
    done = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--json", *flags],
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines, done.stderr[-3000:]
    return [json.loads(line) for line in lines]


def run_one(name: str, *flags: str) -> dict[str, Any]:
    """The one JSON object a bench prints."""
    (result,) = run_bench(name, *flags)
    assert isinstance(result, dict)
    return result


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_every_bench_has_a_smoke_test() -> None:
    benches = {p.stem for p in BENCH.glob("*.py") if p.stem != "__init__"}
    assert benches == TESTED_HERE | ELSEWHERE.keys()
    for test in ELSEWHERE.values():
        assert (ROOT / test).is_file(), test


def test_sim_render_reports_a_frame_time_per_width() -> None:
    result = run_one("bench_sim_render", "--frames", "3")
    assert result["bench"] == "sim_render" and result["frames"] == 3
    for width in (320, 640):
        assert result[f"ms_per_frame_{width}"] > 0 and result[f"fps_{width}"] > 0


def test_hub_ingest_stores_every_posted_record() -> None:
    result = run_one("bench_hub_ingest", "--batches", "4", "--devices", "2", "--batch-size",
                     "20", "--warmup", "1", "--seconds", "60")
    assert result["bench"] == "hub_ingest" and result["db"] == "sqlite"
    assert result["batches"] == 4 and result["records"] == 4 * 20
    assert result["records_per_s"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]


def test_edge_monitor_prints_a_steady_and_a_burst_line(seed_model: Path) -> None:
    lines = run_bench("bench_edge_monitor", "--model", str(seed_model), "--imgsz", "320",
                      "--frames", "10", "--runs", "1")
    assert [line["sampler"] for line in lines] == ["steady", "burst"]
    for line in lines:
        assert line["bench"] == "edge_monitor" and line["imgsz"] == 320
        assert line["frames"] == 10
        assert is_number(line["monitor_overhead_pct"]) and line["fps"] > 0


def test_edge_install_brings_no_cloud_package() -> None:
    result = run_one("bench_edge_install")
    assert result["bench"] == "edge_install"
    assert result["cloud_packages_installed"] == []
    assert result["install_mb"] > 0 and result["packages"] > 0


def test_export_reports_int8_against_fp32_and_torch() -> None:
    result = run_one("export", "--weights", str(FIXTURES / "seed_best.pt"), "--imgsz", "320",
                     "--frames", "2", "--eval-frames", "2", "--calib-frames", "1",
                     "--threads", "1")
    assert result["bench"] == "export" and result["imgsz"] == 320
    assert set(result["latency"]) == {"fp32", "int8", "torch"}
    assert set(result["map50_95"]) == {"fp32", "int8"}
    for name in ("int8_speedup", "int8_map50_95_drop", "ort_vs_torch_speedup"):
        assert is_number(result[name]) and result["targets"][name]["value"] == result[name]


# -- the drift benches share their models and replayed telemetry: each replays only once --------


@pytest.fixture(scope="module")
def drift_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("drift_benches")


@pytest.fixture(scope="module")
def many_class_models(drift_work: Path) -> dict[str, Any]:
    return run_one("many_class_model", "--weights", str(FIXTURES / "seed_best.pt"), "--models",
                   str(drift_work / "models"))


def test_many_class_model_builds_the_seed_and_its_80_class_widening(
        many_class_models: dict[str, Any], drift_work: Path) -> None:
    assert many_class_models["bench"] == "many_class_model"
    models = many_class_models["models"]
    assert set(models) == {"3", "80"}
    for model in models.values():
        path = Path(model["path"])
        assert path.is_file() and path.is_relative_to(drift_work)


def quick_drift_flags(drift_work: Path) -> list[str]:
    return ["--quick", "--workers", "1", "--fa-windows", "5", "--power-windows", "5",
            "--cache", str(drift_work / "telemetry")]


def test_drift_many_classes_scores_both_models(many_class_models: dict[str, Any],
                                               drift_work: Path) -> None:
    result = run_one("drift_many_classes", *quick_drift_flags(drift_work), "--models",
                     str(drift_work / "models"))
    assert result["bench"] == "drift_many_classes" and result["quick"] is True
    assert set(result["models"]) == {"3", "80"}
    for classes, model in result["models"].items():
        assert model["count_columns"]["columns"] == int(classes)
        assert set(model["false_alarm_rate"]) == set(model["detection_rate"]["dusk@0.5"])
        assert all(0 <= rate <= 1 for rate in model["false_alarm_rate"].values())
    assert isinstance(result["target_false_alarm_le_0.01"], bool)


def test_drift_power_calibrates_scores_and_times_the_check(many_class_models: dict[str, Any],
                                                           drift_work: Path) -> None:
    seed = many_class_models["models"]["3"]["path"]
    result = run_one("drift_power", *quick_drift_flags(drift_work), "--model", seed)
    assert result["bench"] == "drift_power" and result["quick"] is True
    assert is_number(result["family_alpha"])
    assert all(0 <= rate <= 1 for rate in result["false_alarm_rate"].values())
    assert set(result["detection_rate"]) == {"dusk", "elastic_transform"}
    assert set(result["detection_delay_frames"]) == {"dusk"}
    assert set(result["targets"]) == {"false_alarm_le_0.01", "power_ge_0.95", "below_target"}
    parity = result["cost"]["parity"]
    assert parity["windows"] > 0 and parity["identical_verdicts"] == parity["windows"]


# -- the training benches: one real epoch on a handful of frames --------------------------------


def test_label_efficiency_fine_tunes_on_selected_and_random_frames(
        seed_model: Path, tmp_path: Path) -> None:
    result = run_one("label_efficiency", "--sizes", "2", "--pool", "4", "--image-epochs", "1",
                     "--min-epochs", "1", "--max-epochs", "1", "--test-frames", "8",
                     "--weights", str(seed_model.parent / "best.pt"), "--onnx", str(seed_model),
                     "--work", str(tmp_path / "work"))
    assert result["bench"] == "label_efficiency" and result["pool"] == 4
    for method in ("selected", "random"):
        assert [point["n"] for point in result["curve"][method]] == [0, 2]
        assert all(0 <= point["map50"] <= 1 for point in result["curve"][method])
    assert set(result["labels_to_90pct"]) == {"selected", "random"}
    assert 0 < result["target_map50"] < result["baseline_map50"] <= 1


def test_retrain_cycle_times_every_stage_and_reads_the_gate(tmp_path: Path) -> None:
    project = tmp_path / "project"
    result = run_one("retrain_cycle", "--quick", "--labelled", "8", "--epochs", "1", "--keep",
                     str(project))
    assert result["quick"] is True and result["epochs"] == 1
    assert set(result["cycle_stages"]) <= set(result["stage_s"])
    assert is_number(result["cycle_s"]) and isinstance(result["met"], bool)
    assert isinstance(result["gate"]["ship"], bool)
    assert set(result["map50_95"]) >= {"champion", "fp32", "int8"}
    assert Path(result["project"]) == project and (project / "metrics" / "gate.json").is_file()


def test_retrain_recipe_scores_each_recipe_against_the_champion(tmp_path: Path) -> None:
    result = run_one("retrain_recipe", "--quick", "--work", str(tmp_path),
                     "--recipe", "{}", "--recipe", '{"lr0": 0.001, "freeze": 10}')
    assert [r["recipe"] for r in result["recipes"]] == [{}, {"lr0": 0.001, "freeze": 10}]
    for recipe in result["recipes"]:
        assert {"new_variant", "baseline", "golden"} == set(recipe["map50"])
        assert is_number(recipe["train_s"]) and is_number(recipe["golden_loss_points"])
