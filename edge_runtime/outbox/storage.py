"""The spool's SQLite file: its schema, transactions and counters, and what becomes of a
corrupt one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from edge_runtime.contract import FrameStats, SampleMeta
from edge_runtime.outbox.budget import SpoolCounter, SpoolError

_M = TypeVar("_M", FrameStats, SampleMeta)
CORRUPTION_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary result codes)

SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL UNIQUE,
    meta TEXT NOT NULL,
    jpeg BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""
# AUTOINCREMENT: ids are never reused, so acking rows read before a budget trim can never delete
# rows written after it.


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def get_counter(db: sqlite3.Connection, counter: SpoolCounter) -> int:
    row = db.execute("SELECT value FROM counters WHERE name = ?", (counter.value,)).fetchone()
    return 0 if row is None else int(row[0])


def set_counter(db: sqlite3.Connection, counter: SpoolCounter, value: int) -> None:
    db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
               "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (counter.value, value))


def add_counter(db: sqlite3.Connection, counter: SpoolCounter, n: int) -> None:
    db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
               "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
               (counter.value, n))


def checked(record: _M, model: type[_M]) -> _M:
    if not isinstance(record, model):
        raise SpoolError(f"expected a {model.__name__}, got {type(record).__name__}")
    return record


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in CORRUPTION_CODES
    return not isinstance(exc, sqlite3.OperationalError)  # our own quick_check failure


def clock_frame_id_floor() -> int:
    # A fresh spool starts frame ids at the clock in microseconds: a device whose spool was lost
    # or quarantined must not reuse ids the hub already stored (it would drop them as replays).
    return int(time.time() * 1_000_000)


def salvage_next_frame_id(path: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT value FROM counters WHERE name = ?",
                               (SpoolCounter.NEXT_FRAME_ID.value,)).fetchone()
            return int(row[0]) if row else 0
    except (sqlite3.Error, TypeError, ValueError):
        return 0


def quarantine(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, Path(f"{target}{suffix}"))
    fsync_dir(path.parent)
    return target


def fsync_dir(directory: Path) -> None:
    """Make a new or renamed entry of `directory` durable."""
    # A new or renamed file is only durable once its directory entry is.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
