"""Database.write_grouped: writes queued behind a commit share the next transaction."""

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.db import MAX_GROUP, Database, locks
from hub.errors import Unavailable


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'hub.sqlite'}", busy_timeout_s=2.0)
    database.create_schema()
    return database


def names(db: Database) -> set[str]:
    with db.read() as conn:
        return set(conn.execute(sa.select(locks.c.name)).scalars())


def add(name: str, transactions: list[object], held: threading.Event | None = None):
    def work(conn: sa.Connection) -> str:
        transactions.append(conn.get_transaction())  # kept alive: ids stay unique
        if held is not None:
            held.wait(5)
        conn.execute(sa.insert(locks).values(name=name))
        return name
    return work


def queued_behind(db: Database, first: Callable[[], object], started: list[object],
                  release: threading.Event, others: list[Callable[[], object]]) -> None:
    """Run `first` (a write that holds the database until `release`), queue `others` behind
    it, then let them all go and wait for every one."""
    threads = [threading.Thread(target=first)]
    threads[0].start()
    while not started:  # the first write holds the database
        threading.Event().wait(0.01)
    threads += [threading.Thread(target=other) for other in others]
    for thread in threads[1:]:
        thread.start()
    while len(db._queued) < len(others):
        threading.Event().wait(0.01)
    release.set()
    for thread in threads:
        thread.join(10)


def test_writes_queued_during_a_commit_go_in_one_transaction_each_with_its_result(db: Database):
    transactions: list[object] = []
    release = threading.Event()
    results: dict[str, str] = {}
    queued_behind(
        db, lambda: results.update(first=db.write_grouped(add("first", transactions, release))),
        transactions, release,
        [lambda n=n: results.update({n: db.write_grouped(add(n, transactions))})
         for n in ("a", "b", "c")])

    assert results == {"first": "first", "a": "a", "b": "b", "c": "c"}
    assert names(db) >= {"first", "a", "b", "c"}
    assert len(transactions) == 4
    assert len({id(t) for t in transactions[1:]}) == 1  # a, b and c: one transaction


def test_a_failed_group_fails_every_write_in_it_and_stores_none(db: Database):
    release = threading.Event()
    started: list[object] = []
    errors: dict[str, BaseException] = {}

    def run(name: str, work) -> None:
        try:
            db.write_grouped(work)
        except BaseException as error:  # each caller's outcome is recorded
            errors[name] = error

    def broken(conn: sa.Connection) -> None:
        conn.execute(sa.insert(locks).values(name="releases"))  # exists: IntegrityError

    queued_behind(db, lambda: run("first", add("first", started, release)), started, release,
                  [lambda: run("ok", add("ok", [])), lambda: run("broken", broken)])

    assert "first" not in errors
    assert set(errors) == {"ok", "broken"}
    assert all(isinstance(e, sa.exc.IntegrityError) for e in errors.values())
    assert "ok" not in names(db) and "first" in names(db)


def test_a_write_that_waits_past_the_busy_timeout_is_refused_and_dropped(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'hub.sqlite'}", busy_timeout_s=0.3)
    db.create_schema()
    release = threading.Event()
    started: list[object] = []
    first = threading.Thread(target=db.write_grouped, args=(add("slow", started, release),))
    first.start()
    while not started:
        threading.Event().wait(0.01)

    with pytest.raises(Unavailable, match="no write turn"):
        db.write_grouped(add("late", []))
    assert db._queued == []
    release.set()
    first.join(10)
    assert names(db) >= {"slow"} and "late" not in names(db)


def test_a_group_is_bounded(db: Database):
    transactions: list[object] = []
    release = threading.Event()
    count = MAX_GROUP + 3
    queued_behind(db, lambda: db.write_grouped(add("first", transactions, release)),
                  transactions, release,
                  [lambda i=i: db.write_grouped(add(f"n{i}", transactions))
                   for i in range(count)])

    assert len(names(db) - {"releases", "first"}) == count
    assert max(Counter(id(t) for t in transactions).values()) == MAX_GROUP
