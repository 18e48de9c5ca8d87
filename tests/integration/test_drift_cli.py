"""`edgeloop flows drift` as an operator runs it: JSON and table output, exit 0 with and without
drift, and a one-line error (exit 1, no traceback) for each kind of bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.drift_telemetry import telemetry

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")


def drift(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EDGELOOP, "flows", "drift", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def tables(tmp_path: Path) -> dict[str, Path]:
    paths = {"reference": tmp_path / "reference.parquet", "same": tmp_path / "same.parquet",
             "dark": tmp_path / "dark.parquet", "short": tmp_path / "short.parquet",
             "narrow": tmp_path / "narrow.parquet"}
    telemetry(0, 1000).to_parquet(paths["reference"])
    telemetry(1, 500).to_parquet(paths["same"])
    telemetry(2, 500, brightness=0.40).to_parquet(paths["dark"])
    telemetry(3, 10).to_parquet(paths["short"])
    telemetry(4, 300).drop(columns=["brightness", "contrast"]).to_parquet(paths["narrow"])
    return paths


def test_no_drift_prints_the_verdict_as_json_and_exits_0(tables, offline_env, tmp_path):
    result = drift("--reference", str(tables["reference"]), "--current", str(tables["same"]),
                   "--json", env=offline_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert next(iter(verdict)) == "drift" and verdict["drift"] is False
    assert verdict["reference_rows"] == 1000 and verdict["current_rows"] == 500
    assert verdict["drifted_count"] == 0 and verdict["groups"] == []
    column = verdict["columns"][0]
    assert set(column) == {"column", "group", "method", "score", "threshold", "drifted", "effect",
                           "tested"}


def test_drift_exits_0_names_the_group_and_writes_the_html_report(tables, offline_env, tmp_path):
    report = tmp_path / "out" / "drift.html"
    result = drift("--reference", str(tables["reference"]), "--current", str(tables["dark"]),
                   "--report", str(report), "--json", env=offline_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["drift"] is True
    assert verdict["groups"] == ["image_quality"]
    assert [c["column"] for c in verdict["columns"] if c["drifted"]] == ["brightness"]
    assert report.is_file() and "brightness" in report.read_text()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # litestar, imported by Evidently
def test_without_json_a_readable_table_is_printed(tables, tmp_path):
    from click.testing import CliRunner  # in-process: Evidently's import is paid once

    from flows.drift.cli import drift as command

    result = CliRunner().invoke(command, ["--reference", str(tables["reference"]), "--current",
                                          str(tables["dark"]), "--var", str(tmp_path / "var")])
    assert result.exit_code == 0, result.output
    assert "drift: YES" in result.stdout
    assert "brightness" in result.stdout and "threshold" in result.stdout


@pytest.mark.parametrize(("current", "message"), [
    ("missing", "current file .* does not exist"),
    ("narrow", "the current table lacks column\\(s\\) brightness, contrast"),
    ("short", "the current table has 10 row\\(s\\); the drift check needs at least 50"),
])
def test_bad_input_is_a_one_line_error_and_exit_1(tables, offline_env, tmp_path, current,
                                                   message):
    path = tables.get(current, tmp_path / "absent.parquet")
    result = drift("--reference", str(tables["reference"]), "--current", str(path), "--json",
                   env=offline_env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgeloop: error: ")
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize(("args", "message"), [
    (["--reference", "REF"], "give both --reference and --current, or neither"),
    (["--reference", "REF", "--current", "REF", "--hub-url", "http://127.0.0.1:9"],
     "--hub-url is for the fleet check"),
    (["--report", "x.html"], "--report needs --reference and --current"),
    ([], "no admin token: set EDGELOOP_ADMIN_TOKEN"),  # the fleet check asks the hub
])
def test_a_half_given_check_is_a_usage_error_before_anything_runs(tables, offline_env, tmp_path,
                                                                  args, message):
    env = {k: v for k, v in offline_env.items() if k != "EDGELOOP_ADMIN_TOKEN"}
    result = drift(*[str(tables["reference"]) if a == "REF" else a for a in args], env=env,
                   cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
