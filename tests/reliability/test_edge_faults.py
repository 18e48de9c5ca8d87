"""Edge faults: a corrupt spool is quarantined and reported, the agent killed -9 many times and a
flapping link still deliver every committed record exactly once, and a long outage fills the spool
only to its disk budget without slowing inference."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from edge_runtime.contract import FrameStats, SampleMeta
from edge_runtime.outbox.budget import SpoolBudget, SpoolCounter
from edge_runtime.outbox.spool import Spool
from edge_runtime.outbox.uplink import Uplink
from edge_runtime.outbox.uplink_policy import UplinkConfig
from tests.support.flapping_link import FlappingLink
from tests.support.hub import RunningHub
from tests.support.procs import EDGE_AGENT
from tests.support.records import T0, jpeg, meta, stats

pytestmark = pytest.mark.slow
EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
KILL_SEED = 20261128
KILLS = 8
FLAP_SEED = 20261129
FLAPS = 12
DEVICE = "cam-k9"


def edge_run(model: Path, spool_dir: Path, device_id: str, *extra: str) -> list[str]:
    return [EDGELOOP, "edge", "run", "--model", str(model), "--spool", str(spool_dir),
            "--device-id", device_id, "--log-every", "0.5", *extra]


def record(device_id: str, frame_id: int) -> FrameStats:
    return stats(device_id, frame_id, at=T0)  # spool frame ids are clock µs: too big for seconds


def sample(device_id: str, frame_id: int) -> SampleMeta:
    return meta(device_id, 0, 160, 120).model_copy(update={"frame_id": frame_id})


# -- a corrupt spool -----------------------------------------------------------------------------


def _spool_with_records(path: Path, n: int) -> None:
    with Spool(path) as spool:
        first = spool.reserve_frame_ids(n)
        spool.add_telemetry([record("cam-q", first + i) for i in range(n)])


def _corrupt(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(np.random.default_rng(7).bytes(64 * 1024))
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    else:  # a valid header over pages overwritten in the middle: quick_check catches it
        data = bytearray(path.read_bytes())
        data[4096:] = b"\xa5" * (len(data) - 4096)
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["garbage", "truncated", "scribbled_pages"])
def test_corrupt_spool_is_moved_aside_and_a_fresh_one_takes_records(
        tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cam-q.sqlite"
    _spool_with_records(path, 400)
    _corrupt(path, how)
    corrupt_bytes = path.read_bytes()

    with caplog.at_level(logging.WARNING, logger="edge_runtime.outbox.spool"), Spool(path) as spool:
        moved = spool.quarantined_to
        spool.add_telemetry([record("cam-q", spool.reserve_frame_ids(1))])
        left = spool.stats()

    assert moved is not None and moved.name.startswith("cam-q.sqlite.corrupt-")
    assert moved.read_bytes() == corrupt_bytes, "the corrupt file is kept aside, untouched"
    assert (left.quarantined, left.pending_telemetry) == (1, 1)
    assert left.counters[SpoolCounter.QUARANTINED] == 1  # reaches the heartbeat's dropped map
    assert any(moved.name in r.getMessage() for r in caplog.records), "one line names the file"


def test_quarantine_counter_survives_restarts_and_counts_each_corruption(tmp_path: Path) -> None:
    path = tmp_path / "cam-q.sqlite"
    for _ in range(2):
        _spool_with_records(path, 10)
        _corrupt(path, "garbage")
        Spool(path).close()
    with Spool(path) as spool:
        assert spool.quarantined_to is None  # the fresh file is healthy
        # A quarantine resets the spool, so each new file counts only its own start.
        assert spool.stats().quarantined == 1
    assert len(list(tmp_path.glob("cam-q.sqlite.corrupt-*"))) == 2


def test_edge_run_carries_on_with_a_fresh_spool_after_corruption_and_reports_it(
        seed_model: Path, sqlite_hub: RunningHub, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "cam-c.sqlite").write_bytes(b"not a database at all " * 4096)
    token = sqlite_hub.add_device("cam-c")
    result = subprocess.run(edge_run(seed_model, spool_dir, "cam-c", "--source", "sim:baseline",
                                     "--max-frames", "15", "--hub", sqlite_hub.url,
                                     "--token", token),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "quarantined as" in result.stderr
    assert len(list(spool_dir.glob("cam-c.sqlite.corrupt-*"))) == 1
    with sqlite_hub.admin() as admin:
        delivered = len(admin.telemetry(device_id="cam-c"))
        device = next(d for d in admin.devices() if d.device_id == "cam-c")
    assert delivered == 15, "the fresh spool carries the run's records to the hub"
    assert device.status is not None
    assert device.status.dropped.get(SpoolCounter.QUARANTINED.value) == 1


# -- kill -9 at random points --------------------------------------------------------------------


def _committed(log: Path) -> tuple[list[str], list[str]]:
    lines = [line for line in log.read_text().splitlines(keepends=True) if line.endswith("\n")]
    telemetry = [line[2:-1] for line in lines if line.startswith("t ")]
    samples = [line[2:-1] for line in lines if line.startswith("s ")]
    return telemetry, samples


def test_agent_killed_9_at_random_points_delivers_every_committed_record_exactly_once(
        seed_model: Path, sqlite_hub: RunningHub, tmp_path: Path,
        repo_root: Path) -> None:
    rng = np.random.default_rng(KILL_SEED)
    token = sqlite_hub.add_device(DEVICE)
    spool_dir, log = tmp_path / "spool", tmp_path / "committed.log"
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    command = [sys.executable, str(EDGE_AGENT), str(log),
               *edge_run(seed_model, spool_dir, DEVICE, "--source", "sim:dusk",
                         "--hub", sqlite_hub.url, "--token", token)[1:]]
    for _ in range(KILLS):
        before = len(_committed(log)[0]) if log.exists() else 0
        proc = subprocess.Popen(command, cwd=repo_root, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while (not log.exists() or len(_committed(log)[0]) == before):  # inference started
                assert proc.poll() is None and time.monotonic() < deadline, "agent did not run"
                time.sleep(0.05)
            time.sleep(float(rng.uniform(0.0, 2.0)))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    final = subprocess.run([*command, "--max-frames", "5"], cwd=repo_root, env=env,
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    telemetry, samples = _committed(log)
    with sqlite_hub.admin() as admin:
        at_hub = admin.telemetry(device_id=DEVICE)
        samples_at_hub = [s.record_id for s in admin.samples(device_id=DEVICE, limit=10_000)]
    with Spool(spool_dir / f"{DEVICE}.sqlite") as spool:
        left = spool.stats()
    hub_ids = [f"{DEVICE}/{frame_id}" for frame_id in at_hub["frame_id"]]

    # A kill between a commit and its log line leaves a record committed but not logged: it
    # must still arrive (exactly once), but it is not a promise the log can hold the spool to.
    unlogged = set(hub_ids) - set(telemetry), set(samples_at_hub) - set(samples)
    print(f"kill -9 x{KILLS}: telemetry committed {len(set(telemetry))} at hub {len(hub_ids)} "
          f"duplicated {len(hub_ids) - len(set(hub_ids))} unlogged {len(unlogged[0])}; "
          f"samples committed {len(set(samples))} at hub {len(samples_at_hub)} duplicated "
          f"{len(samples_at_hub) - len(set(samples_at_hub))} unlogged {len(unlogged[1])}")
    assert len(telemetry) > KILLS * 5, "the agent should have committed records between kills"
    assert (left.pending_telemetry, left.pending_samples, left.quarantined) == (0, 0, 0)
    assert not [k for k, n in Counter(hub_ids).items() if n > 1], "duplicate telemetry at the hub"
    assert not [k for k, n in Counter(samples_at_hub).items() if n > 1], "duplicate samples"
    assert set(telemetry) <= set(hub_ids), f"lost: {sorted(set(telemetry) - set(hub_ids))[:3]}"
    lost_samples = set(samples) - set(samples_at_hub)
    assert not lost_samples, f"lost: {sorted(lost_samples)[:3]}"
    assert len(unlogged[1]) <= KILLS, "at most one sample commit is in flight at each kill"
    frame_ids = [int(r.rsplit("/", 1)[1]) for r in telemetry]
    assert len(frame_ids) == len(set(frame_ids)), "frame ids are never reused after a kill"


# -- a flapping network -------------------------------------------------------------------------


def test_flapping_link_delivers_every_committed_record_exactly_once(
        sqlite_hub: RunningHub, tmp_path: Path) -> None:
    rng = np.random.default_rng(FLAP_SEED)
    link = FlappingLink(("127.0.0.1", urlsplit(sqlite_hub.url).port or 80))
    config = UplinkConfig(hub_url=link.url, device_id="cam-flap",
                          token=sqlite_hub.add_device("cam-flap"), batch_size=40,
                          connect_timeout_s=1.0, timeout_s=2.0, backoff_base_s=0.05,
                          backoff_cap_s=0.5, idle_poll_s=0.05)
    committed: list[str] = []
    with link.running(), Spool(tmp_path / "cam-flap.sqlite") as spool:
        uplink = Uplink(spool, config)
        uplink.start()
        for _ in range(FLAPS):  # cuts land mid-request too: stored at the hub, answer lost
            first = spool.reserve_frame_ids(120)
            records = [record("cam-flap", first + i) for i in range(120)]
            spool.add_telemetry(records)
            committed += [r.record_id for r in records]
            time.sleep(float(rng.uniform(0.02, 0.3)))
            link.cut()
            time.sleep(float(rng.uniform(0.02, 0.6)))
            link.restore()
        uplink.stop(timeout=10)
        uplink.flush()
        uplink.close()
        failed, left = uplink.stats().failed_requests, spool.stats()
    with sqlite_hub.admin() as admin:
        hub_ids = [f"cam-flap/{f}" for f in admin.telemetry(device_id="cam-flap")["frame_id"]]
    print(f"flapping x{link.cuts}: committed {len(committed)} at hub {len(hub_ids)} "
          f"duplicated {len(hub_ids) - len(set(hub_ids))}; failed requests {failed}")
    assert failed > 0, "the cuts should have failed some requests"
    assert left.pending_telemetry == 0
    assert len(hub_ids) == len(set(hub_ids)) and set(hub_ids) == set(committed)


# -- a long outage -------------------------------------------------------------------------------


def test_long_outage_fills_the_spool_to_its_budget_then_drops_frames_before_statistics(
        tmp_path: Path) -> None:
    budget = SpoolBudget(max_bytes=512 * 1024)
    image = jpeg(160, 120)
    sizes: list[int] = []
    with Spool(tmp_path / "cam-o.sqlite", budget) as spool:
        for block in range(60):  # no hub: nothing is ever acknowledged
            first = spool.reserve_frame_ids(50)
            spool.add_telemetry([record("cam-o", first + i) for i in range(50)])
            for i in range(0, 50, 10):
                spool.add_sample(sample("cam-o", first + i), image)
            sizes.append(spool.disk_bytes())
            if block == 5:
                early = spool.stats()
        full = spool.stats()
        oldest = spool.pending_telemetry(1)[0][1].frame_id

    committed = 60 * 50
    print(f"outage: {committed} stats + {60 * 5} frames committed, spool {full.bytes} B of "
          f"{budget.max_bytes}; dropped {full.dropped_samples} frames, "
          f"{full.dropped_telemetry} stats; kept {full.pending_telemetry} stats, "
          f"{full.pending_samples} frames")
    assert max(sizes) <= budget.max_bytes, "the disk budget is never exceeded"
    assert early.dropped_samples > 0 and early.dropped_telemetry == 0, "frames go first"
    assert full.pending_telemetry + full.dropped_telemetry == committed, "every drop is counted"
    assert full.pending_samples + full.dropped_samples == 60 * 5
    assert full.dropped_telemetry > 0 and oldest > 0, "then the oldest statistics"


_INFER = re.compile(r"infer p50 ([0-9.]+) ms")


def _infer_p50(model: Path, tmp_path: Path, name: str, *hub: str) -> tuple[float, Path]:
    spool_dir = tmp_path / name
    result = subprocess.run(edge_run(model, spool_dir, name, "--source", "sim:dusk",
                                     "--max-frames", "120", "--spool-mb", "1", *hub),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return float(_INFER.findall(result.stderr)[-1]), spool_dir / f"{name}.sqlite"


def test_inference_latency_is_unchanged_while_the_hub_is_unreachable(
        seed_model: Path, sqlite_hub: RunningHub, tmp_path: Path) -> None:
    online, _ = _infer_p50(seed_model, tmp_path, "cam-on", "--hub", sqlite_hub.url,
                           "--token", sqlite_hub.add_device("cam-on"))
    # A closed port: every send fails fast, the uplink backs off, the spool keeps everything.
    offline, spool_path = _infer_p50(seed_model, tmp_path, "cam-off", "--hub",
                                     "http://127.0.0.1:9", "--token", "t" * 32)
    with Spool(spool_path) as spool:
        left = spool.stats()
    print(f"infer p50 online {online:.2f} ms, hub down {offline:.2f} ms; spool {left.bytes} B, "
          f"kept {left.pending_telemetry} stats / {left.pending_samples} frames, dropped "
          f"{left.dropped_telemetry} stats / {left.dropped_samples} frames")
    assert left.pending_telemetry + left.dropped_telemetry == 120
    assert left.bytes <= 2**20
    assert offline <= online * 1.5 + 2.0, "a dead hub must not slow inference"
