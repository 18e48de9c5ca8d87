"""`edgeloop hub serve`: the hub in one process, or in several forked processes accepting on one
socket."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from hub.app import create_app
from hub.protocol import http_protocol
from hub.settings import HubSettings
from hub.state import Hub

log = logging.getLogger("hub")


def uvicorn_config(app: FastAPI, settings: HubSettings, *, host: str, port: int,
                   **options: Any) -> Any:
    """The uvicorn.Config every hub runs under (`edgeloop hub serve` and the tests' hub alike):
    the request head capped, idle keep-alive connections closed. No limit_concurrency: past it
    uvicorn answers 503 to devices that only retry; the database's busy timeout already sheds
    load that way, and connection counts belong to the load balancer in front."""
    import uvicorn

    protocol, head_bytes = http_protocol(settings.limits.head_bytes)
    return uvicorn.Config(app, host=host, port=port, http=protocol,
                          h11_max_incomplete_event_size=head_bytes,
                          timeout_keep_alive=settings.limits.keep_alive_s,
                          log_config=None, log_level="warning", server_header=False,
                          **{"access_log": settings.access_log, **options})


def serve(settings: HubSettings) -> None:
    """Runs the hub until interrupted: one process, or `settings.workers` forked processes
    accepting on one socket (each with its own database connections)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)

    def server(app: FastAPI, banner: str | None) -> uvicorn.Server:
        class Server(uvicorn.Server):
            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets)
                if self.started and banner:  # only once the socket is bound, so it is true
                    log.info("%s", banner)

        return Server(uvicorn_config(app, settings, host=settings.host, port=settings.port))

    def describe(hub: Hub, port: int) -> str:
        workers = f", {settings.workers} processes" if settings.workers > 1 else ""
        return (f"edgeloop hub on http://{settings.host}:{port} "
                f"(db {hub.db.describe()}, blobs {hub.blobs.url}{workers})")

    if settings.workers == 1:
        app = create_app(settings)
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after shutdown
            server(app, describe(app.state.hub, settings.port)).run()
    else:
        _serve_forked(settings, server, describe)
    log.info("edgeloop hub stopped")


def _serve_forked(settings: HubSettings, server: Callable[[FastAPI, str | None], Any],
                  describe: Callable[[Hub, int], str]) -> None:
    """The parent binds the port and forks the workers; SIGINT or SIGTERM to the parent, or a
    worker that ends, stops them all."""
    import signal
    import socket

    hub = Hub.open(settings)  # the schema, once, before any worker writes
    if hub.db.dialect == "sqlite":
        log.warning("%d hub processes share one SQLite file: it takes one writer at a time, so "
                    "they add no ingest throughput and queue on its lock (bench/RESULTS.md: "
                    "p99 6.7 s); use PostgreSQL (--db postgresql+psycopg://...) for "
                    "several processes", settings.workers)
    hub.db.dispose()  # no connection or thread may cross the fork
    listener = socket.create_server((settings.host, settings.port), backlog=2048)
    banner = describe(hub, listener.getsockname()[1])
    children = []
    for _ in range(settings.workers):
        pid = os.fork()
        if pid == 0:  # a worker: its own app, engine and event loop
            code = 0
            try:
                # The parent stops a worker with SIGTERM; uvicorn shuts down gracefully, then
                # re-raises it (SIG_DFL: the worker ends). A terminal's Ctrl-C reaches the whole
                # group: once uvicorn has handled it, it is ignored here.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                server(create_app(settings), None).run(sockets=[listener])
            except BaseException:
                log.exception("hub worker %d failed", os.getpid())
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    log.info("%s", banner)
    stop = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        signal.sigwait(stop)  # an interrupt, or a worker that ended
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)
        listener.close()
