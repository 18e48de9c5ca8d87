"""The labelling ledger: which hub sample became which Label Studio task, and which finished tasks
are already in a dataset increment. A small SQLite file under var/.

It is what makes rounds idempotent: a sample in `sent` is never sent again, a task in `collected`
is never collected again; a sample in `passed_over` (a near-copy of one sent) is not considered
again, so a stopped belt's hundred copies cannot crowd every later round's shortlist.
Label Studio's own task list is folded back in each round (`record_sent` with the tasks found
there), so a crash between creating tasks and writing them here cannot send a frame twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
    project_id INTEGER NOT NULL,
    record_id TEXT NOT NULL,     -- hub sample: device_id/frame_id
    task_id INTEGER NOT NULL,    -- Label Studio task
    look BLOB,                   -- flows.labelling.select look, for diversity across rounds
    round TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    PRIMARY KEY (project_id, record_id)
);
CREATE TABLE IF NOT EXISTS passed_over (
    project_id INTEGER NOT NULL,
    record_id TEXT NOT NULL,     -- a near-copy of a frame that was sent: never worth sending
    round TEXT NOT NULL,
    PRIMARY KEY (project_id, record_id)
);
CREATE TABLE IF NOT EXISTS collected (
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    annotation_id INTEGER NOT NULL,
    batch TEXT NOT NULL,         -- the dataset increment (data/labelled/<batch>)
    collected_at TEXT NOT NULL,
    PRIMARY KEY (project_id, task_id)
);
"""


@dataclass(frozen=True)
class SentTask:
    record_id: str
    task_id: int
    look: bytes | None = None


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30.0)) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            yield db

    # -- sent ------------------------------------------------------------------------------------

    def sent(self, project_id: int) -> dict[str, SentTask]:
        """Every sample sent to the project, by record id."""
        with self._connect() as db:
            rows = db.execute("SELECT record_id, task_id, look FROM sent WHERE project_id = ?",
                              (project_id,)).fetchall()
        return {r: SentTask(r, t, None if x is None else bytes(x)) for r, t, x in rows}

    def record_sent(self, project_id: int, tasks: Iterable[SentTask], round_id: str) -> int:
        """Writes what is not there yet (the first task of a sample wins); returns how many."""
        now = datetime.now(UTC).isoformat()
        rows = [(project_id, t.record_id, t.task_id, t.look, round_id, now)
                for t in tasks]
        with self._connect() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?, ?)", rows)
            return db.total_changes - before

    def passed_over(self, project_id: int) -> set[str]:
        with self._connect() as db:
            rows = db.execute("SELECT record_id FROM passed_over WHERE project_id = ?",
                              (project_id,)).fetchall()
        return {record_id for (record_id,) in rows}

    def record_passed_over(self, project_id: int, record_ids: Iterable[str],
                           round_id: str) -> None:
        with self._connect() as db:
            db.executemany("INSERT OR IGNORE INTO passed_over VALUES (?, ?, ?)",
                           [(project_id, r, round_id) for r in record_ids])

    # -- collected -------------------------------------------------------------------------------

    def collected(self, project_id: int) -> set[int]:
        with self._connect() as db:
            rows = db.execute("SELECT task_id FROM collected WHERE project_id = ?",
                              (project_id,)).fetchall()
        return {task_id for (task_id,) in rows}

    def record_collected(self, project_id: int, annotations: Iterable[tuple[int, int]],
                         batch: str) -> None:
        """(task id, annotation id) pairs that went into `batch`."""
        now = datetime.now(UTC).isoformat()
        with self._connect() as db:
            db.executemany("INSERT OR IGNORE INTO collected VALUES (?, ?, ?, ?, ?)",
                           [(project_id, t, a, batch, now) for t, a in annotations])
