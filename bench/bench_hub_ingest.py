"""Telemetry ingest rate of one hub process: TelemetryBatch posts of 500 records over loopback.

Starts `edgeloop hub serve` on a free 127.0.0.1 port with a throwaway SQLite database, registers
a few devices, and posts pre-built gzip batches from one thread per device until the batch count
or the time budget runs out. Client-side serialisation is done before the clock starts, so the
figure is the hub's. Prints records/s and p50/p99 batch latency.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_runtime.contract import FrameStats, TelemetryBatch  # noqa: E402
from hub.client import HubClient  # noqa: E402

HOST = "127.0.0.1"  # the bench never talks to anything else
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def record(device_id: str, frame_id: int, embedding_dim: int) -> FrameStats:
    return FrameStats(
        device_id=device_id, model_version="bench-1", frame_id=frame_id,
        captured_at=T0 + timedelta(milliseconds=33 * frame_id),
        pre_ms=1.2, infer_ms=14.0, post_ms=0.6, detections=3,
        class_counts={"bolt": 2, "nut": 1}, conf_max=0.93, conf_mean=0.71, conf_min=0.42,
        uncertain=1, box_area_mean=0.02, box_area_min=0.01, box_area_max=0.04,
        box_aspect_mean=1.1, brightness=0.52, contrast=0.21, sharpness=130.0, saturation=0.33,
        embedding=[0.01 * (i % 7) for i in range(embedding_dim)] or None)


def build_bodies(device_id: str, batches: int, size: int, embedding_dim: int) -> list[bytes]:
    bodies = []
    for b in range(batches):
        records = [record(device_id, b * size + i, embedding_dim) for i in range(size)]
        batch = TelemetryBatch(device_id=device_id, sent_at=T0, records=records)
        bodies.append(gzip.compress(batch.model_dump_json().encode(), compresslevel=6))
    return bodies


def wait_healthy(url: str, server: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"hub exited with {server.returncode} before it was healthy")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"hub not healthy after {timeout_s}s")


def post_all(url: str, token: str, bodies: list[bytes], stop_at: float, latencies: list[float],
             stored: list[int], lock: threading.Lock) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Content-Encoding": "gzip"}
    with httpx.Client(base_url=url, headers=headers, timeout=30.0, trust_env=False) as client:
        for body in bodies:
            if time.monotonic() >= stop_at:
                return
            started = time.perf_counter()
            response = client.post("/v1/telemetry", content=body)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"hub answered {response.status_code}: {response.text[:200]}")
            with lock:
                latencies.append(elapsed)
                stored.append(response.json()["stored"])


def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    port = free_port()
    url = f"http://{HOST}:{port}"
    admin_token = secrets.token_urlsafe(24)
    env = {**os.environ, "EDGELOOP_ADMIN_TOKEN": admin_token}
    edgeloop = Path(sys.executable).parent / "edgeloop"
    server = subprocess.Popen(
        [str(edgeloop), "hub", "serve", "--host", HOST, "--port", str(port),
         "--db", args.db or f"sqlite:///{work / 'hub.sqlite'}", "--blobs", str(work / "blobs")],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_healthy(url, server, timeout_s=30.0)
        per_device = -(-args.batches // args.devices)
        with HubClient(url, admin_token=admin_token) as admin:
            tokens = {f"bench-{i}": admin.add_device(f"bench-{i}").token
                      for i in range(args.devices)}
        bodies = {d: build_bodies(d, per_device + args.warmup, args.batch_size,
                                  args.embedding_dim) for d in tokens}
        # Warm-up: first requests pay for imports, connections and SQLite page cache.
        warm: list[float] = []
        for device_id, token in tokens.items():
            post_all(url, token, bodies[device_id][: args.warmup], float("inf"), warm, [],
                     threading.Lock())
        latencies: list[float] = []
        stored: list[int] = []
        lock = threading.Lock()
        started = time.perf_counter()
        stop_at = time.monotonic() + args.seconds
        threads = [threading.Thread(target=post_all, args=(
            url, token, bodies[d][args.warmup:], stop_at, latencies, stored, lock))
            for d, token in tokens.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    records = sum(stored)
    if len(stored) * args.batch_size != records:
        raise RuntimeError(f"{len(stored) * args.batch_size - records} records were not new")
    ms = sorted(x * 1000 for x in latencies)
    return {
        "bench": "hub_ingest", "db": (args.db or "sqlite").split(":")[0].split("+")[0],
        "synchronous": "FULL" if args.db is None else "server default",
        "batch_records": args.batch_size, "devices": args.devices, "batches": len(stored),
        "records": records, "seconds": round(wall, 2),
        "records_per_s": round(records / wall),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2),
        "embedding_dim": args.embedding_dim,
    }


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--batches", type=int, default=400, help="batches to post in all")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop posting after this")
    parser.add_argument("--devices", type=int, default=4, help="devices posting at once")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=5, help="batches per device, not timed")
    parser.add_argument("--embedding-dim", type=int, default=0)
    parser.add_argument("--db", default=None,
                        help="the hub's database URL (default: a throwaway SQLite file); "
                             "give an empty database, the bench registers devices bench-N")
    return parser


def main() -> None:
    parser = make_parser()
    args = parser.parse_args()
    if not (1 <= args.batches <= 100_000 and 1 <= args.devices <= 64
            and 1 <= args.batch_size <= 5000 and 0 < args.seconds <= 600):
        parser.error("--batches 1..100000, --devices 1..64, --batch-size 1..5000, "
                     "--seconds 0..600")
    with tempfile.TemporaryDirectory(prefix="bench_hub_") as tmp:
        result = run(args, Path(tmp))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"hub ingest: {result['records_per_s']} records/s "
              f"({result['records']} records in {result['seconds']} s, "
              f"{result['devices']} devices), batch latency p50 {result['p50_ms']} ms, "
              f"p99 {result['p99_ms']} ms")


if __name__ == "__main__":
    main()
