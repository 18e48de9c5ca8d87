"""A real hub for the tests: the hub app under uvicorn on 127.0.0.1 (a free port, in a thread),
and clients for it as an admin, as a device or as raw HTTP."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from hub.app import create_app
from hub.client import HubClient
from hub.serve import uvicorn_config
from hub.settings import HubLimits, HubSettings

ADMIN_TOKEN = "test-admin-token-0123456789"


@dataclass
class RunningHub:
    url: str
    settings: HubSettings
    blobs_dir: Path

    def admin(self) -> HubClient:
        return HubClient(self.url, admin_token=ADMIN_TOKEN)

    def device(self, token: str) -> HubClient:
        return HubClient(self.url, device_token=token)

    def add_device(self, device_id: str, channel: str = "stable") -> str:
        with self.admin() as admin:
            return admin.add_device(device_id, channel).token

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, trust_env=False)


@contextlib.contextmanager
def running_hub(settings: HubSettings) -> Iterator[RunningHub]:
    """A hub app under uvicorn on 127.0.0.1, a free port, in a thread; stopped afterwards. Its
    server config is `edgeloop hub serve`'s (the same head cap and keep-alive)."""
    app = create_app(settings)
    config = uvicorn_config(app, settings, host="127.0.0.1", port=0, access_log=False,
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="hub-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the hub under test did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningHub(f"http://127.0.0.1:{port}", settings, Path(settings.blobs_url))
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def hub_settings(db_url: str, tmp_path: Path, **limits: Any) -> HubSettings:
    return HubSettings(db_url=db_url, blobs_url=str(tmp_path / "blobs"), admin_token=ADMIN_TOKEN,
                       db_busy_timeout_s=5.0, limits=replace(HubLimits(), **limits))

