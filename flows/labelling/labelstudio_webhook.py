"""Collect labels soon after annotators finish: a small HTTP endpoint for Label Studio's
ANNOTATION_CREATED webhook that triggers collection once the annotators pause.

One dataset version per burst of work, not one per frame: each event only marks the project
dirty, and collection runs when no event has arrived for `quiet_s` seconds. Collection itself is
idempotent, so a lost or repeated event costs nothing; polling (`collect-labels --every`) works
without any webhook. Label Studio refuses webhooks to 127.0.0.1 unless its server runs with
SSRF_PROTECTION_ENABLED=false.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET_HEADER = "X-Edgeloop-Webhook-Secret"
ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED")
MAX_BODY_BYTES = 4 * 1024 * 1024  # a task with its annotation and predictions fits easily
log = logging.getLogger(__name__)


def is_new_annotation(event: Mapping[str, Any], project_id: int) -> bool:
    """An event saying that a task of our project got a (non-cancelled) annotation."""
    if event.get("action") not in ACTIONS:
        return False
    project = event.get("project")
    if not isinstance(project, Mapping) or project.get("id") != project_id:
        return False
    annotation = event.get("annotation")
    return not (isinstance(annotation, Mapping) and annotation.get("was_cancelled"))


class DebouncedCollector:
    """Calls `collect` once events have stopped arriving for `quiet_s` seconds."""

    def __init__(self, collect: Callable[[], Any], quiet_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.collect, self.quiet_s, self.clock = collect, quiet_s, clock
        self._lock = threading.Lock()
        self._last_event: float | None = None
        self.runs = 0
        self.last_error: str | None = None

    def notify(self) -> None:
        with self._lock:
            self._last_event = self.clock()

    def due(self) -> bool:
        with self._lock:
            return (self._last_event is not None
                    and self.clock() - self._last_event >= self.quiet_s)

    def run_if_due(self) -> bool:
        """Runs one collection if due; an error is logged and the events kept for a retry."""
        if not self.due():
            return False
        with self._lock:
            seen = self._last_event
        try:
            self.collect()
        except Exception as exc:  # the endpoint must outlive a failed collection
            self.last_error = str(exc)
            log.error("collection after webhook failed: %s", exc)
            return False
        with self._lock:
            if self._last_event == seen:  # events that came during the run wait for the next
                self._last_event = None
        self.runs += 1
        return True


def _handler(secret: str, project_id: int, collector: DebouncedCollector
             ) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._answer(200, {"status": "ok", "collections": collector.runs})
            else:
                self._answer(404, {"detail": "not found"})

        def do_POST(self) -> None:
            if self.path != "/labelstudio":
                self._answer(404, {"detail": "not found"})
                return
            if not hmac.compare_digest(self.headers.get(SECRET_HEADER, ""), secret):
                self._answer(401, {"detail": f"missing or wrong {SECRET_HEADER}"})
                return
            size = int(self.headers.get("Content-Length") or 0)
            if size > MAX_BODY_BYTES:
                self._answer(413, {"detail": f"body over {MAX_BODY_BYTES} bytes"})
                return
            try:
                event = json.loads(self.rfile.read(size) or b"{}")
            except ValueError:
                self._answer(400, {"detail": "body is not JSON"})
                return
            relevant = isinstance(event, dict) and is_new_annotation(event, project_id)
            if relevant:
                collector.notify()
            self._answer(200, {"queued": relevant})

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("webhook %s", format % args)

    return Handler


class WebhookEndpoint:
    """The endpoint and its collector thread; `start()` binds, `stop()` shuts both down."""

    def __init__(self, host: str, port: int, secret: str, project_id: int,
                 collector: DebouncedCollector, tick_s: float = 0.2) -> None:
        self.collector, self.tick_s = collector, tick_s
        self.server = ThreadingHTTPServer((host, port), _handler(secret, project_id, collector))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def _collect_loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.collector.run_if_due()

    def start(self) -> None:
        for target, name in ((self.server.serve_forever, "webhook-http"),
                             (self._collect_loop, "webhook-collect")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            thread.join(timeout=30)
