"""A spool writer killed with SIGKILL at random points keeps every record it reported committed."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from edge_runtime.outbox.budget import SpoolBudget
from edge_runtime.outbox.spool import Spool
from tests.support.procs import SPOOL_WRITER

ROUNDS = 12
SEED = 20250101


def run_and_kill(spool_path: Path, repo_root: Path, rng: random.Random) -> list[str]:
    """Starts the writer, kills it -9 after a random number of commits; returns its promises."""
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    proc = subprocess.Popen([sys.executable, str(SPOOL_WRITER), str(spool_path)], cwd=repo_root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
        promised = [proc.stdout.readline() for _ in range(rng.randint(0, 60))]
        time.sleep(rng.uniform(0.0, 0.01))  # land the kill anywhere, mid-commit included
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # Lines written before the kill are promises too; a torn last line is not.
    promised += proc.stdout.readlines()
    proc.stdout.close()
    if proc.stderr:
        proc.stderr.close()
    return [line.rstrip("\n") for line in promised if line.endswith("\n")]


def test_every_reported_commit_survives_repeated_kill_9(tmp_path: Path, repo_root: Path) -> None:
    rng = random.Random(SEED)
    spool_path = tmp_path / "spool.db"
    promised: list[str] = []
    for _ in range(ROUNDS):
        promised += run_and_kill(spool_path, repo_root, rng)

    with Spool(spool_path, SpoolBudget()) as spool:
        stored = {r.record_id for _, r in spool.pending_telemetry(limit=1_000_000)}
    with sqlite3.connect(spool_path) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchall()

    assert len(promised) > ROUNDS * 10, "the writer should have committed records"
    assert set(promised) <= stored, f"lost: {sorted(set(promised) - stored)[:5]}"
    frame_ids = [int(record_id.rsplit("/", 1)[1]) for record_id in promised]
    assert frame_ids == sorted(set(frame_ids)), "frame ids must rise across kills and restarts"
    assert integrity == [("ok",)]
