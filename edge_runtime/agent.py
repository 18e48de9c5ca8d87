"""The device agent's loop: capture, inference, telemetry, sampling and spooling, overlapped.

Capture runs on its own thread ahead of inference, and the monitor (telemetry, sampling
decision, hand-off to the spool) on another a frame or two behind it, overlapping the next
frame's inference; the spool writer and the uplink have their own threads too, so the inference
thread only prepares frames and runs the model. With model updates on
(`edge_runtime.update.loop`), the model is swapped between two frames.
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

import numpy as np

from edge_runtime.contract import DeviceStatus, FrameStats, UpdateReport
from edge_runtime.detector import Detector, Inference, ModelInfo
from edge_runtime.outbox.spool import Spool
from edge_runtime.outbox.writer import SpoolWriter
from edge_runtime.sampling.frame import frame_view, grey_hash
from edge_runtime.sampling.rules import to_sample_meta
from edge_runtime.sampling.sampler import Sampler
from edge_runtime.sources import CapturedFrame
from edge_runtime.telemetry import ImageStats, UncertaintyBand, frame_stats, image_stats, luma

FRAME_ID_BLOCK = 1000  # frame ids reserved from the spool at a time (one commit per block)
CAPTURE_AHEAD = 4  # frames captured ahead of inference
MONITOR_BEHIND = 8  # frames inferred, not yet monitored, before inference waits for the monitor
JOIN_TIMEOUT_S = 5.0  # a capture thread finishes its current frame within this


@dataclass(frozen=True)
class Look:
    """What the monitor reads from the frame's thumbnail: image statistics and its luma."""

    image: ImageStats
    grey: np.ndarray  # the thumbnail's luma, hashed only if the sampler needs it

    @classmethod
    def at(cls, thumbnail: np.ndarray) -> Look:
        grey = luma(thumbnail)
        return cls(image_stats(thumbnail, grey), grey)


@dataclass(frozen=True)
class MonitorResult:
    stats: FrameStats
    kept: bool  # the sampler kept this frame for labelling


@dataclass(frozen=True)
class Step:
    result: MonitorResult
    infer_ms: float  # letterbox, network, decode
    monitor_ms: float  # thumbnail, telemetry, sampling decision, hand-off to the spool
    inference: Inference


class ModelUpdates(Protocol):
    """Model updates beside the agent (`edge_runtime.update.loop.UpdateLoop`)."""

    def after_frame(self, image: np.ndarray, inference: Inference) -> Detector | None:
        """Called between frames; a Detector returned serves from the next frame on."""
        ...

    def report(self) -> UpdateReport: ...


class Monitor:
    """The per-frame work after inference: telemetry, sampling decision, hand-off to the spool."""

    def __init__(self, sampler: Sampler, writer: SpoolWriter, *, device_id: str,
                 band: UncertaintyBand) -> None:
        self.sampler, self.writer = sampler, writer
        self.device_id, self.band = device_id, band
        self._next_id = 0
        self._ids_left = 0

    def _frame_id(self) -> int:
        if not self._ids_left:
            self._next_id = self.writer.spool.reserve_frame_ids(FRAME_ID_BLOCK)
            self._ids_left = FRAME_ID_BLOCK
        self._ids_left -= 1
        self._next_id += 1
        return self._next_id - 1

    def __call__(self, frame: CapturedFrame, inference: Inference, look: Look, info: ModelInfo
                 ) -> MonitorResult:
        """`info`: the model that produced `inference` (its version goes into the telemetry)."""
        frame_id = self._frame_id()
        stats = frame_stats(inference, info.names, device_id=self.device_id,
                            model_version=info.version, frame_id=frame_id,
                            captured_at=frame.captured_at, band=self.band, image=look.image)
        view = frame_view(inference, info.names, partial(grey_hash, look.grey))
        decision = self.sampler.decide(view, frame.captured_at)
        self.writer.submit(stats)
        if decision is not None:
            meta = to_sample_meta(decision, device_id=self.device_id,
                                  model_version=info.version, frame_id=frame_id)
            self.writer.submit_sample(meta, frame.image)  # JPEG-encoded on the writer's thread
        return MonitorResult(stats, decision is not None)


@dataclass(frozen=True)
class Progress:
    """What the agent logs every few seconds."""

    frames: int
    fps: float
    infer_ms_p50: float
    monitor_ms_p50: float
    kept: int
    committed: int
    spool_telemetry: int
    spool_samples: int

    def line(self) -> str:
        return (f"frames {self.frames}  {self.fps:.1f} fps  infer p50 {self.infer_ms_p50:.2f} ms"
                f"  monitor p50 {self.monitor_ms_p50:.3f} ms  kept {self.kept}  "
                f"committed {self.committed}  spool {self.spool_telemetry} stats / "
                f"{self.spool_samples} frames")


def captured_ahead(frames: Iterable[CapturedFrame], depth: int = CAPTURE_AHEAD
                   ) -> Iterator[CapturedFrame]:
    """Read frames on a separate thread so capture overlaps inference."""
    buffer: queue.Queue[CapturedFrame | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        buffer.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(None)
        except BaseException as error:  # handed to the consumer, which re-raises it
            buffer.put(error)

    thread = threading.Thread(target=produce, name="capture", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # Wait for the capture thread: one left inside OpenCV at interpreter exit aborts it.
        thread.join(timeout=JOIN_TIMEOUT_S)


class MonitorThread:
    """Runs the monitor on its own thread, up to `depth` frames behind inference, so telemetry
    and the sampling decision overlap the next frame's inference. Frames are monitored in the
    order they were inferred; an error in the monitor is raised to the inference thread."""

    def __init__(self, monitor: Monitor, done: Callable[[MonitorResult, float], None], *,
                 depth: int = MONITOR_BEHIND) -> None:
        self.monitor, self._done = monitor, done
        self._queue: queue.Queue[tuple[CapturedFrame, Inference, ModelInfo] | None] = (
            queue.Queue(maxsize=depth))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._thread.start()

    def submit(self, frame: CapturedFrame, inference: Inference, info: ModelInfo) -> None:
        """Hands a frame over; waits only while `depth` frames are waiting already."""
        self._raise()
        self._queue.put((frame, inference, info))

    def close(self) -> None:
        """Monitors every frame handed over, then stops the thread."""
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain, so a producer waiting on a full queue is released
            frame, inference, info = item
            try:
                t0 = time.perf_counter()
                result = self.monitor(frame, inference, Look.at(inference.thumbnail), info)
                self._done(result, inference.thumb_ms + 1000 * (time.perf_counter() - t0))
            except BaseException as error:  # raised on the inference thread
                self._error = error


class Agent:
    def __init__(self, detector: Detector, monitor: Monitor, spool: Spool, *,
                 updates: ModelUpdates | None = None) -> None:
        self.detector, self.monitor, self.spool = detector, monitor, spool
        self.updates = updates
        self.started = time.monotonic()
        self.frames = 0
        self.kept = 0
        self._infer_ms: deque[float] = deque(maxlen=500)
        self._monitor_ms: deque[float] = deque(maxlen=500)
        self._timings_lock = threading.Lock()  # the monitor thread appends, progress reads

    def run(self, frames: Iterable[CapturedFrame], *, max_frames: int | None = None,
            log: Callable[[Progress], None] | None = None, log_every_s: float = 5.0) -> Progress:
        """Runs until the source ends or `max_frames`; every frame inferred is monitored (its
        telemetry handed to the spool writer) before this returns."""
        window_start, window_frames = time.monotonic(), 0
        monitoring = MonitorThread(self.monitor, self._monitored)
        try:
            for frame in captured_ahead(frames):
                t0 = time.perf_counter()
                inference = self.detector(frame.image)
                infer_ms = 1000 * (time.perf_counter() - t0) - inference.thumb_ms
                monitoring.submit(frame, inference, self.detector.info)
                if self.updates is not None:
                    swapped = self.updates.after_frame(frame.image, inference)
                    if swapped is not None:
                        self.use(swapped)
                with self._timings_lock:
                    self._infer_ms.append(infer_ms)
                self.frames += 1
                window_frames += 1
                now = time.monotonic()
                if log and now - window_start >= log_every_s:
                    log(self.progress(window_frames / (now - window_start)))
                    window_start, window_frames = now, 0
                if max_frames is not None and self.frames >= max_frames:
                    break
        finally:
            monitoring.close()
        elapsed = max(time.monotonic() - window_start, 1e-9)
        return self.progress(window_frames / elapsed if window_frames else 0.0)

    def _monitored(self, result: MonitorResult, monitor_ms: float) -> None:
        self.kept += result.kept
        with self._timings_lock:
            self._monitor_ms.append(monitor_ms)

    def step(self, frame: CapturedFrame) -> Step:
        """One frame through the detector and the monitor on this thread, each timed."""
        t0 = time.perf_counter()
        prepared = self.detector.prepare(frame.image)
        t1 = time.perf_counter()
        look = Look.at(prepared.thumbnail)  # before inference evicts it from the cache
        t2 = time.perf_counter()
        inference = self.detector.infer(prepared)
        t3 = time.perf_counter()
        result = self.monitor(frame, inference, look, self.detector.info)
        t4 = time.perf_counter()
        thumb_s = prepared.thumb_ms / 1000  # taken inside prepare, but it is monitoring work
        return Step(result, 1000 * (t1 - t0 - thumb_s + t3 - t2),
                    1000 * (thumb_s + t2 - t1 + t4 - t3), inference)

    def use(self, detector: Detector) -> None:
        """Serve `detector` from the next frame on (its version goes into the telemetry)."""
        self.detector = detector

    def progress(self, fps: float) -> Progress:
        spool = self.spool.stats()
        with self._timings_lock:
            infer_ms, monitor_ms = list(self._infer_ms), list(self._monitor_ms)
        return Progress(
            frames=self.frames,
            fps=fps,
            infer_ms_p50=statistics.median(infer_ms) if infer_ms else 0.0,
            monitor_ms_p50=statistics.median(monitor_ms) if monitor_ms else 0.0,
            kept=self.kept,
            committed=self.monitor.writer.committed,
            spool_telemetry=spool.pending_telemetry,
            spool_samples=spool.pending_samples,
        )

    def status(self, last_error: str | None = None) -> DeviceStatus:
        """The heartbeat the uplink sends."""
        spool = self.spool.stats()
        update = self.updates.report() if self.updates is not None else None
        dropped = {k: v for k, v in spool.counters.items() if k.startswith(("dropped", "rej"))}
        dropped.update({f"sampler.{k}": v
                        for k, v in self.monitor.sampler.counters().as_dict().items()})
        return DeviceStatus(
            device_id=self.monitor.device_id,
            sent_at=datetime.now(UTC),
            model_version=self.detector.info.version,
            release_version=(update.version or 0) if update is not None else 0,
            uptime_s=time.monotonic() - self.started,
            frames_seen=self.frames,
            spool_telemetry=spool.pending_telemetry,
            spool_samples=spool.pending_samples,
            spool_bytes=spool.bytes,
            dropped=dropped,
            last_error=last_error,
            update=update,
        )
