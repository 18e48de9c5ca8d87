"""`edgeloop edge` end to end with the seed model: run, replay, bench, and its errors."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pandas as pd
import pytest

from edge_runtime.outbox.spool import Spool
from sim.dataset import render_dataset
from sim.stream import stream

pytestmark = pytest.mark.slow
EDGELOOP = str(Path(sys.executable).parent / "edgeloop")


def edge(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EDGELOOP, "edge", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_run_spools_one_record_per_frame_with_ids_continuing_across_restarts(
        seed_model: Path, tmp_path: Path):
    for _ in range(2):
        result = edge("run", "--model", str(seed_model), "--source", "sim:dusk",
                      "--max-frames", "25", "--spool", str(tmp_path), "--device-id", "cam-7")
        assert result.returncode == 0, result.stderr
        assert "frames 25" in result.stderr
    with Spool(tmp_path / "cam-7.sqlite") as spool:
        records = [stats for _, stats in spool.pending_telemetry(1000)]
        kept = spool.pending_samples(1000)
    ids = [r.frame_id for r in records]  # in commit order
    assert len(set(ids)) == 50 and ids == sorted(ids)  # monotonic, also across the restart
    assert {r.device_id for r in records} == {"cam-7"}
    assert kept, "dusk frames with uncertain or missing detections are kept for labelling"
    _, meta, jpeg = kept[0]
    assert jpeg[:2] == b"\xff\xd8" and meta.device_id == "cam-7"


def test_replay_writes_one_row_per_image(seed_model: Path, tmp_path: Path):
    render_dataset(tmp_path / "frames", "baseline", 6, seed=2)
    out = tmp_path / "stats.parquet"
    result = edge("replay", "--model", str(seed_model), "--source",
                  str(tmp_path / "frames/images"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    assert len(table) == 6
    assert {"brightness", "sharpness", "count_nut", "count_bolt", "conf_mean"} <= set(table)
    assert table["detections"].sum() > 0


def test_bench_prints_the_figures_the_targets_need(seed_model: Path):
    result = edge("bench", "--model", str(seed_model), "--imgsz", "320", "--frames", "20",
                  "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for key in ("infer_ms_p50", "monitor_ms_p50", "monitor_overhead_pct", "fps",
                "fps_vs_inference_pct", "inference_alone_pct"):
        assert figures[key] > 0
    runs = (figures["fps_vs_inference_pct_runs"], figures["inference_alone_pct_runs"])
    assert [len(r) for r in runs] == [5, 5]
    # Timed in the steady state: frames ran until the sampler had spent an hourly budget.
    assert figures["sampler"] == "steady" and figures["warmup_frames"] > 20
    # 40 frames: the timed ones are not the warm-up's images again (near-duplicates: not kept)
    burst = edge("bench", "--model", str(seed_model), "--imgsz", "320", "--frames", "40",
                 "--json", "--burst")
    assert burst.returncode == 0, burst.stderr
    opened = json.loads(burst.stdout)
    assert (opened["sampler"], opened["warmup_frames"]) == ("burst", 20)
    assert opened["kept_frames"] > figures["kept_frames"]  # every budget open: frames are kept


def test_bench_times_the_frames_of_a_given_source(seed_model: Path, tmp_path: Path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for frame in stream("camera_bump", seed=3, width=480, frames=4, name="team"):
        cv2.imwrite(str(folder / f"{frame.index}.png"), frame.image)
    result = edge("bench", "--model", str(seed_model), "--imgsz", "320", "--frames", "10",
                  "--runs", "1", "--source", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["source"] == str(folder) and figures["infer_ms_p50"] > 0
    assert figures["frame_size"] == "480x360"  # its frames, not the simulator's at --imgsz


def test_a_higher_conf_finds_fewer_parts(seed_model: Path, tmp_path: Path):
    found = {}
    for conf in ("0.25", "0.9"):
        spool = tmp_path / conf
        result = edge("run", "--model", str(seed_model), "--source", "sim:baseline",
                      "--max-frames", "10", "--spool", str(spool), "--conf", conf)
        assert result.returncode == 0, result.stderr
        with Spool(spool / "edge-1.sqlite") as opened:
            found[conf] = sum(s.detections for _, s in opened.pending_telemetry(100))
    assert found["0.25"] > found["0.9"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "missing.onnx", "--source", "sim:baseline"], "does not exist"),
        (["--source", "sim:fog"], "unknown scenario"),
        (["--source", "/no/such/place"], "frame source"),
        (["--source", "sim:baseline", "--imgsz", "100"], "stride"),
        (["--source", "sim:baseline", "--hub", "http://127.0.0.1:9"], "--token"),
        (["--source", "sim:baseline", "--conf", "1.5"], "--conf"),
    ],
)
def test_bad_input_gives_one_line_and_a_non_zero_exit(seed_model, tmp_path, args, message):
    if "--model" not in args:
        args = ["--model", str(seed_model), *args]
    result = edge("run", *args, "--max-frames", "1", "--spool", str(tmp_path))
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
