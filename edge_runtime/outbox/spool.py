"""The device's outbox: frame statistics and kept frames, held in SQLite until the hub has them.

Records survive `kill -9` and power loss once a write returns; the disk budget drops the oldest
frames first, then the oldest statistics, and counts every drop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from edge_runtime.contract import FrameStats, SampleMeta
from edge_runtime.outbox.budget import SpoolBudget, SpoolCounter, SpoolError, SpoolStats
from edge_runtime.outbox.storage import (
    SCHEMA,
    add_counter,
    checked,
    clock_frame_id_floor,
    file_size,
    fsync_dir,
    get_counter,
    is_corruption,
    quarantine,
    salvage_next_frame_id,
    set_counter,
    transaction,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_RESERVE = 1_000_000  # frame ids handed out by one reserve_frame_ids call
ROW_OVERHEAD_BYTES = 48  # b-tree cell, index entry and page slack per row, for trim estimates
_JPEG_MAGIC = b"\xff\xd8"


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
            if not is_corruption(exc):
                raise
            reason = str(exc)
        salvaged_next_id = salvage_next_frame_id(self.path)
        self.quarantined_to = quarantine(self.path)
        log.warning("spool %s is corrupt (%s): quarantined as %s, starting a fresh spool",
                    self.path, reason, self.quarantined_to)
        conn = self._open()
        floor = max(salvaged_next_id, clock_frame_id_floor())
        with transaction(conn):
            set_counter(conn, SpoolCounter.NEXT_FRAME_ID, floor)
            add_counter(conn, SpoolCounter.QUARANTINED, 1)
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
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            conn.executescript("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
        with transaction(conn):  # also completes a spool killed right after its creation
            conn.execute("INSERT OR IGNORE INTO counters (name, value) VALUES (?, ?)",
                         (SpoolCounter.NEXT_FRAME_ID.value, clock_frame_id_floor()))

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
        with self._lock, transaction(self._db) as db:
            first = get_counter(db, SpoolCounter.NEXT_FRAME_ID)
            set_counter(db, SpoolCounter.NEXT_FRAME_ID, first + n)
        return first

    def add_to_counter(self, counter: SpoolCounter, n: int) -> None:
        if n < 0 or counter is SpoolCounter.NEXT_FRAME_ID:
            raise SpoolError(f"counter {counter} cannot be moved by {n}")
        if n:
            with self._lock, transaction(self._db) as db:
                add_counter(db, counter, n)

    # -- writing -------------------------------------------------------------------------------

    def add_telemetry(self, records: Sequence[FrameStats]) -> int:
        """Commits the records in one transaction; returns how many were new (others ignored)."""
        rows = [(checked(r, FrameStats).record_id, r.model_dump_json()) for r in records]
        if not rows:
            return 0
        with self._lock, transaction(self._db) as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO telemetry (record_id, body) VALUES (?, ?)", rows)
            added = db.total_changes - before
        self._enforce_budget()
        return added

    def add_sample(self, meta: SampleMeta, jpeg: bytes) -> bool:
        """Commits one kept frame; returns False when its record_id was already spooled."""
        checked(meta, SampleMeta)
        if not jpeg.startswith(_JPEG_MAGIC):
            raise SpoolError(f"sample {meta.record_id}: image is not a JPEG "
                             f"(starts with {jpeg[:4]!r})")
        if len(jpeg) > self.budget.max_sample_bytes:
            raise SpoolError(f"sample {meta.record_id}: JPEG of {len(jpeg)} bytes exceeds "
                             f"{self.budget.max_sample_bytes} (a quarter of the spool budget)")
        with self._lock, transaction(self._db) as db:
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
        return sum(file_size(Path(f"{self.path}{suffix}")) for suffix in ("", "-wal", "-shm"))

    def _select(self, sql: str, limit: int) -> list[tuple]:
        if limit < 1:
            raise SpoolError(f"limit={limit} must be at least 1")
        with self._lock:
            return self._db.execute(sql, (limit,)).fetchall()

    def _delete(self, table: str, row_ids: Sequence[int], counter: SpoolCounter | None) -> int:
        if not row_ids:
            return 0
        with self._lock, transaction(self._db) as db:
            before = db.total_changes
            db.executemany(f"DELETE FROM {table} WHERE id = ?", [(int(i),) for i in row_ids])
            deleted = db.total_changes - before
            if counter is not None:
                add_counter(db, counter, deleted)
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
            with transaction(self._db) as db:
                last_id, count = _oldest_rows_worth(db, table, size_sql, excess)
                if count == 0:
                    continue
                db.execute(f"DELETE FROM {table} WHERE id <= ?", (last_id,))
                add_counter(db, counter, count)
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
