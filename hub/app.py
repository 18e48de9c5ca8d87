"""The hub's ASGI app: the state, the two APIs and the HTTP conventions wired together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from hub import api_admin, api_device
from hub.http import add_error_handlers, body_limit, openapi
from hub.limits import BodyLimit
from hub.settings import HubSettings
from hub.state import Hub


def create_app(settings: HubSettings, hub: Hub | None = None) -> FastAPI:
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
    app.add_middleware(BodyLimit, limit_for=lambda method, path: body_limit(settings, method, path),
                       idle_s=settings.limits.body_idle_s)
    add_error_handlers(app)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        await run_in_threadpool(hub.db.ping)
        return {"status": "ok"}

    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]
    return app
