"""Store-and-forward to the hub: uploads the spool on its own thread, deletes rows once stored.

Inference never waits on it: the agent only writes to the spool, and this thread reads from it.
"""

from __future__ import annotations

import gzip
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx

from edge_runtime.contract import (
    HEARTBEAT_PATH,
    SAMPLES_PATH,
    TELEMETRY_PATH,
    DeviceStatus,
    FrameStats,
    SampleMeta,
    TelemetryBatch,
)
from edge_runtime.outbox.spool import Spool
from edge_runtime.outbox.uplink_policy import (
    UplinkConfig,
    UplinkError,
    Verdict,
    backoff_delay,
    classify,
)

log = logging.getLogger(__name__)

GZIP_LEVEL = 6  # about as small as 9 on JSON, at a fraction of the CPU
MAX_REASON_CHARS = 300  # of a hub's error body, kept for logs and the heartbeat's last_error


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    reason: str  # "HTTP 422: ..." or the transport error, for logs


@dataclass(frozen=True)
class DrainResult:
    sent_telemetry: int = 0
    sent_samples: int = 0
    rejected_telemetry: int = 0
    rejected_samples: int = 0
    failed: Answer | None = None  # the answer that stopped the pass (the uplink backs off)
    more_pending: bool = False  # frames were left for the next pass

    def __add__(self, other: DrainResult) -> DrainResult:
        return DrainResult(
            self.sent_telemetry + other.sent_telemetry, self.sent_samples + other.sent_samples,
            self.rejected_telemetry + other.rejected_telemetry,
            self.rejected_samples + other.rejected_samples,
            self.failed or other.failed, self.more_pending or other.more_pending)


@dataclass(frozen=True)
class UplinkStats:
    sent_telemetry: int  # acknowledged by the hub, since this uplink started
    sent_samples: int
    rejected_telemetry: int
    rejected_samples: int
    failed_requests: int
    heartbeats_sent: int
    last_error: str | None  # the latest failure, for DeviceStatus.last_error


class Uplink:
    """Uploads pending telemetry, then frames, then heartbeats, from one background thread."""

    def __init__(self, spool: Spool, config: UplinkConfig,
                 device_status: Callable[[], DeviceStatus] | None = None, *,
                 rng: random.Random | None = None) -> None:
        self.spool = spool
        self.config = config
        self._device_status = device_status
        self._rng = rng or random.Random()
        self._client = httpx.Client(
            base_url=config.hub_url.rstrip("/"),
            headers={"Authorization": f"Bearer {config.token}",
                     "User-Agent": "edgeloop-edge"},
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            trust_env=False,  # settings come from our config, never from the environment
        )
        self._stop = threading.Event()
        self._drain_lock = threading.Lock()  # one pass at a time, or rows would go out twice
        self._thread: threading.Thread | None = None
        self._totals = DrainResult()
        self._failed_requests = 0
        self._heartbeats = 0
        self._last_error: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise UplinkError("uplink already started")
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Asks the thread to finish its request in flight and end; True once it has."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def close(self) -> None:
        if self.stop(timeout=self.config.timeout_s + self.config.connect_timeout_s):
            self._client.close()

    def __enter__(self) -> Uplink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stats(self) -> UplinkStats:
        t = self._totals
        return UplinkStats(t.sent_telemetry, t.sent_samples, t.rejected_telemetry,
                           t.rejected_samples, self._failed_requests, self._heartbeats,
                           self._last_error)

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        next_drain = next_heartbeat = time.monotonic()
        while not self._stop.is_set():
            if self._device_status is not None and time.monotonic() >= next_heartbeat:
                self.send_heartbeat()
                next_heartbeat = time.monotonic() + self.config.heartbeat_s
            if time.monotonic() >= next_drain:
                result = self._guarded_drain()
                attempt = attempt + 1 if result.failed else 0
                next_drain = time.monotonic() + self._pause(result, attempt)
            wake_at = min(next_drain, next_heartbeat if self._device_status else next_drain)
            self._stop.wait(max(0.0, wake_at - time.monotonic()))

    def _pause(self, result: DrainResult, attempt: int) -> float:
        if result.failed:
            cfg = self.config
            return backoff_delay(attempt - 1, cfg.backoff_base_s, cfg.backoff_cap_s,
                                 self._rng if cfg.jitter else None)
        return 0.0 if result.more_pending else self.config.idle_poll_s

    def _guarded_drain(self) -> DrainResult:
        # A bug or a disk error must not end the thread that carries the device's data home.
        try:
            return self._drain(interruptible=True)
        except Exception as exc:
            log.exception("uplink pass failed")
            self._last_error = f"{type(exc).__name__}: {exc}"[:500]
            return DrainResult(failed=Answer(Verdict.RETRY, self._last_error))

    # -- one pass ------------------------------------------------------------------------------

    def drain_once(self) -> DrainResult:
        """Sends the telemetry pending now, then up to samples_per_pass frames; stops on trouble.

        Safe to call beside the running thread (passes take turns) and after stop().
        """
        return self._drain(interruptible=False)

    def flush(self, deadline_s: float = 30.0) -> DrainResult:
        """Drains pass after pass until nothing is pending, a pass fails, or the deadline passes.

        For a clean exit: what the last seconds logged goes out before the process ends.
        """
        until = time.monotonic() + deadline_s
        total = self.drain_once()
        while total.more_pending and not total.failed and time.monotonic() < until:
            result = self.drain_once()
            total = replace(total + result, more_pending=result.more_pending)
        return total

    def _drain(self, interruptible: bool) -> DrainResult:
        with self._drain_lock:
            result = self._drain_telemetry(interruptible)
            if not result.failed:
                result = result + self._drain_samples(interruptible)
            self._totals = self._totals + replace(result, failed=None, more_pending=False)
        return result

    def _drain_telemetry(self, interruptible: bool) -> DrainResult:
        total = DrainResult()
        while not (interruptible and self._stop.is_set()):
            rows = self.spool.pending_telemetry(self.config.batch_size)
            if not rows:
                break
            own = [(row_id, r) for row_id, r in rows if r.device_id == self.config.device_id]
            total = total + self._reject_foreign(len(rows) - len(own), rows)
            total = total + self._send_telemetry(own)
            if total.failed or len(rows) < self.config.batch_size:
                break
        return total

    def _reject_foreign(self, count: int, rows: list[tuple[int, FrameStats]]) -> DrainResult:
        # The hub authenticates one device per token; records of another id can never be sent.
        if not count:
            return DrainResult()
        foreign = [row_id for row_id, r in rows if r.device_id != self.config.device_id]
        log.error("rejecting %d spooled records of another device id", count)
        self.spool.reject_telemetry(foreign)
        return DrainResult(rejected_telemetry=count)

    def _send_telemetry(self, rows: Sequence[tuple[int, FrameStats]]) -> DrainResult:
        """Posts rows as one batch; a refused batch is halved until the bad records are alone."""
        if not rows:
            return DrainResult()
        answer = self._post_telemetry([record for _, record in rows])
        row_ids = [row_id for row_id, _ in rows]
        if answer.verdict is Verdict.STORED:
            self.spool.ack_telemetry(row_ids)
            return DrainResult(sent_telemetry=len(rows))
        if answer.verdict in (Verdict.REJECTED, Verdict.TOO_LARGE) and len(rows) > 1:
            # One invalid record fails the whole batch at the hub; bisect to keep the others.
            half = len(rows) // 2
            first = self._send_telemetry(rows[:half])
            return first if first.failed else first + self._send_telemetry(rows[half:])
        if answer.verdict in (Verdict.REJECTED, Verdict.TOO_LARGE):
            log.error("hub rejected telemetry %s: %s", rows[0][1].record_id, answer.reason)
            self.spool.reject_telemetry(row_ids)
            return DrainResult(rejected_telemetry=len(rows))
        return DrainResult(failed=answer)

    def _drain_samples(self, interruptible: bool) -> DrainResult:
        total = DrainResult()
        rows = self.spool.pending_samples(self.config.samples_per_pass)
        for row_id, meta, jpeg in rows:
            if interruptible and self._stop.is_set():
                return total
            total = total + self._send_sample(row_id, meta, jpeg)
            if total.failed:
                return total
        more = len(rows) == self.config.samples_per_pass
        return total + DrainResult(more_pending=more)

    def _send_sample(self, row_id: int, meta: SampleMeta, jpeg: bytes) -> DrainResult:
        answer = self._post_sample(meta, jpeg)
        if answer.verdict is Verdict.STORED:
            self.spool.ack_samples([row_id])
            return DrainResult(sent_samples=1)
        if answer.verdict in (Verdict.REJECTED, Verdict.TOO_LARGE):
            log.error("hub rejected sample %s: %s", meta.record_id, answer.reason)
            self.spool.reject_samples([row_id])
            return DrainResult(rejected_samples=1)
        return DrainResult(failed=answer)

    def send_heartbeat(self) -> bool:
        """Posts the agent's DeviceStatus once; True when the hub took it."""
        if self._device_status is None:
            raise UplinkError("no device_status callable was given")
        try:
            status = self._device_status()
        except Exception:
            log.exception("building the device status failed")
            return False
        answer = self._post(HEARTBEAT_PATH, content=status.model_dump_json().encode(),
                            headers={"Content-Type": "application/json"})
        if answer.verdict is Verdict.STORED:
            self._heartbeats += 1
            return True
        log.warning("heartbeat not taken: %s", answer.reason)
        return False

    # -- HTTP ----------------------------------------------------------------------------------

    def _post_telemetry(self, records: list[FrameStats]) -> Answer:
        batch = TelemetryBatch(device_id=self.config.device_id, sent_at=datetime.now(UTC),
                               records=records)
        body = gzip.compress(batch.model_dump_json().encode(), compresslevel=GZIP_LEVEL)
        return self._post(TELEMETRY_PATH, content=body,
                          headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})

    def _post_sample(self, meta: SampleMeta, jpeg: bytes) -> Answer:
        filename = f"{meta.device_id}-{meta.frame_id}.jpg"
        return self._post(SAMPLES_PATH, data={"meta": meta.model_dump_json()},
                          files={"image": (filename, jpeg, "image/jpeg")})

    def _post(self, path: str, *, content: bytes | None = None,
              headers: dict[str, str] | None = None, data: dict[str, str] | None = None,
              files: dict[str, tuple[str, bytes, str]] | None = None) -> Answer:
        try:
            response = self._client.post(path, content=content, headers=headers, data=data,
                                         files=files)
        except httpx.TransportError as exc:  # timeouts, refused connections, dropped sockets
            return self._failure(Answer(Verdict.RETRY, f"{path}: {type(exc).__name__}: {exc}"))
        answer = Answer(classify(response.status_code),
                        f"{path}: HTTP {response.status_code}: "
                        f"{response.text[:MAX_REASON_CHARS]}")
        return answer if answer.verdict is Verdict.STORED else self._failure(answer)

    def _failure(self, answer: Answer) -> Answer:
        self._failed_requests += 1
        self._last_error = answer.reason[:500]
        if answer.verdict is Verdict.UNAUTHORIZED:
            log.error("hub refused this device's token (%s); keeping records, backing off",
                      answer.reason)
        elif answer.verdict is Verdict.RETRY:
            log.warning("hub unreachable or failing (%s); will retry", answer.reason)
        return answer
