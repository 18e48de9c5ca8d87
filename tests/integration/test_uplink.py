"""The uplink against a real HTTP server on 127.0.0.1 that fails, hangs, refuses and recovers."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import gzip
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge_runtime.contract import (
    DeviceStatus,
    FrameStats,
    SampleMeta,
    SamplePolicy,
    TelemetryBatch,
)
from edge_runtime.outbox.budget import SpoolBudget, SpoolCounter
from edge_runtime.outbox.spool import Spool
from edge_runtime.outbox.uplink import Uplink
from edge_runtime.outbox.uplink_policy import UplinkConfig
from edge_runtime.outbox.writer import SpoolWriter

DEVICE = "cam-7"
TOKEN = "device-token-7"
CLIENT_TIMEOUT_S = 1.5  # generous: on a loaded 2-core CI machine a plain answer can take 0.3 s
HANG_S = 5.0  # longer than the client waits
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def frame_stats(frame_id: int) -> FrameStats:
    return FrameStats(
        device_id=DEVICE, model_version="m1", frame_id=frame_id,
        captured_at=T0 + timedelta(milliseconds=33 * frame_id),
        pre_ms=1.0, infer_ms=8.5, post_ms=0.4, detections=1, class_counts={"bolt": 1},
        conf_max=0.9, conf_mean=0.9, conf_min=0.9, uncertain=0,
        box_area_mean=0.02, box_area_min=0.02, box_area_max=0.02, box_aspect_mean=1.0,
        brightness=0.5, contrast=0.2, sharpness=120.0, saturation=0.3,
    )


def sample_meta(frame_id: int) -> SampleMeta:
    return SampleMeta(
        device_id=DEVICE, model_version="m1", frame_id=frame_id,
        captured_at=T0 + timedelta(milliseconds=33 * frame_id),
        policy=SamplePolicy.RARE_CLASS, uncertainty=0.4, width=64, height=48, predictions=[],
    )


def jpeg(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


@dataclass
class RecordingHub:
    """What the hub will do, minimally: parse with the contract, dedupe by record_id."""

    telemetry: dict[str, FrameStats] = field(default_factory=dict)
    deliveries: Counter[str] = field(default_factory=Counter)
    samples: dict[str, tuple[SampleMeta, bytes, str]] = field(default_factory=dict)
    heartbeats: list[DeviceStatus] = field(default_factory=list)
    script: list[str] = field(default_factory=list)  # per request: "500", "hang", "store+500"
    refuse_frames: set[int] = field(default_factory=set)  # answered 422, as invalid
    url: str = ""
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, '{"detail": "bad token"}'
        with self.lock:
            fault = self.script.pop(0) if self.script else ""
        if fault == "hang":
            self.released.wait(HANG_S)
            return 500, "too late"
        if fault == "500":
            return 500, "hub down"
        route = {"/v1/telemetry": self.take_telemetry, "/v1/samples": self.take_sample,
                 "/v1/heartbeat": self.take_heartbeat}[path]
        try:
            status, reply = route(headers, body)
        except ValidationError as exc:
            return 422, exc.json()
        return (500, "stored, but the answer is lost") if fault == "store+500" else (status, reply)

    def take_telemetry(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        assert headers["content-encoding"] == "gzip"
        assert headers["content-type"] == "application/json"
        batch = TelemetryBatch.model_validate_json(gzip.decompress(body))
        refused = [r.frame_id for r in batch.records if r.frame_id in self.refuse_frames]
        if refused:
            return 422, f'{{"detail": "invalid frames {refused}"}}'
        with self.lock:
            for record in batch.records:
                self.deliveries[record.record_id] += 1
                self.telemetry.setdefault(record.record_id, record)
        return 200, f'{{"stored": {len(batch.records)}}}'

    def take_sample(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        head = f"Content-Type: {headers['content-type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        parts = {part.get_param("name", header="content-disposition"): part
                 for part in message.iter_parts()}
        meta = SampleMeta.model_validate_json(part_bytes(parts["meta"]))
        image = parts["image"]
        with self.lock:
            self.samples.setdefault(meta.record_id, (meta, part_bytes(image),
                                                     image.get_content_type()))
        return 201, "{}"

    def take_heartbeat(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        with self.lock:
            self.heartbeats.append(DeviceStatus.model_validate_json(body))
        return 204, ""


def part_bytes(part: email.message.Message) -> bytes:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each small reply waits out a delayed ACK (40 ms)
    server: HubServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, reply = self.server.hub.handle(self.path, headers, body)
        payload = reply.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting, as it should

    def log_message(self, format: str, *args: object) -> None:
        pass


class HubServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: RecordingHub


@pytest.fixture
def hub() -> Iterator[RecordingHub]:
    server = HubServer(("127.0.0.1", 0), HubHandler)
    server.hub = RecordingHub(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.hub
    server.hub.released.set()
    server.shutdown()
    server.server_close()


def config(url: str, **overrides: object) -> UplinkConfig:
    fields: dict = dict(hub_url=url, device_id=DEVICE, token=TOKEN, timeout_s=CLIENT_TIMEOUT_S,
                        connect_timeout_s=CLIENT_TIMEOUT_S, backoff_base_s=0.02,
                        backoff_cap_s=0.2, idle_poll_s=0.05, heartbeat_s=0.1)
    return UplinkConfig(**(fields | overrides))


def closed_port() -> int:
    """A port nothing listens on: connections to it are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def open_spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool.db", SpoolBudget())


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


def test_everything_arrives_exactly_once_through_errors_and_hangs(
        tmp_path: Path, hub: RecordingHub) -> None:
    records = [frame_stats(i) for i in range(1200)]
    hub.script = ["500", "hang", "store+500", "500", "hang"]
    with open_spool(tmp_path) as spool, Uplink(spool, config(hub.url)) as uplink:
        spool.add_telemetry(records)
        for i in range(3):
            spool.add_sample(sample_meta(i), jpeg(i))
        uplink.start()
        wait_for(lambda: spool.stats().pending_telemetry + spool.stats().pending_samples == 0)
        stats = uplink.stats()
    assert hub.telemetry == {r.record_id: r for r in records}
    assert max(hub.deliveries.values()) == 2, "a stored-but-unanswered batch is sent again"
    assert set(hub.samples) == {f"{DEVICE}/{i}" for i in range(3)}
    assert stats.failed_requests == 5
    assert (stats.sent_telemetry, stats.sent_samples) == (1200, 3)


def test_a_restarted_uplink_sends_what_an_earlier_one_could_not(
        tmp_path: Path, hub: RecordingHub) -> None:
    unreachable = f"http://127.0.0.1:{closed_port()}"
    with open_spool(tmp_path) as spool, Uplink(spool, config(unreachable)) as uplink:
        spool.add_telemetry([frame_stats(i) for i in range(50)])
        assert uplink.drain_once().failed is not None
        assert spool.stats().pending_telemetry == 50
    with open_spool(tmp_path) as spool, Uplink(spool, config(hub.url)) as uplink:
        result = uplink.drain_once()
        pending = spool.stats().pending_telemetry
    assert (result.sent_telemetry, pending, len(hub.telemetry)) == (50, 0, 50)


def test_refused_records_are_counted_and_do_not_block_later_ones(
        tmp_path: Path, hub: RecordingHub) -> None:
    hub.refuse_frames = {3}
    with open_spool(tmp_path) as spool, Uplink(spool, config(hub.url)) as uplink:
        spool.add_telemetry([frame_stats(i) for i in range(10)])
        first = uplink.drain_once()
        spool.add_telemetry([frame_stats(i) for i in range(10, 15)])
        second = uplink.drain_once()
        spool_stats = spool.stats()
    assert (first.sent_telemetry, first.rejected_telemetry) == (9, 1)
    assert second.sent_telemetry == 5
    assert sorted(r.frame_id for r in hub.telemetry.values()) == [*range(3), *range(4, 15)]
    assert spool_stats.pending_telemetry == 0
    assert spool_stats.counters[SpoolCounter.REJECTED_TELEMETRY] == 1


def test_a_bad_token_keeps_the_records_and_says_so(tmp_path: Path, hub: RecordingHub) -> None:
    with open_spool(tmp_path) as spool, \
            Uplink(spool, config(hub.url, token="wrong-token")) as uplink:
        spool.add_telemetry([frame_stats(i) for i in range(5)])
        result = uplink.drain_once()
        pending = spool.stats().pending_telemetry
        last_error = uplink.stats().last_error
    assert result.failed is not None and pending == 5 and not hub.telemetry
    assert last_error is not None and "401" in last_error


def test_samples_arrive_as_multipart_with_their_meta_and_jpeg(
        tmp_path: Path, hub: RecordingHub) -> None:
    images = {i: jpeg(i) for i in range(20)}
    with open_spool(tmp_path) as spool, \
            Uplink(spool, config(hub.url, samples_per_pass=8)) as uplink:
        for i, image in images.items():
            spool.add_sample(sample_meta(i), image)
        passes = [uplink.drain_once() for _ in range(3)]
        pending = spool.stats().pending_samples
    assert [p.more_pending for p in passes] == [True, True, False]
    assert pending == 0
    assert hub.samples == {f"{DEVICE}/{i}": (sample_meta(i), images[i], "image/jpeg")
                           for i in images}


def test_flush_sends_everything_pending_before_an_exit(tmp_path: Path, hub: RecordingHub) -> None:
    with open_spool(tmp_path) as spool, \
            Uplink(spool, config(hub.url, samples_per_pass=4)) as uplink:
        spool.add_telemetry([frame_stats(i) for i in range(30)])
        for i in range(19):
            spool.add_sample(sample_meta(i), jpeg(i))
        result = uplink.flush()
        left = spool.stats()
    assert (result.sent_telemetry, result.sent_samples, result.more_pending) == (30, 19, False)
    assert (left.pending_telemetry, left.pending_samples) == (0, 0)
    assert len(hub.samples) == 19


def test_heartbeats_carry_the_device_status_the_agent_builds(
        tmp_path: Path, hub: RecordingHub) -> None:
    def status() -> DeviceStatus:
        stats = spool.stats()
        return DeviceStatus(device_id=DEVICE, sent_at=datetime.now(UTC), model_version="m1",
                            uptime_s=1.0, frames_seen=10,
                            spool_telemetry=stats.pending_telemetry,
                            spool_samples=stats.pending_samples, spool_bytes=stats.bytes,
                            dropped={"samples": stats.dropped_samples})

    with open_spool(tmp_path) as spool, Uplink(spool, config(hub.url), status) as uplink:
        uplink.start()
        wait_for(lambda: len(hub.heartbeats) >= 3, timeout=5.0)
    assert all(h.device_id == DEVICE and h.spool_bytes > 0 for h in hub.heartbeats)


def test_the_producer_keeps_its_pace_while_the_hub_hangs(
        tmp_path: Path, hub: RecordingHub) -> None:
    hub.script = ["hang", "hang", "hang"]
    period_s, duration_s = 0.002, 1.5
    slowest_submit = 0.0
    produced = 0
    with open_spool(tmp_path) as spool, Uplink(spool, config(hub.url)) as uplink:
        writer = SpoolWriter(spool, flush_every=100, flush_interval_s=0.05)
        uplink.start()
        start = time.monotonic()
        while time.monotonic() - start < duration_s:
            began = time.monotonic()
            assert writer.submit(frame_stats(produced))
            slowest_submit = max(slowest_submit, time.monotonic() - began)
            produced += 1
            time.sleep(period_s)
        writer.close()
        wait_for(lambda: spool.stats().pending_telemetry == 0)
        hangs = uplink.stats().failed_requests
    assert hangs == 3, "the hub should have hung while the producer ran"
    assert slowest_submit < CLIENT_TIMEOUT_S / 2, "a submit waited on the network"
    assert produced > 0.5 * duration_s / period_s
    assert writer.committed == produced == len(hub.telemetry)
