"""Commits the agent's records to the spool in batches, on its own thread.

The inference thread pays a list append per telemetry record (the writer is woken once per
batch, not per record) and one `put_nowait` per kept frame; JPEG encoding and SQLite commits
happen here, so inference never waits on disk.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial

import cv2
import numpy as np

from edge_runtime.contract import FrameStats, SampleMeta
from edge_runtime.outbox.budget import SpoolCounter, SpoolError
from edge_runtime.outbox.spool import Spool

log = logging.getLogger(__name__)

JPEG_QUALITY = 90  # frames handed over as arrays are encoded at this quality
_STOP = object()
_WAKE = object()  # telemetry is pending: a batch has started or filled up


class SpoolWriter:
    """Commits records in batches on its own thread; the producer never waits on it.

    Telemetry waits in a list until a batch of `flush_every` is full or its first record is
    `flush_interval_s` old; kept frames go through a queue. At most `queue_size` of each wait:
    beyond that a record is dropped and counted, so inference never waits on disk.
    """

    def __init__(self, spool: Spool, *, queue_size: int = 4096, flush_every: int = 256,
                 flush_interval_s: float = 0.5) -> None:
        if queue_size < 1 or flush_every < 1 or flush_interval_s <= 0:
            raise SpoolError(f"SpoolWriter needs queue_size >= 1, flush_every >= 1 and "
                             f"flush_interval_s > 0, got {queue_size}, {flush_every}, "
                             f"{flush_interval_s}")
        self.spool = spool
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self.queue_size = queue_size
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._pending: list[FrameStats] = []  # telemetry handed over, not yet taken
        self._pending_lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._committed = 0
        self._committed_samples = 0
        self._dropped = {SpoolCounter.DROPPED_QUEUE_FULL: 0,
                         SpoolCounter.DROPPED_QUEUE_FULL_SAMPLES: 0}
        self._dropped_persisted = dict(self._dropped)
        self.write_failures = 0  # batches lost because the spool refused a write
        self.last_error: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    @property
    def committed(self) -> int:
        """Telemetry records committed to disk by this writer (duplicates included)."""
        return self._committed

    @property
    def committed_samples(self) -> int:
        return self._committed_samples

    @property
    def dropped_queue_full(self) -> int:
        return self._dropped[SpoolCounter.DROPPED_QUEUE_FULL]

    @property
    def dropped_queue_full_samples(self) -> int:
        return self._dropped[SpoolCounter.DROPPED_QUEUE_FULL_SAMPLES]

    def submit(self, record: FrameStats) -> bool:
        """Hands one record over without blocking; False when it was dropped (queue full)."""
        if self._closed:
            raise SpoolError("SpoolWriter is closed")
        with self._pending_lock:
            pending = len(self._pending)
            if pending < self.queue_size:
                self._pending.append(record)
        if pending >= self.queue_size:
            return self._drop(SpoolCounter.DROPPED_QUEUE_FULL)
        if pending % self.flush_every == 0:  # a batch starts, or one more is full
            with contextlib.suppress(queue.Full):  # a full queue wakes the writer anyway
                self._queue.put_nowait(_WAKE)
        return True

    def submit_sample(self, meta: SampleMeta, image: bytes | np.ndarray) -> bool:
        """Queue a kept frame: JPEG bytes, or a BGR array that this thread encodes, so the
        inference thread never pays for JPEG compression."""
        return self._put((meta, image), SpoolCounter.DROPPED_QUEUE_FULL_SAMPLES)

    def close(self, timeout: float | None = None) -> None:
        """Commits everything queued, then stops the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(_STOP)  # waits only while the writer drains a full queue
        self._thread.join(timeout)

    def _put(self, item: object, drop_counter: SpoolCounter) -> bool:
        if self._closed:
            raise SpoolError("SpoolWriter is closed")
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            return self._drop(drop_counter)

    def _drop(self, counter: SpoolCounter) -> bool:
        with self._counts_lock:
            self._dropped[counter] += 1
        return False

    def _run(self) -> None:
        deadline = float("inf")  # when the oldest pending record must be committed
        while True:
            try:
                # Block without limit while no telemetry is pending.
                item = self._queue.get(timeout=None if deadline == float("inf")
                                       else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            if isinstance(item, tuple):
                self._write(partial(self._commit_sample, *item))
            # Commit full batches; the rest on the deadline (also while frames keep arriving)
            # and on stop.
            stop = item is _STOP
            while batch := self._take(everything=stop or time.monotonic() >= deadline):
                self._write(partial(self._commit_telemetry, batch))
            with self._pending_lock:
                pending = bool(self._pending)
            if not pending:
                deadline = float("inf")
            elif deadline == float("inf"):  # a batch has started
                deadline = time.monotonic() + self.flush_interval_s
            if stop:
                self._write(self._persist_drops)
                return

    def _take(self, *, everything: bool) -> list[FrameStats]:
        """The next batch to commit: `flush_every` records, or all that wait if `everything`."""
        with self._pending_lock:
            size = len(self._pending) if everything else self.flush_every
            if len(self._pending) < size or not size:
                return []
            batch, self._pending = self._pending[:size], self._pending[size:]
        return batch

    def _commit_telemetry(self, batch: list[FrameStats]) -> None:
        if batch:
            self.spool.add_telemetry(batch)
            self._committed += len(batch)
        self._persist_drops()

    def _commit_sample(self, meta: SampleMeta, image: bytes | np.ndarray) -> None:
        if isinstance(image, np.ndarray):
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise SpoolError(f"could not encode frame {meta.record_id} as JPEG")
            image = encoded.tobytes()
        self.spool.add_sample(meta, image)
        self._committed_samples += 1

    def _persist_drops(self) -> None:
        with self._counts_lock:
            news = {k: v - self._dropped_persisted[k] for k, v in self._dropped.items()}
            self._dropped_persisted = dict(self._dropped)
        for counter, n in news.items():
            self.spool.add_to_counter(counter, n)

    def _write(self, commit: Callable[[], None]) -> None:
        # One bad write (disk error, oversized JPEG) must not kill the thread that saves the rest.
        try:
            commit()
        except (sqlite3.Error, SpoolError, OSError) as exc:
            self.write_failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("spool write failed; the batch is lost")


