"""The hub's tables and its database handle: SQLite (WAL) by default, PostgreSQL by URL.

Records are kept as their contract JSON beside the indexed keys that queries need, so no field
list of the wire contract is repeated here.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from hub.errors import Unavailable

metadata = sa.MetaData()
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite's rowid alias must be INTEGER
Key = sa.String(64)  # contract names are at most 64 characters
BIGINT_MAX = 2**63 - 1  # the largest frame id a BIGINT column holds (the contract has no bound)
INTEGER_MAX = 2**31 - 1  # the largest release version the (32-bit) Integer column holds

devices = sa.Table(
    "devices", metadata,
    sa.Column("device_id", Key, primary_key=True),
    sa.Column("channel", Key, nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_us", sa.BigInteger, nullable=False),  # UTC epoch microseconds
    sa.Column("revoked_us", sa.BigInteger),
    sa.Column("last_seen_us", sa.BigInteger),
    sa.Column("status", sa.Text),  # the latest DeviceStatus, as JSON
    sa.Column("status_sent_us", sa.BigInteger),  # its sent_at: older heartbeats do not win
    sa.Column("telemetry_stored", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("samples_stored", sa.BigInteger, nullable=False, server_default="0"),
)

telemetry = sa.Table(
    "telemetry", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("device_id", Key, nullable=False),
    sa.Column("frame_id", sa.BigInteger, nullable=False),
    sa.Column("model_version", Key, nullable=False),
    sa.Column("captured_us", sa.BigInteger, nullable=False),
    sa.Column("received_us", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # FrameStats JSON
    sa.UniqueConstraint("device_id", "frame_id", name="uq_telemetry_record"),  # the record id
    sa.Index("ix_telemetry_captured", "captured_us"),
    sa.Index("ix_telemetry_device_captured", "device_id", "captured_us"),
)

samples = sa.Table(
    "samples", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("device_id", Key, nullable=False),
    sa.Column("frame_id", sa.BigInteger, nullable=False),
    sa.Column("captured_us", sa.BigInteger, nullable=False),
    sa.Column("received_us", sa.BigInteger, nullable=False),
    sa.Column("uncertainty", sa.Float, nullable=False),
    sa.Column("blob_key", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(32), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("meta", sa.Text, nullable=False),  # SampleMeta JSON
    sa.UniqueConstraint("device_id", "frame_id", name="uq_samples_record"),
    sa.Index("ix_samples_captured", "captured_us"),
)

releases = sa.Table(
    "releases", metadata,
    sa.Column("release_id", Key, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False, unique=True),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("manifest", sa.Text, nullable=False),  # ReleaseManifest JSON
)

# A channel is a stack of assignments: the newest active row is what its devices run; a rollback
# deactivates the newest row, so repeated rollbacks walk back through history.
channel_events = sa.Table(
    "channel_events", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("channel", Key, nullable=False),
    sa.Column("release_id", Key, sa.ForeignKey("releases.release_id"), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # assign | promote
    sa.Column("assigned_us", sa.BigInteger, nullable=False),
    sa.Column("rolled_back_us", sa.BigInteger),
    sa.Index("ix_channel_events_channel", "channel", "id"),
)

# One row per named critical section, locked with SELECT ... FOR UPDATE on PostgreSQL, so that
# several hub processes cannot both pass "version goes up" with different versions.
locks = sa.Table("locks", metadata, sa.Column("name", Key, primary_key=True))
LOCK_NAMES = ("releases",)
MAX_GROUP = 16  # write_grouped: the most writes one transaction carries
T = TypeVar("T")


def make_engine(url: str, busy_timeout_s: float) -> Engine:
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        # psycopg 3 is the one PostgreSQL driver the hub ships with.
        # A lock held too long (or a server too slow to connect) becomes a 503, not a hang.
        wait_ms = int(busy_timeout_s * 1000)
        return sa.create_engine(parsed.set(drivername="postgresql+psycopg"), pool_size=8,
                                max_overflow=8, pool_pre_ping=True, pool_timeout=busy_timeout_s,
                                connect_args={"connect_timeout": max(1, int(busy_timeout_s)),
                                              "options": f"-c lock_timeout={wait_ms}"})
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite"):
        raise ValueError(f"database URL {parsed.render_as_string()!r}: use sqlite:///PATH or "
                         "postgresql+psycopg://USER@HOST/DB")
    if not parsed.database or parsed.database == ":memory:":
        raise ValueError("the hub needs a SQLite database file (sqlite:///PATH), not memory")
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, pool_size=8, max_overflow=8, pool_timeout=busy_timeout_s,
                              connect_args={"timeout": busy_timeout_s,
                                            "check_same_thread": False})
    sa.event.listen(engine, "connect", _configure_sqlite)
    sa.event.listen(engine, "begin", _begin_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _begin_sqlite)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
    # FULL: the WAL is synced at every commit, so an acknowledged batch survives power loss
    # (NORMAL may lose the last commits, after the device has already deleted its rows).
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _begin_sqlite(conn: Connection) -> None:
    # Writers take the write lock up front: a deferred transaction that reads and then writes
    # fails with SQLITE_BUSY, instead of waiting, when another process committed in between.
    immediate = conn.get_execution_options().get("hub_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class DatabaseUnreachable(OSError):
    """The hub cannot open its database (no server, refused login, unknown database)."""


class Database:
    """The engine plus how the hub opens transactions on it."""

    def __init__(self, url: str, busy_timeout_s: float = 5.0) -> None:
        self.url = url
        self.engine = make_engine(url, busy_timeout_s)
        self.dialect = self.engine.dialect.name
        self.busy_timeout_s = busy_timeout_s
        # SQLite has one writer at a time; queueing threads here beats its sleep-and-poll lock.
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        self._group = threading.Condition()  # write_grouped: its queue and its one writer
        self._queued: list[_Grouped[Any]] = []
        self._group_writing = False

    def describe(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def create_schema(self) -> None:
        """Creates the tables that are missing; DatabaseUnreachable if the database cannot be
        opened."""
        try:
            self.engine.connect().close()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
            reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
            raise DatabaseUnreachable(
                f"cannot open the hub database {self.describe()}: {reason}") from error
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":  # several processes may start at once
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(8700)"))
            metadata.create_all(conn)
            conn.execute(self.insert(locks).on_conflict_do_nothing(),
                         [{"name": name} for name in LOCK_NAMES])

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction, committed when the block ends without an exception."""
        with self._writer_turn(), self.engine.connect() as conn:
            conn = conn.execution_options(hub_write=True)
            with conn.begin():
                yield conn

    def write_grouped(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a write transaction shared with the writes queued meanwhile.

        SQLite commits one transaction at a time, each with its own fsync: under many devices the
        commit, not the insert, is the queue. Writes that arrive while one is committing wait
        together and then go in one transaction (group commit): each caller returns once that
        transaction committed, with its own result; if it fails, every caller of the group gets
        the error. `work` must not raise for reasons of its own input (validate before): one bad
        write would fail the group. PostgreSQL takes concurrent writers: no grouping there.
        """
        if self._write_lock is None:
            with self.write() as conn:
                return work(conn)
        job: _Grouped[T] = _Grouped(work)
        deadline = time.monotonic() + self.busy_timeout_s
        with self._group:
            self._queued.append(job)
            while not job.finished and self._group_writing:
                queued, remaining = job in self._queued, deadline - time.monotonic()
                if queued and remaining <= 0:
                    self._queued.remove(job)
                    raise Unavailable(f"database busy: no write turn within "
                                      f"{self.busy_timeout_s} s")
                # Taken into a transaction in flight: that writer reports, however long it takes.
                self._group.wait(remaining if queued else None)
            leader = not job.finished  # then this thread writes the queue, its own write first
            if leader:
                self._group_writing = True
                self._queued.remove(job)
                jobs = [job, *self._queued[:MAX_GROUP - 1]]
                del self._queued[:MAX_GROUP - 1]
        if leader:
            try:
                with self.write() as conn:
                    for each in jobs:
                        each.result = each.work(conn)
            except BaseException as error:
                for each in jobs:
                    each.error = error
                raise
            finally:
                with self._group:
                    for each in jobs:
                        each.finished = True
                    self._group_writing = False
                    self._group.notify_all()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]  # finished without an error: set

    @contextlib.contextmanager
    def _writer_turn(self) -> Iterator[None]:
        if self._write_lock is None:
            yield
            return
        if not self._write_lock.acquire(timeout=self.busy_timeout_s):
            raise Unavailable(f"database busy: no write turn within {self.busy_timeout_s} s")
        try:
            yield
        finally:
            self._write_lock.release()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT DO NOTHING."""
        return (postgresql.insert(table) if self.dialect == "postgresql"
                else sqlite.insert(table))

    def lock(self, conn: Connection, name: str) -> None:
        """Serialises a critical section across hub processes (SQLite: BEGIN IMMEDIATE did)."""
        conn.execute(sa.select(locks.c.name).where(locks.c.name == name).with_for_update())

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


@dataclass(eq=False)
class _Grouped(Generic[T]):
    """One caller's write in `Database.write_grouped`, and what came of it."""

    work: Callable[[Connection], T]
    result: T | None = None
    error: BaseException | None = None
    finished: bool = False
