"""The hub's ASGI app: wiring of settings, database, blobs and the two APIs; and `serve`."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from edge_runtime.contract import (
    ADMIN_PREFIX,
    SAMPLES_PATH,
    TELEMETRY_PATH,
    DeviceStatus,
    ReleaseManifest,
    SampleMeta,
    TelemetryBatch,
)
from hub.auth import AdminGate
from hub.blobs import BlobStore
from hub.db import Database
from hub.errors import HubError
from hub.limits import BodyLimit
from hub.models import Refusal
from hub.settings import HubSettings

log = logging.getLogger("hub")
# Contract models that the API reads by hand (for speed and limits) but documents in OpenAPI.
DOCUMENTED_MODELS = (TelemetryBatch, SampleMeta, DeviceStatus, ReleaseManifest)


@dataclass(frozen=True)
class Hub:
    """What every request handler needs, built once from the settings."""

    settings: HubSettings
    db: Database
    blobs: BlobStore
    admin: AdminGate

    @classmethod
    def open(cls, settings: HubSettings) -> Hub:
        admin = AdminGate(settings.require_admin_token())
        db = Database(settings.db_url, settings.db_busy_timeout_s)
        try:
            db.create_schema()
            blobs = BlobStore(settings.blobs_url)
        except BaseException:
            db.dispose()
            raise
        return cls(settings, db, blobs, admin)


def hub_of(request: Request) -> Hub:
    return request.app.state.hub  # type: ignore[no-any-return]


def create_app(settings: HubSettings, hub: Hub | None = None) -> FastAPI:
    from hub import api_admin, api_device

    hub = hub or Hub.open(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        hub.db.dispose()

    app = FastAPI(title="edgeloop hub", version="1", lifespan=lifespan,
                  description="The cloud's front door for the fleet: ingest, registry, releases.")
    app.state.hub = hub
    app.include_router(api_device.router)
    app.include_router(api_admin.router)
    app.add_middleware(BodyLimit, limit_for=lambda method, path: body_limit(settings, method, path))
    _add_error_handlers(app)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        await run_in_threadpool(hub.db.ping)
        return {"status": "ok"}

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def body_limit(settings: HubSettings, method: str, path: str) -> int:
    limits = settings.limits
    if path == TELEMETRY_PATH:
        return limits.telemetry_body_bytes
    if path == SAMPLES_PATH:
        return limits.sample_image_bytes + limits.json_body_bytes  # the image and its meta
    if method == "POST" and path == ADMIN_PREFIX + "/releases":
        return limits.release_body_bytes
    return limits.json_body_bytes


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HubError)
    async def refused(_: Request, exc: HubError) -> JSONResponse:
        headers = ({"WWW-Authenticate": "Bearer"} if exc.status == 401
                   else RETRY_LATER if exc.status == 503 else None)
        return JSONResponse({"detail": exc.detail, **exc.extra}, exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        shown = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]]
        return JSONResponse({"detail": f"invalid request: {'; '.join(shown)}",
                             "errors": [{"loc": list(e["loc"]), "msg": e["msg"]}
                                        for e in exc.errors()[:20]]}, 422)

    @app.exception_handler(sqlalchemy.exc.IntegrityError)
    async def conflict(_: Request, exc: sqlalchemy.exc.IntegrityError) -> JSONResponse:
        return JSONResponse({"detail": f"conflicting write: {exc.orig}"[:300]}, 409)

    # The device keeps its records on 503 and retries: right for a busy or unreachable database
    # and for failing blob storage, wrong for nothing the client could fix.
    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("answering 503: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"detail": f"{unavailable_reason(exc)}; retry later"}, 503,
                            headers=RETRY_LATER)

    for kind in (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                 sqlalchemy.exc.TimeoutError, sqlalchemy.exc.DisconnectionError, OSError):
        app.add_exception_handler(kind, unavailable)

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, 500)


RETRY_LATER = {"Retry-After": "1"}  # seconds; edge_runtime.uplink backs off on its own anyway


def unavailable_reason(exc: Exception) -> str:
    """Which store failed and how, in words fit for a device's log: no path, host or SQL."""
    if isinstance(exc, OSError):  # blob I/O: local disk or an fsspec store
        how = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        return f"blob storage failed: {how}"
    orig = getattr(exc, "orig", None)
    if isinstance(orig, sqlite3.Error):  # "database is locked", "database or disk is full"
        return f"database unavailable: {(str(orig).splitlines() or ['?'])[0][:120]}"
    # psycopg's messages name the server; its class names the failure (AdminShutdown, ...).
    return f"database unavailable: {type(orig or exc).__name__}"


# Refusals that any operation can answer, whatever its handler: BodyLimit and the error handlers
# are global. Every refusal's body is a Refusal.
COMMON_REFUSALS = {
    "400": "malformed request: a Content-Length, JSON or multipart body that does not parse",
    "413": "body over its limit",
    "503": "database or blob storage busy or down: retry later",
}
REFUSAL_SCHEMA = {"$ref": "#/components/schemas/Refusal"}


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (*DOCUMENTED_MODELS, Refusal):
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(model_schema.pop("$defs", {}))
            components[model.__name__] = model_schema
        # FastAPI documents its own 422 body; the hub answers every refusal as a Refusal.
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                _document_refusals(path, operation["responses"])
        app.openapi_schema = schema
    return app.openapi_schema


def _document_refusals(path: str, responses: dict[str, Any]) -> None:
    for code, description in COMMON_REFUSALS.items():
        responses.setdefault(code, {"description": description})
    if path != "/healthz":
        responses.setdefault("401", {"description": "missing or unknown token"})
    if "{" in path:
        responses.setdefault("404", {"description": "nothing by that name or id"})
        responses.setdefault("422", {"description": "a path parameter is not valid"})
    for code, response in responses.items():
        if int(code) >= 400:
            response["content"] = {"application/json": {"schema": dict(REFUSAL_SCHEMA)}}


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

        return Server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                     log_config=None, log_level="warning",
                                     access_log=settings.access_log, server_header=False))

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
