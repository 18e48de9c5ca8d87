"""Commits the agent's records to the spool in batches, on its own thread.

The inference thread pays one `put_nowait` per record; JPEG encoding and SQLite commits happen
here, so inference never waits on disk.
"""

from __future__ import annotations

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
from edge_runtime.spool import Spool, SpoolCounter, SpoolError

log = logging.getLogger(__name__)

JPEG_QUALITY = 90  # frames handed over as arrays are encoded at this quality
_STOP = object()


class SpoolWriter:
    """Commits records in batches on its own thread; the producer pays one put_nowait per record.

    When the queue is full the record is dropped and counted, so inference never waits on disk.
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
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
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
        """Queues one record without blocking; False when it was dropped (queue full)."""
        return self._put(record, SpoolCounter.DROPPED_QUEUE_FULL)

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
            with self._counts_lock:
                self._dropped[drop_counter] += 1
            return False

    def _run(self) -> None:
        batch: list[FrameStats] = []
        deadline = float("inf")
        while True:
            try:
                # Block without limit while nothing waits to be committed.
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic())
                                       if batch else None)
            except queue.Empty:
                item = None
            if isinstance(item, FrameStats):
                if not batch:
                    deadline = time.monotonic() + self.flush_interval_s
                batch.append(item)
            elif isinstance(item, tuple):
                self._write(partial(self._commit_sample, *item))
            # Flush on a full batch, on the deadline (also while frames keep arriving), on stop.
            due = bool(batch) and time.monotonic() >= deadline
            if item is _STOP or item is None or due or len(batch) >= self.flush_every:
                self._write(partial(self._commit_telemetry, batch))
                batch = []
            if item is _STOP:
                return

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


