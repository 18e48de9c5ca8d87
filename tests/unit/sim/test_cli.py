"""`edgeloop sim` through the installed console script, as a user runs it."""

import subprocess
import sys
from pathlib import Path

import pytest

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EDGELOOP, *args], capture_output=True, text=True, timeout=120)


def test_scenarios_lists_every_scenario_on_one_line_each():
    result = run("sim", "scenarios")
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["baseline", "dusk", "new_variant", "camera_bump", "dirty_lens",
                     "line_speedup"]


def test_render_writes_a_yolo_dataset_and_repeats_byte_for_byte(tmp_path: Path):
    for out in ("a", "b"):
        result = run("sim", "render", "--scenario", "dusk", "--frames", "3", "--seed", "4",
                     "--out", str(tmp_path / out), "--imgsz", "160")
        assert result.returncode == 0, result.stderr
    a, b = tmp_path / "a", tmp_path / "b"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(list((a / "images").glob("*.jpg"))) == 3
    assert len(list((a / "labels").glob("*.txt"))) == 3
    assert (a / "data.yaml").exists()
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "fog", "--frames", "2"], "'fog' is not one of"),
        (["--scenario", "dusk", "--frames", "0"], "--frames"),
        (["--scenario", "dusk", "--frames", "2", "--imgsz", "8"], "--imgsz"),
        (["--scenario", "dusk"], "--frames"),
    ],
)
def test_bad_arguments_give_one_line_and_a_non_zero_exit(tmp_path, args, message):
    result = run("sim", "render", *args, "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_render_refuses_to_overwrite_a_dataset_unless_asked(tmp_path: Path):
    args = ["sim", "render", "--scenario", "baseline", "--frames", "1", "--out", str(tmp_path)]
    assert run(*args).returncode == 0
    refused = run(*args)
    assert refused.returncode != 0 and "--overwrite" in refused.stderr
    assert run(*args, "--overwrite").returncode == 0
