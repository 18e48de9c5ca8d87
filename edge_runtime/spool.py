"""The device's outbox: frame statistics and kept frames, held in SQLite until the hub has them.

Records survive `kill -9` and power loss once a write returns; the disk budget drops the oldest
frames first, then the oldest statistics, and counts every drop.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from edge_runtime.contract import FrameStats, SampleMeta

log = logging.getLogger(__name__)
_M = TypeVar("_M", FrameStats, SampleMeta)

SCHEMA_VERSION = 1
MIN_SPOOL_BYTES = 256 * 1024  # an empty spool with its WAL needs about 100 KB
MAX_SAMPLE_SHARE = 0.25  # a JPEG bigger than this share of max_bytes is refused, not spooled
WAL_SHARE = 1 / 16  # the WAL is checkpointed when it reaches this share of max_bytes...
WAL_MAX_BYTES = 4 * 1024 * 1024  # ...or this size, whichever is smaller
MAX_RESERVE = 1_000_000  # frame ids handed out by one reserve_frame_ids call
ROW_OVERHEAD_BYTES = 48  # b-tree cell, index entry and page slack per row, for trim estimates
_JPEG_MAGIC = b"\xff\xd8"
_CORRUPTION_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary result codes)

_SCHEMA = """
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


class SpoolError(ValueError):
    """The spool was misused: a bad argument, a closed spool, a schema it cannot read."""


class SpoolCounter(enum.StrEnum):
    """Persistent counters kept inside the spool (they survive restarts)."""

    NEXT_FRAME_ID = "next_frame_id"
    DROPPED_SAMPLES = "dropped_samples"  # by the disk budget
    DROPPED_TELEMETRY = "dropped_telemetry"  # by the disk budget
    DROPPED_UNREADABLE = "dropped_unreadable"  # stored rows the current contract cannot parse
    DROPPED_QUEUE_FULL = "dropped_queue_full"  # SpoolWriter's queue was full
    DROPPED_QUEUE_FULL_SAMPLES = "dropped_queue_full_samples"
    REJECTED_TELEMETRY = "rejected_telemetry"  # the hub refused them as invalid (4xx)
    REJECTED_SAMPLES = "rejected_samples"
    # Corrupt spool files moved aside (their records are lost to the hub); the "dropped" prefix
    # puts it in the heartbeat's `dropped` map.
    QUARANTINED = "dropped_spool_quarantined"


@dataclass(frozen=True)
class SpoolBudget:
    """How much disk the spool may use, and how it gives space back."""

    max_bytes: int = 512 * 1024 * 1024  # bytes on disk for the spool, database + WAL
    trim_to: float = 0.9  # a full spool is trimmed to this share of max_bytes, so trims are rare

    def __post_init__(self) -> None:
        if self.max_bytes < MIN_SPOOL_BYTES:
            raise SpoolError(f"spool budget max_bytes={self.max_bytes} is below the minimum "
                             f"{MIN_SPOOL_BYTES}")
        if not 0.0 < self.trim_to <= 1.0:
            raise SpoolError(f"spool budget trim_to={self.trim_to} must be in (0, 1]")

    @property
    def max_sample_bytes(self) -> int:
        return int(self.max_bytes * MAX_SAMPLE_SHARE)

    @property
    def wal_bytes(self) -> int:
        return min(WAL_MAX_BYTES, int(self.max_bytes * WAL_SHARE))


@dataclass(frozen=True)
class SpoolStats:
    pending_telemetry: int
    pending_samples: int
    bytes: int  # on disk: database + WAL + shared-memory index
    dropped_samples: int  # by the disk budget, since this spool file was created
    dropped_telemetry: int
    quarantined: int  # corrupt spool files moved aside before this one was started
    counters: dict[str, int] = field(default_factory=dict)  # every persistent counter


class Spool:
    """A SQLite outbox; thread-safe (one connection behind a lock), one transaction per call."""

    def __init__(self, path: Path, budget: SpoolBudget | None = None) -> None:
        self.path = Path(path)
        self.budget = budget or SpoolBudget()
        self.quarantined_to: Path | None = None  # where a corrupt file went, on this open
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = self._open_checked()

    # -- opening -------------------------------------------------------------------------------

    def _open_checked(self) -> sqlite3.Connection:
        try:
            return self._open()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            reason = str(exc)
        salvaged_next_id = _salvage_next_frame_id(self.path)
        self.quarantined_to = _quarantine(self.path)
        log.warning("spool %s is corrupt (%s): quarantined as %s, starting a fresh spool",
                    self.path, reason, self.quarantined_to)
        conn = self._open()
        floor = max(salvaged_next_id, _clock_frame_id_floor())
        with _transaction(conn):
            _set_counter(conn, SpoolCounter.NEXT_FRAME_ID, floor)
            _add_counter(conn, SpoolCounter.QUARANTINED, 1)
        return conn

    def _open(self) -> sqlite3.Connection:
        created = not self.path.exists()
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise
        if created:
            fsync_dir(self.path.parent)
        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        # Reads through a leftover WAL too, and raises "not a database" on a foreign file.
        fresh = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        if fresh:
            # Must precede the first table; afterwards it only changes with a full VACUUM.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SpoolError(f"spool {self.path} has schema version {version}, newer than "
                             f"{SCHEMA_VERSION}: refusing to touch it")
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
        # FULL: a commit is on disk before it returns, also across power loss (NORMAL is not).
        conn.execute("PRAGMA synchronous = FULL")
        # The spool holds no secrets; zeroing freed pages would double the writes to flash.
        conn.execute("PRAGMA secure_delete = OFF")
        wal_pages = max(16, self.budget.wal_bytes // 4096)
        conn.execute(f"PRAGMA wal_autocheckpoint = {wal_pages}")
        conn.execute(f"PRAGMA journal_size_limit = {self.budget.wal_bytes}")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            conn.executescript("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
        with _transaction(conn):  # also completes a spool killed right after its creation
            conn.execute("INSERT OR IGNORE INTO counters (name, value) VALUES (?, ?)",
                         (SpoolCounter.NEXT_FRAME_ID.value, _clock_frame_id_floor()))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise SpoolError(f"spool {self.path} is closed")
        return self._conn

    # -- frame ids and counters ----------------------------------------------------------------

    def reserve_frame_ids(self, n: int) -> int:
        """Reserves n consecutive frame ids, committed; returns the first. Never reused."""
        if not 1 <= n <= MAX_RESERVE:
            raise SpoolError(f"reserve_frame_ids(n={n}): n must be in 1..{MAX_RESERVE}")
        with self._lock, _transaction(self._db) as db:
            first = _get_counter(db, SpoolCounter.NEXT_FRAME_ID)
            _set_counter(db, SpoolCounter.NEXT_FRAME_ID, first + n)
        return first

    def add_to_counter(self, counter: SpoolCounter, n: int) -> None:
        if n < 0 or counter is SpoolCounter.NEXT_FRAME_ID:
            raise SpoolError(f"counter {counter} cannot be moved by {n}")
        if n:
            with self._lock, _transaction(self._db) as db:
                _add_counter(db, counter, n)

    # -- writing -------------------------------------------------------------------------------

    def add_telemetry(self, records: Sequence[FrameStats]) -> int:
        """Commits the records in one transaction; returns how many were new (others ignored)."""
        rows = [(_checked(r, FrameStats).record_id, r.model_dump_json()) for r in records]
        if not rows:
            return 0
        with self._lock, _transaction(self._db) as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO telemetry (record_id, body) VALUES (?, ?)", rows)
            added = db.total_changes - before
        self._enforce_budget()
        return added

    def add_sample(self, meta: SampleMeta, jpeg: bytes) -> bool:
        """Commits one kept frame; returns False when its record_id was already spooled."""
        _checked(meta, SampleMeta)
        if not jpeg.startswith(_JPEG_MAGIC):
            raise SpoolError(f"sample {meta.record_id}: image is not a JPEG "
                             f"(starts with {jpeg[:4]!r})")
        if len(jpeg) > self.budget.max_sample_bytes:
            raise SpoolError(f"sample {meta.record_id}: JPEG of {len(jpeg)} bytes exceeds "
                             f"{self.budget.max_sample_bytes} (a quarter of the spool budget)")
        with self._lock, _transaction(self._db) as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO samples (record_id, meta, jpeg) VALUES (?, ?, ?)",
                (meta.record_id, meta.model_dump_json(), jpeg))
            added = cursor.rowcount == 1
        self._enforce_budget()
        return added

    # -- reading and acknowledging -------------------------------------------------------------

    def pending_telemetry(self, limit: int) -> list[tuple[int, FrameStats]]:
        """The oldest unacknowledged records, with the row ids to ack them by."""
        rows = self._select("SELECT id, body FROM telemetry ORDER BY id LIMIT ?", limit)
        parsed: list[tuple[int, FrameStats]] = []
        unreadable: list[int] = []
        for row_id, body in rows:
            try:
                parsed.append((row_id, FrameStats.model_validate_json(body)))
            except ValidationError:
                unreadable.append(row_id)
        self._drop_unreadable("telemetry", unreadable)
        return parsed

    def pending_samples(self, limit: int) -> list[tuple[int, SampleMeta, bytes]]:
        """The oldest unacknowledged frames: row id, metadata, JPEG bytes."""
        rows = self._select("SELECT id, meta, jpeg FROM samples ORDER BY id LIMIT ?", limit)
        parsed: list[tuple[int, SampleMeta, bytes]] = []
        unreadable: list[int] = []
        for row_id, meta, jpeg in rows:
            try:
                parsed.append((row_id, SampleMeta.model_validate_json(meta), bytes(jpeg)))
            except ValidationError:
                unreadable.append(row_id)
        self._drop_unreadable("samples", unreadable)
        return parsed

    def ack_telemetry(self, row_ids: Sequence[int]) -> int:
        """Deletes rows the hub has stored; returns how many were still there."""
        return self._delete("telemetry", row_ids, None)

    def ack_samples(self, row_ids: Sequence[int]) -> int:
        return self._delete("samples", row_ids, None)

    def reject_telemetry(self, row_ids: Sequence[int]) -> int:
        """Deletes rows the hub refused as invalid and counts them, in one transaction."""
        return self._delete("telemetry", row_ids, SpoolCounter.REJECTED_TELEMETRY)

    def reject_samples(self, row_ids: Sequence[int]) -> int:
        return self._delete("samples", row_ids, SpoolCounter.REJECTED_SAMPLES)

    def stats(self) -> SpoolStats:
        with self._lock:
            db = self._db
            telemetry = db.execute("SELECT count(*) FROM telemetry").fetchone()[0]
            samples = db.execute("SELECT count(*) FROM samples").fetchone()[0]
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        return SpoolStats(
            pending_telemetry=telemetry,
            pending_samples=samples,
            bytes=self.disk_bytes(),
            dropped_samples=counters.get(SpoolCounter.DROPPED_SAMPLES, 0),
            dropped_telemetry=counters.get(SpoolCounter.DROPPED_TELEMETRY, 0),
            quarantined=counters.get(SpoolCounter.QUARANTINED, 0),
            counters=counters,
        )

    def disk_bytes(self) -> int:
        return sum(_size(Path(f"{self.path}{suffix}")) for suffix in ("", "-wal", "-shm"))

    def _select(self, sql: str, limit: int) -> list[tuple]:
        if limit < 1:
            raise SpoolError(f"limit={limit} must be at least 1")
        with self._lock:
            return self._db.execute(sql, (limit,)).fetchall()

    def _delete(self, table: str, row_ids: Sequence[int], counter: SpoolCounter | None) -> int:
        if not row_ids:
            return 0
        with self._lock, _transaction(self._db) as db:
            before = db.total_changes
            db.executemany(f"DELETE FROM {table} WHERE id = ?", [(int(i),) for i in row_ids])
            deleted = db.total_changes - before
            if counter is not None:
                _add_counter(db, counter, deleted)
        return deleted

    def _drop_unreadable(self, table: str, row_ids: list[int]) -> None:
        # A row this contract cannot parse would block the queue forever; drop it and count it.
        if row_ids:
            log.error("dropping %d unreadable %s rows from the spool", len(row_ids), table)
            self._delete(table, row_ids, SpoolCounter.DROPPED_UNREADABLE)

    # -- the disk budget -----------------------------------------------------------------------

    def _enforce_budget(self) -> None:
        """Keeps the files under max_bytes: free pages go first, then old frames, then stats."""
        with self._lock:
            if self.disk_bytes() <= self.budget.max_bytes:
                return
            reclaimed = self._reclaim()
            size = self.disk_bytes()
            target = int(self.budget.max_bytes * self.budget.trim_to)
            # Without a full checkpoint the files cannot shrink, and dropping rows would not help.
            while reclaimed and size > self.budget.max_bytes and self._drop_oldest(size - target):
                reclaimed = self._reclaim()
                size = self.disk_bytes()
            if size > self.budget.max_bytes:
                log.error("spool %s holds %d bytes, over its budget of %d (%s)", self.path, size,
                          self.budget.max_bytes,
                          "nothing left to drop" if reclaimed else "a reader blocks checkpoints")

    def _reclaim(self) -> bool:
        """Gives free pages back to the file system; False when a reader blocked the checkpoint."""
        # executescript steps the pragma to completion; execute() would free a single page.
        self._db.executescript("PRAGMA incremental_vacuum;")
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0

    def _drop_oldest(self, excess: int) -> bool:
        """Drops the oldest rows worth about `excess` bytes, frames before statistics."""
        for table, size_sql, counter in (
            ("samples", "length(jpeg) + length(meta)", SpoolCounter.DROPPED_SAMPLES),
            ("telemetry", "length(body)", SpoolCounter.DROPPED_TELEMETRY),
        ):
            with _transaction(self._db) as db:
                last_id, count = _oldest_rows_worth(db, table, size_sql, excess)
                if count == 0:
                    continue
                db.execute(f"DELETE FROM {table} WHERE id <= ?", (last_id,))
                _add_counter(db, counter, count)
            log.warning("spool over budget: dropped the %d oldest %s", count, table)
            return True
        return False


def _oldest_rows_worth(db: sqlite3.Connection, table: str, size_sql: str,
                       excess: int) -> tuple[int, int]:
    """The id of the last of the oldest rows whose sizes add up to `excess`, and their count."""
    last_id, count, total = 0, 0, 0
    sql = f"SELECT id, {size_sql} + 2 * length(record_id) FROM {table} ORDER BY id"
    for row_id, size in db.execute(sql):
        last_id, count, total = row_id, count + 1, total + size + ROW_OVERHEAD_BYTES
        if total >= excess:
            break
    return last_id, count




# -- helpers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _get_counter(db: sqlite3.Connection, counter: SpoolCounter) -> int:
    row = db.execute("SELECT value FROM counters WHERE name = ?", (counter.value,)).fetchone()
    return 0 if row is None else int(row[0])


def _set_counter(db: sqlite3.Connection, counter: SpoolCounter, value: int) -> None:
    db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
               "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (counter.value, value))


def _add_counter(db: sqlite3.Connection, counter: SpoolCounter, n: int) -> None:
    db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
               "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
               (counter.value, n))


def _checked(record: _M, model: type[_M]) -> _M:
    if not isinstance(record, model):
        raise SpoolError(f"expected a {model.__name__}, got {type(record).__name__}")
    return record


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _CORRUPTION_CODES
    return not isinstance(exc, sqlite3.OperationalError)  # our own quick_check failure


def _clock_frame_id_floor() -> int:
    # A fresh spool starts frame ids at the clock in microseconds: a device whose spool was lost
    # or quarantined must not reuse ids the hub already stored (it would drop them as replays).
    return int(time.time() * 1_000_000)


def _salvage_next_frame_id(path: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT value FROM counters WHERE name = ?",
                               (SpoolCounter.NEXT_FRAME_ID.value,)).fetchone()
            return int(row[0]) if row else 0
    except (sqlite3.Error, TypeError, ValueError):
        return 0


def _quarantine(path: Path) -> Path:
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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


__all__ = [
    "Spool",
    "SpoolBudget",
    "SpoolCounter",
    "SpoolError",
    "SpoolStats",
]
