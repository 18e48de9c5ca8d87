"""The hub's HTTP conventions for every route: body limits, errors answered as a `Refusal` (and
which store failed, for a 503), and the OpenAPI document that says so."""

from __future__ import annotations

import logging
import os
import sqlite3
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from edge_runtime.contract import (
    ADMIN_PREFIX,
    SAMPLES_PATH,
    TELEMETRY_PATH,
    DeviceStatus,
    ReleaseManifest,
    SampleMeta,
    TelemetryBatch,
)
from hub.errors import HubError
from hub.models import Refusal
from hub.settings import HubSettings

log = logging.getLogger("hub")
# Contract models that the API reads by hand (for speed and limits) but documents in OpenAPI.
DOCUMENTED_MODELS = (TelemetryBatch, SampleMeta, DeviceStatus, ReleaseManifest)


def body_limit(settings: HubSettings, method: str, path: str) -> int:
    limits = settings.limits
    if path == TELEMETRY_PATH:
        return limits.telemetry_body_bytes
    if path == SAMPLES_PATH:
        return limits.sample_image_bytes + limits.json_body_bytes  # the image and its meta
    if method == "POST" and path == ADMIN_PREFIX + "/releases":
        return limits.release_body_bytes
    return limits.json_body_bytes


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HubError)
    async def refused(_: Request, exc: HubError) -> JSONResponse:
        headers = ({"WWW-Authenticate": "Bearer"} if exc.status == 401
                   else RETRY_LATER if exc.status == 503
                   else CLOSE if exc.status == 408 else None)
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


RETRY_LATER = {"Retry-After": "1"}  # seconds; the device's uplink backs off on its own
CLOSE = {"Connection": "close"}  # the rest of a stalled body must not be read as a request


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
    "408": "the body stopped arriving (no part of it for the body idle timeout)",
    "413": "body over its limit",
    "503": "database or blob storage busy or down: retry later",
}
REFUSAL_SCHEMA = {"$ref": "#/components/schemas/Refusal"}


def openapi(app: FastAPI) -> dict[str, Any]:
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
