"""Fleet soak: many simulated devices against one hub process over loopback, for minutes.

Starts `edgeloop hub serve` on a free 127.0.0.1 port (a throwaway SQLite database, or a throwaway
database on the PostgreSQL server of `--db-url`), registers `--devices` devices, and runs one
asyncio client per device (its own token and connection): gzip TelemetryBatch posts of
`--batch-records` records (the uplink's default size), a small JPEG sample every
`--sample-interval` seconds, a heartbeat every 30 s. After `--warmup` seconds it measures for
`--duration` seconds: records/s and samples/s per 10 s window and overall, request latency,
errors by status, the hub's RSS every 5 s, and where the CPU went. Then every device finishes its
request in flight, and the bench checks that each acknowledged record is in the hub's database
exactly once. Progress goes to stderr, one line per window; `--json` prints one object to stdout.

By default each device posts its next batch as soon as the last one is acknowledged (like an
uplink draining a backlog), so the rate is the hub's capacity and the latency is mostly queueing
behind the other devices; `--rate` paces the fleet instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import psutil  # type: ignore[import-untyped]
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_runtime.contract import (  # noqa: E402
    Detection,
    DeviceStatus,
    FrameStats,
    SampleMeta,
    SamplePolicy,
)
from hub.client import HubClient  # noqa: E402

HOST = "127.0.0.1"  # the bench never talks to anything else
TARGET_SHARE = 0.8  # issue 10: sustained load at >= 80% of the ingest benchmark's rate
FLAT_MEMORY_GROWTH = 0.10  # last-minute mean RSS at most 10% above the first minute's
WINDOW_S = 10.0
RSS_EVERY_S = 5.0
HEARTBEAT_EVERY_S = 30.0  # as edge_runtime's agent
RETRY_PAUSE_S = 0.5  # after a 503 or a transport error the device keeps the batch and retries
REQUEST_TIMEOUT_S = 30.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FRAME_PERIOD = timedelta(milliseconds=33)  # a 30 fps camera
_FRAME_SENTINEL = 987_654_321_987
_TIME_SENTINEL = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)


@dataclass(frozen=True)
class SoakConfig:
    devices: int = 50
    duration_s: float = 300.0
    warmup_s: float = 10.0
    batch_records: int = 500
    rate: float = 0.0  # fleet records/s to pace at; 0 = each device posts as soon as acknowledged
    sample_interval_s: float = 2.0  # per device
    db_url: str | None = None  # None: a throwaway SQLite file
    hub_workers: int = 1  # `edgeloop hub serve --workers`

    def __post_init__(self) -> None:
        # Bounded: this runs on a developer's machine, not against a real fleet.
        checks = {"--devices 1..200": 1 <= self.devices <= 200,
                  "--duration 1..3600": 1 <= self.duration_s <= 3600,
                  "--warmup 0..120": 0 <= self.warmup_s <= 120,
                  "--batch-records 1..5000": 1 <= self.batch_records <= 5000,
                  "--rate >= 0": self.rate >= 0,
                  "--sample-interval > 0 (or 0: none)": self.sample_interval_s >= 0,
                  "--hub-workers 1..8": 1 <= self.hub_workers <= 8}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"out of range: {', '.join(bad)}")
        if self.db_url is not None and not self.db_url.startswith("postgresql"):
            raise ValueError("--db-url must be a postgresql:// URL (SQLite is the default)")

    @property
    def db_kind(self) -> str:
        return "sqlite" if self.db_url is None else "postgresql"


# -- what the devices send ---------------------------------------------------------------------


class RecordTemplates:
    """Pre-rendered, contract-valid FrameStats JSON with varied numbers; a batch is a join, so
    the clients spend their CPU on HTTP and gzip, not on pydantic (the hub still validates)."""

    def __init__(self, device_id: str, rng: random.Random, variants: int = 64) -> None:
        self.device_id = device_id
        self._parts = [self._split(self._variant(rng)) for _ in range(variants)]

    def _variant(self, rng: random.Random) -> str:
        bolts, nuts = rng.randint(0, 4), rng.randint(0, 3)
        found = bolts + nuts > 0
        low, high = sorted((round(rng.uniform(0.3, 0.99), 3), round(rng.uniform(0.3, 0.99), 3)))
        return FrameStats(
            device_id=self.device_id, model_version="soak-1", frame_id=_FRAME_SENTINEL,
            captured_at=_TIME_SENTINEL, pre_ms=round(rng.uniform(0.8, 2.0), 2),
            infer_ms=round(rng.uniform(9.0, 20.0), 2), post_ms=round(rng.uniform(0.3, 1.0), 2),
            detections=bolts + nuts, class_counts={"bolt": bolts, "nut": nuts},
            conf_max=high if found else None, conf_min=low if found else None,
            conf_mean=round((low + high) / 2, 3) if found else None,
            uncertain=rng.randint(0, bolts + nuts),
            box_area_mean=0.02 if found else None, box_area_min=0.01 if found else None,
            box_area_max=0.04 if found else None, box_aspect_mean=1.1 if found else None,
            brightness=round(rng.uniform(0.3, 0.7), 3), contrast=round(rng.uniform(0.1, 0.3), 3),
            sharpness=round(rng.uniform(80, 200), 1), saturation=round(rng.uniform(0.2, 0.5), 3),
        ).model_dump_json()

    @staticmethod
    def _split(rendered: str) -> tuple[str, str, str]:
        head, _, rest = rendered.partition(str(_FRAME_SENTINEL))
        middle, _, tail = rest.partition(_TIME_SENTINEL.isoformat().replace("+00:00", "Z"))
        if not tail:
            raise RuntimeError("FrameStats JSON no longer looks as this bench expects")
        return head, middle, tail

    def batch_body(self, first_frame: int, count: int) -> bytes:
        """A gzip TelemetryBatch of frames first_frame .. first_frame + count - 1."""
        records = []
        for frame_id in range(first_frame, first_frame + count):
            head, middle, tail = self._parts[frame_id % len(self._parts)]
            at = (T0 + frame_id * FRAME_PERIOD).isoformat().replace("+00:00", "Z")
            records.append(f"{head}{frame_id}{middle}{at}{tail}")
        sent_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        text = (f'{{"contract":1,"device_id":"{self.device_id}","sent_at":"{sent_at}",'
                f'"records":[{",".join(records)}]}}')
        return gzip.compress(text.encode(), compresslevel=6)  # the uplink's level


def sample_jpegs(count: int = 4, width: int = 320, height: int = 240) -> list[bytes]:
    """Small camera-like JPEGs (a gradient with a few parts on it, some noise)."""
    rng = np.random.default_rng(7)
    images = []
    for _ in range(count):
        ramp = np.linspace(60, 190, width, dtype=np.float32)
        image = np.repeat(np.tile(ramp, (height, 1))[:, :, None], 3, axis=2)
        for _ in range(4):
            x, y = int(rng.integers(20, width - 40)), int(rng.integers(20, height - 40))
            image[y:y + 24, x:x + 24] = rng.integers(0, 255, 3)
        image += rng.normal(0, 6, image.shape).astype(np.float32)
        ok, encoded = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8),
                                   [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise RuntimeError("cv2.imencode failed")
        images.append(encoded.tobytes())
    return images


def sample_meta(device_id: str, frame_id: int, width: int, height: int) -> str:
    return SampleMeta(
        device_id=device_id, model_version="soak-1", frame_id=frame_id,
        captured_at=T0 + frame_id * FRAME_PERIOD, policy=SamplePolicy.UNCERTAIN, uncertainty=0.6,
        width=width, height=height,
        predictions=[Detection(cls=0, label="bolt", score=0.45, x1=0.1, y1=0.1, x2=0.2, y2=0.2)],
    ).model_dump_json()


# -- what the clients measure ------------------------------------------------------------------


@dataclass
class Tally:
    """Counts of the measured period; acknowledgements outside it still count for verification."""

    measuring: bool = False
    started: float = 0.0
    window_records: Counter[int] = field(default_factory=Counter)
    window_samples: Counter[int] = field(default_factory=Counter)
    telemetry_ms: list[float] = field(default_factory=list)
    sample_ms: list[float] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)  # the first of each kind
    replayed_duplicates: int = 0

    def window(self, now: float) -> int:
        return int((now - self.started) // WINDOW_S)


@dataclass
class DeviceState:
    device_id: str
    token: str
    next_frame: int = 0  # frames below this were acknowledged
    sampled: list[int] = field(default_factory=list)  # acknowledged sample frame ids
    last_sampled: int = -1


@dataclass(frozen=True)
class Answer:
    ok: bool
    body: dict[str, Any]


async def post(client: httpx.AsyncClient, tally: Tally, kind: str, latencies: list[float],
               **request: Any) -> Answer:
    """One POST; errors are counted by status (or transport error), never raised."""
    started = time.perf_counter()
    try:
        response = await client.post(f"/v1/{kind}", **request)
    except httpx.TransportError as exc:
        key = f"{kind}:{type(exc).__name__}"
        tally.errors[key] += 1
        tally.error_examples.setdefault(key, str(exc)[:200])
        return Answer(False, {})
    elapsed_ms = (time.perf_counter() - started) * 1000
    if tally.measuring:
        tally.requests[kind] += 1
        latencies.append(elapsed_ms)
    if response.status_code != 200:
        key = f"{kind}:{response.status_code}"
        tally.errors[key] += 1
        tally.error_examples.setdefault(key, response.text[:200])
        return Answer(False, {})
    return Answer(True, response.json())


async def telemetry_loop(client: httpx.AsyncClient, device: DeviceState,
                         templates: RecordTemplates, config: SoakConfig, tally: Tally,
                         stop: asyncio.Event) -> None:
    interval = config.batch_records * config.devices / config.rate if config.rate else 0.0
    due = time.monotonic() + random.uniform(0, interval)
    while not stop.is_set():
        if interval:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, due - time.monotonic()))
            if stop.is_set():
                return
            due = max(due + interval, time.monotonic() - interval)  # no catch-up storms
        # gzip releases the GIL: build in a thread so the other devices' I/O goes on meanwhile
        body = await asyncio.to_thread(templates.batch_body, device.next_frame,
                                       config.batch_records)
        while True:  # like the uplink: keep the batch until it is acknowledged
            answer = await post(client, tally, "telemetry", tally.telemetry_ms, content=body,
                                headers={"Content-Type": "application/json",
                                         "Content-Encoding": "gzip"})
            if answer.ok:
                break
            if stop.is_set():
                return
            await asyncio.sleep(RETRY_PAUSE_S)
        device.next_frame += config.batch_records
        tally.replayed_duplicates += int(answer.body["duplicates"])
        if tally.measuring:
            tally.window_records[tally.window(time.monotonic())] += int(answer.body["received"])


async def sample_loop(client: httpx.AsyncClient, device: DeviceState, jpegs: list[bytes],
                      config: SoakConfig, tally: Tally, stop: asyncio.Event) -> None:
    """A kept frame every sample_interval_s: the newest acknowledged telemetry frame."""
    await asyncio.sleep(random.uniform(0, config.sample_interval_s))
    while not stop.is_set():
        frame_id = device.next_frame - 1
        if frame_id > device.last_sampled:
            image = jpegs[frame_id % len(jpegs)]
            meta = sample_meta(device.device_id, frame_id, 320, 240)
            files = {"image": (f"{device.device_id}-{frame_id}.jpg", image, "image/jpeg")}
            answer = await post(client, tally, "samples", tally.sample_ms,
                                data={"meta": meta}, files=files)
            if answer.ok:
                device.sampled.append(frame_id)
                device.last_sampled = frame_id
                if tally.measuring:
                    tally.window_samples[tally.window(time.monotonic())] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), config.sample_interval_s)


async def heartbeat_loop(client: httpx.AsyncClient, device: DeviceState, tally: Tally,
                         stop: asyncio.Event) -> None:
    started = time.monotonic()
    await asyncio.sleep(random.uniform(0, HEARTBEAT_EVERY_S))
    while not stop.is_set():
        status = DeviceStatus(
            device_id=device.device_id, sent_at=datetime.now(UTC), model_version="soak-1",
            uptime_s=time.monotonic() - started, frames_seen=device.next_frame,
            spool_telemetry=0, spool_samples=0, spool_bytes=0, dropped={})
        await post(client, tally, "heartbeat", [], content=status.model_dump_json(),
                   headers={"Content-Type": "application/json"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HEARTBEAT_EVERY_S)


async def run_device(url: str, device: DeviceState, config: SoakConfig, jpegs: list[bytes],
                     tally: Tally, stop: asyncio.Event) -> None:
    templates = RecordTemplates(device.device_id, random.Random(device.device_id))
    headers = {"Authorization": f"Bearer {device.token}"}
    limits = httpx.Limits(max_connections=3, max_keepalive_connections=3)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S,
                                 limits=limits, trust_env=False) as client:
        loops = [telemetry_loop(client, device, templates, config, tally, stop),
                 heartbeat_loop(client, device, tally, stop)]
        if config.sample_interval_s:
            loops.append(sample_loop(client, device, jpegs, config, tally, stop))
        await asyncio.gather(*loops)


# -- where the memory and the CPU went ---------------------------------------------------------


@dataclass
class CpuSnapshot:
    at: float
    hub: float
    clients: float
    postgres: dict[int, float]
    busy: float  # all CPUs, all processes

    @classmethod
    def take(cls, hub: psutil.Process) -> CpuSnapshot:
        def seconds(times: Any) -> float:
            return float(times.user + times.system)

        postgres = {}
        for proc in psutil.process_iter(["name", "cpu_times"]):
            if proc.info["name"] == "postgres" and proc.info["cpu_times"] is not None:
                postgres[proc.pid] = seconds(proc.info["cpu_times"])
        total = psutil.cpu_times()
        busy = sum(total) - total.idle - getattr(total, "iowait", 0.0)
        return cls(time.monotonic(), sum(seconds(p.cpu_times()) for p in hub_processes(hub)),
                   seconds(psutil.Process().cpu_times()), postgres, busy)


def cpu_cores(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
    """Mean cores used over the measured period, by whom."""
    wall = end.at - start.at
    postgres = sum(t - start.postgres.get(pid, 0.0) for pid, t in end.postgres.items())
    used = {"hub": end.hub - start.hub, "clients": end.clients - start.clients,
            "postgres": postgres, "all": end.busy - start.busy}
    used["others"] = max(0.0, used["all"] - used["hub"] - used["clients"] - postgres)
    return {k: round(v / wall, 2) for k, v in used.items()} | {"machine": psutil.cpu_count()}


async def watch_rss(hub: psutil.Process, series: list[tuple[float, float]], tally: Tally,
                    stop: asyncio.Event) -> None:
    while not stop.is_set():
        if tally.measuring:
            series.append((time.monotonic() - tally.started, hub_rss_mb(hub)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RSS_EVERY_S)


def rss_summary(series: list[tuple[float, float]], duration_s: float) -> dict[str, Any]:
    span = min(60.0, duration_s / 2)
    first = [mb for t, mb in series if t < span] or [series[0][1]]
    last = [mb for t, mb in series if t >= duration_s - span] or [series[-1][1]]
    first_mean, last_mean = statistics.fmean(first), statistics.fmean(last)
    return {"first_minute_mean_mb": round(first_mean, 1),
            "last_minute_mean_mb": round(last_mean, 1),
            "growth_pct": round(100 * (last_mean - first_mean) / first_mean, 2),
            "max_mb": round(max(mb for _, mb in series), 1), "samples": len(series),
            "series_mb": [round(mb, 1) for _, mb in series]}


async def progress(tally: Tally, hub: psutil.Process, config: SoakConfig,
                   stop: asyncio.Event) -> None:
    window, first_request = 0, 0
    while not stop.is_set():
        end = tally.started + (window + 1) * WINDOW_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, end - time.monotonic()))
        # The last window ends as the run does: its line is due even if the stop came first.
        if time.monotonic() < end or (window + 1) * WINDOW_S > config.duration_s:
            return  # stopped before the window ended, or past the measured time
        p99 = percentile(tally.telemetry_ms[first_request:], 99)
        first_request = len(tally.telemetry_ms)
        records_per_s = tally.window_records[window] / WINDOW_S
        print(f"t={(window + 1) * WINDOW_S:5.0f}s  records/s {records_per_s:8,.0f}"
              f"  samples/s {tally.window_samples[window] / WINDOW_S:5.1f}"
              f"  telemetry p99 {p99:6.0f} ms  errors {sum(tally.errors.values())}"
              f"  hub rss {hub_rss_mb(hub):6.1f} MiB"
              f"  load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
        window += 1


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(pct / 100 * len(ordered)))]


def latency(values: list[float]) -> dict[str, float]:
    return {f"p{p}_ms": round(percentile(values, p), 1) for p in (50, 95, 99)} | {
        "max_ms": round(max(values, default=0.0), 1), "count": len(values)}


# -- the hub under load ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningHub:
    url: str
    admin_token: str
    db_url: str
    process: psutil.Process


def hub_processes(hub: psutil.Process) -> list[psutil.Process]:
    """The hub process and, with --hub-workers, its forked workers."""
    return [hub, *hub.children(recursive=True)]


def hub_rss_mb(hub: psutil.Process) -> float:
    return sum(p.memory_info().rss for p in hub_processes(hub)) / 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def throwaway_postgres(server_url: str) -> Iterator[str]:
    """A fresh database on the server of `server_url`, dropped afterwards (nothing else touched)."""
    server = sa.make_url(server_url).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 3})
    name = f"edgeloop_fleet_soak_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def hub_process(db_url: str, work: Path, workers: int = 1) -> Iterator[RunningHub]:
    """`edgeloop hub serve` on a free loopback port, stopped with SIGINT afterwards."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    admin_token = secrets.token_urlsafe(24)
    env = {**os.environ, "EDGELOOP_ADMIN_TOKEN": admin_token}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "edgeloop"), "hub", "serve", "--host", HOST,
         "--port", str(port), "--db", db_url, "--blobs", str(work / "blobs"),
         "--workers", str(workers)],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=open(work / "hub.log", "wb"))  # noqa: SIM115
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"hub exited with {server.returncode}: "
                                   f"{(work / 'hub.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=1.0, trust_env=False).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("hub not healthy after 30 s")
            time.sleep(0.1)
        yield RunningHub(url, admin_token, db_url, psutil.Process(server.pid))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def soak(hub: RunningHub, devices: list[DeviceState], config: SoakConfig,
               ) -> tuple[Tally, list[tuple[float, float]], dict[str, float]]:
    tally, stop = Tally(), asyncio.Event()
    rss: list[tuple[float, float]] = []
    jpegs = sample_jpegs()
    tasks = [asyncio.create_task(run_device(hub.url, d, config, jpegs, tally, stop))
             for d in devices]
    watchers: list[asyncio.Task[None]] = []
    try:
        await asyncio.sleep(config.warmup_s)
        tally.started, tally.measuring = time.monotonic(), True
        cpu_start = CpuSnapshot.take(hub.process)
        watchers = [asyncio.create_task(watch_rss(hub.process, rss, tally, stop)),
                    asyncio.create_task(progress(tally, hub.process, config, stop))]
        await asyncio.sleep(config.duration_s)
        tally.measuring = False
        cpu = cpu_cores(cpu_start, CpuSnapshot.take(hub.process))
    finally:
        stop.set()  # each device finishes its request in flight, then stops
        results = await asyncio.gather(*tasks, *watchers, return_exceptions=True)
    crashed = [r for r in results if isinstance(r, BaseException)
               and not isinstance(r, asyncio.CancelledError)]
    if crashed:
        raise RuntimeError(f"{len(crashed)} device tasks crashed: {crashed[0]!r}")
    return tally, rss, cpu


def verify_stored(hub: RunningHub, devices: list[DeviceState]) -> dict[str, Any]:
    """Each acknowledged record (frames 0 .. next_frame - 1 of each device) and sample is in the
    database once, nothing else is, and the hub's own per-device counters agree."""
    engine = sa.create_engine(hub.db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT device_id, COUNT(*), COUNT(DISTINCT frame_id), MIN(frame_id), "
                "MAX(frame_id) FROM telemetry GROUP BY device_id")).all()
            sampled = conn.execute(sa.text("SELECT device_id, frame_id FROM samples")).all()
    finally:
        engine.dispose()
    with HubClient(hub.url, admin_token=hub.admin_token) as admin:
        counters = {d.device_id: (d.telemetry_stored, d.samples_stored) for d in admin.devices()}
    in_db = {r[0]: tuple(r[1:]) for r in rows}
    samples_in_db: dict[str, list[int]] = {}
    for device_id, frame_id in sampled:
        samples_in_db.setdefault(device_id, []).append(frame_id)
    wrong_telemetry = [d.device_id for d in devices if d.next_frame and in_db.get(d.device_id)
                       != (d.next_frame, d.next_frame, 0, d.next_frame - 1)]
    wrong_samples = [d.device_id for d in devices
                     if sorted(samples_in_db.get(d.device_id, [])) != sorted(d.sampled)]
    wrong_counters = [d.device_id for d in devices
                      if counters.get(d.device_id) != (d.next_frame, len(d.sampled))]
    acknowledged = sum(d.next_frame for d in devices)
    return {"records_acknowledged": acknowledged,
            "records_in_db": sum(r[1] for r in rows),
            "samples_acknowledged": sum(len(d.sampled) for d in devices),
            "samples_in_db": len(sampled),
            "devices_wrong_telemetry": wrong_telemetry[:10],
            "devices_wrong_samples": wrong_samples[:10],
            "devices_wrong_counters": wrong_counters[:10],
            "exactly_once": not (wrong_telemetry or wrong_samples or wrong_counters)
            and acknowledged == sum(r[1] for r in rows)}


def register(hub: RunningHub, count: int) -> list[DeviceState]:
    with HubClient(hub.url, admin_token=hub.admin_token) as admin:
        return [DeviceState(f"fleet-{i:03d}", admin.add_device(f"fleet-{i:03d}").token)
                for i in range(count)]


# -- the report ----------------------------------------------------------------------------------


def summarize(config: SoakConfig, tally: Tally, rss: list[tuple[float, float]],
              cpu: dict[str, float], verified: dict[str, Any],
              load: dict[str, list[float]], reference: float) -> dict[str, Any]:
    full_windows = int(config.duration_s // WINDOW_S)
    windows = [round(tally.window_records[w] / WINDOW_S) for w in range(full_windows)]
    records = sum(tally.window_records.values())
    rate = records / config.duration_s
    target = TARGET_SHARE * reference
    memory = rss_summary(rss, config.duration_s)
    met = {"rate": rate >= target,
           "every_window": bool(windows) and min(windows) >= target,
           "five_minutes": config.duration_s >= 300,
           "flat_memory": memory["growth_pct"] <= 100 * FLAT_MEMORY_GROWTH,
           "zero_errors": not tally.errors,
           "exactly_once": bool(verified["exactly_once"])}
    inputs = asdict(config) | {"db_url": None if config.db_url is None else
                               sa.make_url(config.db_url).render_as_string(hide_password=True)}
    return {
        "bench": "fleet_soak", "db": config.db_kind, "inputs": inputs,
        "ingest_bench_records_per_s": round(reference), "target_records_per_s": round(target),
        "records": records, "records_per_s": round(rate),
        "rate_vs_ingest_bench": round(rate / reference, 3),
        # Comparable across runs on a shared machine: what one core of hub CPU ingests.
        "records_per_hub_cpu_s": round(rate / cpu["hub"]) if cpu["hub"] else None,
        "records_per_s_windows": windows,
        "min_window_records_per_s": min(windows, default=0),
        "samples": sum(tally.window_samples.values()),
        "samples_per_s": round(sum(tally.window_samples.values()) / config.duration_s, 2),
        "requests": dict(tally.requests),
        "latency": {"telemetry": latency(tally.telemetry_ms), "samples": latency(tally.sample_ms)},
        "errors": dict(tally.errors), "error_examples": tally.error_examples,
        "replayed_duplicates": tally.replayed_duplicates,
        "hub_rss": memory, "cpu_cores": cpu, "loadavg": load, "verified": verified,
        "met": met | {"all": all(met.values())},
    }


def measure_reference(config: SoakConfig, work: Path) -> dict[str, Any]:
    """`bench_hub_ingest.py` with its defaults, on its own throwaway hub, on this machine now:
    the burst rate the soak is held against (a figure from another machine would not compare)."""
    from bench_hub_ingest import make_parser
    from bench_hub_ingest import run as ingest

    work.mkdir()
    with contextlib.ExitStack() as stack:
        db = None if config.db_url is None else stack.enter_context(
            throwaway_postgres(config.db_url))
        return ingest(make_parser().parse_args(["--db", db] if db else []), work)


def run(config: SoakConfig, work: Path, reference: float | None = None) -> dict[str, Any]:
    """The soak; held against `reference` records/s, else against the ingest bench run first."""
    measured = None
    if reference is None:
        print("fleet soak: the ingest bench first, for the reference rate", file=sys.stderr)
        measured = measure_reference(config, work / "reference")
        reference = float(measured["records_per_s"])
    with contextlib.ExitStack() as stack:
        db_url = (f"sqlite:///{work / 'hub.sqlite'}" if config.db_url is None
                  else stack.enter_context(throwaway_postgres(config.db_url)))
        hub = stack.enter_context(hub_process(db_url, work, config.hub_workers))
        devices = register(hub, config.devices)
        load = {"start": [round(x, 2) for x in os.getloadavg()]}
        tally, rss, cpu = asyncio.run(soak(hub, devices, config))
        load["end"] = [round(x, 2) for x in os.getloadavg()]
        verified = verify_stored(hub, devices)
        result = summarize(config, tally, rss, cpu, verified, load, reference)
    # The hub logs warnings and errors only (no access log): any line is worth a look.
    log = (work / "hub.log").read_text(errors="replace").splitlines()
    return result | {"ingest_bench": measured,
                     "hub_log": {"lines": len(log), "tail": log[-5:]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    parser.add_argument("--devices", type=int, default=SoakConfig.devices)
    parser.add_argument("--duration", type=float, default=SoakConfig.duration_s,
                        help="measured seconds (after the warm-up)")
    parser.add_argument("--warmup", type=float, default=SoakConfig.warmup_s)
    parser.add_argument("--batch-records", type=int, default=SoakConfig.batch_records)
    parser.add_argument("--rate", type=float, default=SoakConfig.rate,
                        help="fleet records/s to pace at (default 0: as fast as acknowledged)")
    parser.add_argument("--sample-interval", type=float, default=SoakConfig.sample_interval_s,
                        help="seconds between one device's samples (0: no samples)")
    parser.add_argument("--db-url", default=None,
                        help="a PostgreSQL server (postgresql+psycopg://user@127.0.0.1:5432/db):"
                             " the bench creates a throwaway database on it and drops it after")
    parser.add_argument("--hub-workers", type=int, default=SoakConfig.hub_workers,
                        help="hub processes (edgeloop hub serve --workers); the reference "
                             "ingest bench runs one")
    parser.add_argument("--reference", type=float, default=None, metavar="RECORDS_PER_S",
                        help="the ingest rate to hold the soak against (default: run "
                             "bench_hub_ingest.py on this machine first and use its rate)")
    args = parser.parse_args()
    try:
        config = SoakConfig(devices=args.devices, duration_s=args.duration,
                            warmup_s=args.warmup, batch_records=args.batch_records,
                            rate=args.rate, sample_interval_s=args.sample_interval,
                            db_url=args.db_url, hub_workers=args.hub_workers)
    except ValueError as exc:
        parser.error(str(exc))
    with tempfile.TemporaryDirectory(prefix="fleet_soak_") as tmp:
        result = run(config, Path(tmp), args.reference)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"fleet soak ({result['db']}, {config.devices} devices, {config.duration_s:.0f} s): "
              f"{result['records_per_s']} records/s ({result['rate_vs_ingest_bench']:.0%} of the "
              f"ingest bench), {result['samples_per_s']} samples/s, telemetry p99 "
              f"{result['latency']['telemetry']['p99_ms']} ms, errors {result['errors']}, "
              f"hub RSS growth {result['hub_rss']['growth_pct']}%, met {result['met']}")


if __name__ == "__main__":
    main()
