"""Fixtures for the hub's integration tests: a real uvicorn server on 127.0.0.1 (a free port, in a
thread) over SQLite or a throwaway PostgreSQL database; plus records to send it.

The other test_hub_*.py modules import from here. PostgreSQL comes from EDGELOOP_TEST_PG_URL
(default postgresql+psycopg://postgres@127.0.0.1:5432/test); without a server those tests skip,
except under CI, where they fail.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import sqlalchemy as sa
import uvicorn

from edge_runtime.contract import FrameStats, SampleMeta, SamplePolicy, TelemetryBatch
from hub.app import create_app
from hub.client import HubClient
from hub.settings import HubLimits, HubSettings

ADMIN_TOKEN = "test-admin-token-0123456789"
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
HUB_TABLES = "channel_events, releases, samples, telemetry, devices"


# -- records -------------------------------------------------------------------------------------


def stats(device_id: str, frame_id: int, *, at: datetime | None = None,
          counts: dict[str, int] | None = None, **changes: Any) -> FrameStats:
    fields: dict[str, Any] = dict(
        device_id=device_id, model_version="m1", frame_id=frame_id,
        captured_at=at or T0 + timedelta(seconds=frame_id),
        pre_ms=1.0, infer_ms=8.5, post_ms=0.4, detections=1,
        class_counts={"bolt": 1} if counts is None else counts,
        conf_max=0.9, conf_mean=0.9, conf_min=0.9, uncertain=0,
        box_area_mean=0.02, box_area_min=0.02, box_area_max=0.02, box_aspect_mean=1.0,
        brightness=0.5, contrast=0.2, sharpness=120.0, saturation=0.3)
    fields.update(changes)
    return FrameStats(**fields)


def batch(device_id: str, frame_ids: range | list[int]) -> TelemetryBatch:
    return TelemetryBatch(device_id=device_id, sent_at=T0,
                          records=[stats(device_id, i) for i in frame_ids])


def gz(model: Any) -> bytes:
    return gzip.compress(model.model_dump_json().encode())


def meta(device_id: str, frame_id: int, width: int = 64, height: int = 48) -> SampleMeta:
    return SampleMeta(device_id=device_id, model_version="m1", frame_id=frame_id,
                      captured_at=T0 + timedelta(seconds=frame_id), policy=SamplePolicy.UNCERTAIN,
                      uncertainty=0.5, width=width, height=height, predictions=[])


def jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    return encoded.tobytes()


# -- a running hub -------------------------------------------------------------------------------


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
    """A hub app under uvicorn on 127.0.0.1, a free port, in a thread; stopped afterwards."""
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                            log_level="warning", access_log=False, lifespan="on")
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


def hub_settings(db_url: str, tmp_path: Path, **limits: int) -> HubSettings:
    return HubSettings(db_url=db_url, blobs_url=str(tmp_path / "blobs"), admin_token=ADMIN_TOKEN,
                       db_busy_timeout_s=5.0, limits=replace(HubLimits(), **limits))


# -- databases -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session, dropped at its end."""
    server = sa.make_url(os.environ.get("EDGELOOP_TEST_PG_URL", PG_DEFAULT))
    admin = sa.create_engine(server.set(drivername="postgresql+psycopg"),
                             isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        reason = (f"no PostgreSQL server answers at {server.render_as_string()} "
                  f"(set EDGELOOP_TEST_PG_URL): {str(exc.orig).strip().splitlines()[0]}")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"edgeloop_hub_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def empty_pg(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            exists = conn.execute(sa.text("SELECT to_regclass('devices')")).scalar()
            if exists is not None:
                conn.execute(sa.text(f"TRUNCATE {HUB_TABLES} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test runs against SQLite and PostgreSQL, starting from an empty hub."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.sqlite'}"
    url: str = request.getfixturevalue("pg_url")
    empty_pg(url)
    return url


@pytest.fixture
def hub(db_url: str, tmp_path: Path) -> Iterator[RunningHub]:
    with running_hub(hub_settings(db_url, tmp_path)) as running:
        yield running


@pytest.fixture
def sqlite_hub(tmp_path: Path) -> Iterator[RunningHub]:
    """For behaviour decided before the database is touched (limits, media types)."""
    with running_hub(hub_settings(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path)) as running:
        yield running


# -- the fixture itself --------------------------------------------------------------------------


def test_hub_answers_healthz_and_documents_its_api(sqlite_hub: RunningHub) -> None:
    with sqlite_hub.http() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        spec = http.get("/openapi.json").json()
    assert {"/v1/telemetry", "/v1/samples", "/v1/heartbeat", "/v1/assignment",
            "/v1/releases/{release_id}/model", "/v1/admin/telemetry"} <= set(spec["paths"])
    assert {"TelemetryBatch", "FrameStats", "SampleMeta", "DeviceStatus",
            "ReleaseManifest"} <= set(spec["components"]["schemas"])
