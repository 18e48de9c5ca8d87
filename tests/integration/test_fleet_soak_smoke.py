"""The fleet soak bench, short and small: a real hub, a handful of devices, about ten seconds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.paths import ROOT


@pytest.mark.slow
def test_short_soak_reports_rates_and_every_acknowledged_record_is_stored_once() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fleet_soak.py"), "--json", "--devices", "4",
         "--duration", "10", "--warmup", "2", "--batch-records", "200", "--sample-interval", "1",
         "--reference", "20000"],  # the real run measures it with the ingest bench first
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)

    assert result["errors"] == {}
    assert result["ingest_bench"] is None and result["ingest_bench_records_per_s"] == 20000
    assert abs(result["rate_vs_ingest_bench"] - result["records_per_s"] / 20000) <= 0.001
    assert result["records_per_s"] > 0 and result["samples_per_s"] > 0
    assert len(result["records_per_s_windows"]) == 1
    assert result["latency"]["telemetry"]["count"] > 0
    assert 0 < result["latency"]["telemetry"]["p50_ms"] <= result["latency"]["telemetry"]["p99_ms"]
    verified = result["verified"]
    assert verified["exactly_once"] is True
    assert verified["records_in_db"] == verified["records_acknowledged"] >= result["records"]
    assert verified["samples_in_db"] == verified["samples_acknowledged"] >= result["samples"]
    assert result["hub_rss"]["samples"] >= 2 and result["hub_rss"]["max_mb"] > 0
    assert result["met"]["zero_errors"] and not result["met"]["five_minutes"]
    assert "t=   10s" in done.stderr  # a progress line per 10 s window
