"""A throwaway PostgreSQL database for a test session, from EDGELOOP_TEST_PG_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/test). Without a server its tests skip, except under
CI, where they fail."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HUB_TABLES = "channel_events, releases, samples, telemetry, devices, quarantine"


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped afterwards; skips (fails under CI) without a
    server."""
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
    """Empties the hub's tables, if the hub has made them, so the next test starts afresh."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            exists = conn.execute(sa.text("SELECT to_regclass('devices')")).scalar()
            if exists is not None:
                conn.execute(sa.text(f"TRUNCATE {HUB_TABLES} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()
