"""Hub faults a device must ride out: a SQLite file locked by another process, a PostgreSQL that
drops its connections or refuses new ones, blob storage that cannot be written. While a fault
lasts the hub answers 503 with a reason and Retry-After (never a 500 or a hang); once it is gone
the device's real Uplink delivers its spool exactly once, and no sample is half-stored."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from edge_runtime.outbox.spool import Spool
from edge_runtime.outbox.uplink import Uplink
from edge_runtime.outbox.uplink_policy import UplinkConfig
from hub.http import unavailable_reason
from tests.support.hub import RunningHub, hub_settings, running_hub
from tests.support.postgres import PG_DEFAULT, empty_pg
from tests.support.records import batch, gz, jpeg, meta, stats

pytestmark = pytest.mark.slow

DEVICE = "cam-9"
RECORDS_PER_ROUND = 300
SAMPLES_PER_ROUND = 2
FAULT_S = 1.5  # how long each injected fault lasts
CLIENT_TIMEOUT_S = 5.0  # a probe's timeout: a 503 must come well before it
PROBE_FRAME = 900_000  # frame ids of direct probes, never spooled: a refused one stays out
log = logging.getLogger(__name__)


# -- the device side -----------------------------------------------------------------------------


def fast_uplink(hub: RunningHub, spool: Spool, token: str) -> Uplink:
    """The real Uplink, with backoff short enough for a test to watch it recover."""
    config = UplinkConfig(hub_url=hub.url, device_id=DEVICE, token=token, batch_size=100,
                          timeout_s=CLIENT_TIMEOUT_S, backoff_base_s=0.1, backoff_cap_s=0.4,
                          idle_poll_s=0.05)
    return Uplink(spool, config)


@dataclass
class Sent:
    """What the device sent, by frame id: the hub must end up with exactly this."""

    telemetry: list[int]
    samples: list[int]

    def add_round(self, spool: Spool, round_: int) -> None:
        first = round_ * 10_000
        frames = list(range(first, first + RECORDS_PER_ROUND))
        spool.add_telemetry([stats(DEVICE, i) for i in frames])
        self.telemetry += frames
        for frame in frames[:SAMPLES_PER_ROUND]:
            spool.add_sample(meta(DEVICE, frame), jpeg(seed=frame))
            self.samples.append(frame)


def wait_until_drained(spool: Spool, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (left := spool.stats()).pending_telemetry or left.pending_samples:
        if time.monotonic() > deadline:
            raise AssertionError(f"the spool did not drain after the fault: {left}")
        time.sleep(0.05)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def uplink_failures(caplog: pytest.LogCaptureFixture) -> Counter[str]:
    """Every failed request of the Uplink, by HTTP status ('transport' when there was none)."""
    failures: Counter[str] = Counter()
    for record in caplog.records:
        if record.name == "edge_runtime.outbox.uplink" and "will retry" in record.getMessage():
            status = re.search(r": HTTP (\d{3}):", record.getMessage())
            failures[status.group(1) if status else "transport"] += 1
    return failures


# -- direct probes while a fault lasts -----------------------------------------------------------


def probe_all(hub: RunningHub, token: str, n: int,
              first: int = PROBE_FRAME) -> list[tuple[httpx.Response, float]]:
    """n telemetry posts (even frame ids from `first`) and n sample posts (odd ones) at once."""

    def post(i: int) -> tuple[httpx.Response, float]:
        frame = first + i
        start = time.monotonic()
        with httpx.Client(base_url=hub.url, timeout=CLIENT_TIMEOUT_S, trust_env=False,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            if i % 2:
                response = http.post("/v1/samples", data={"meta": meta(DEVICE, frame)
                                                          .model_dump_json()},
                                     files={"image": ("x.jpg", jpeg(seed=frame), "image/jpeg")})
            else:
                response = http.post("/v1/telemetry", content=gz(batch(DEVICE, [frame])),
                                     headers={"Content-Type": "application/json",
                                              "Content-Encoding": "gzip"})
        return response, time.monotonic() - start

    with ThreadPoolExecutor(2 * n) as pool:
        return list(pool.map(post, range(2 * n)))


def assert_retry_later(answers: list[tuple[httpx.Response, float]], reason: str) -> None:
    for response, elapsed in answers:
        assert response.status_code == 503, response.text
        assert response.headers.get("Retry-After"), response.headers
        assert reason in response.json()["detail"], response.text
        assert elapsed < CLIENT_TIMEOUT_S - 1, f"answered only after {elapsed:.1f} s"


# -- what the hub stored -------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """The numbers of one run: sent, stored at the hub, stored twice, and how it went."""

    fault: str
    injections: int
    sent_records: int
    stored_records: int
    duplicate_records: int
    sent_samples: int
    stored_samples: int
    duplicate_samples: int
    refused: dict[str, int]  # the Uplink's failed requests by status, during the faults
    probes_503: int
    orphan_blobs: int  # blobs that no row points at
    unknown_commits: int  # sample commits that failed but may have happened
    acked: tuple[int, int]  # records and samples the Uplink saw acknowledged (and deleted)


def delivery(hub: RunningHub, db_url: str, sent: Sent, fault: str, injections: int,
             caplog: pytest.LogCaptureFixture, probes_503: int, up: Uplink) -> Delivery:
    """Counts what the hub stored against what was sent; asserts exactly once, nothing half."""
    telemetry, samples = stored_rows(db_url)
    acked = up.stats()
    result = Delivery(fault, injections, len(sent.telemetry), len(set(telemetry)),
                      len(telemetry) - len(set(telemetry)), len(sent.samples),
                      len(set(samples)), len(samples) - len(set(samples)),
                      dict(uplink_failures(caplog)), probes_503, orphan_blobs(hub, db_url),
                      unknown_commits(caplog), (acked.sent_telemetry, acked.sent_samples))
    log.warning("delivery: %s", result)
    assert (acked.rejected_telemetry, acked.rejected_samples) == (0, 0), "the device dropped"
    assert sorted(telemetry) == sorted(sent.telemetry), "records lost or stored twice"
    assert sorted(samples) == sorted(sent.samples), "samples lost or stored twice"
    assert result.orphan_blobs <= result.unknown_commits, "blobs left by refused samples"
    with hub.admin() as admin:  # and the API serves every image as the device sent it
        for frame in sent.samples:
            assert admin.sample_image(f"{DEVICE}/{frame}") == jpeg(seed=frame)
    return result


def stored_rows(db_url: str) -> tuple[list[int], list[int]]:
    """Frame ids of every telemetry and sample row, counted in the hub's own database."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            telemetry = conn.execute(sa.text("SELECT frame_id FROM telemetry WHERE device_id = :d"),
                                     {"d": DEVICE}).scalars().all()
            samples = conn.execute(sa.text("SELECT frame_id FROM samples WHERE device_id = :d"),
                                   {"d": DEVICE}).scalars().all()
    finally:
        engine.dispose()
    return list(telemetry), list(samples)


def orphan_blobs(hub: RunningHub, db_url: str) -> int:
    """Asserts that every sample row has its blob; returns how many blobs have no row."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            keys = set(conn.execute(sa.text("SELECT blob_key FROM samples")).scalars())
    finally:
        engine.dispose()
    root = hub.blobs_dir
    blobs = {str(p.relative_to(root)) for p in (root / "samples").rglob("*") if p.is_file()}
    assert keys <= blobs, f"rows without their blob: {keys - blobs}"
    return len(blobs - keys)


def unknown_commits(caplog: pytest.LogCaptureFixture) -> int:
    """Sample writes whose commit failed but may have happened: only they may leave a blob."""
    return sum("commit outcome unknown" in r.getMessage() for r in caplog.records
               if r.name == "hub.samples")


# -- SQLite: another process holds the write lock ------------------------------------------------


@contextlib.contextmanager
def sqlite_write_lock(path: Path) -> Iterator[None]:
    """BEGIN EXCLUSIVE from a connection of our own: no hub transaction can write meanwhile."""
    blocker = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        yield
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()


def test_a_locked_sqlite_file_is_answered_503_and_the_spool_arrives_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    rng = random.Random(10)
    db_file = tmp_path / "hub.sqlite"
    settings = replace(hub_settings(f"sqlite:///{db_file}", tmp_path), db_busy_timeout_s=0.5)
    sent, probes_503, rounds = Sent([], []), 0, 3
    with running_hub(settings) as hub:
        token = hub.add_device(DEVICE)
        with Spool(tmp_path / "spool.sqlite") as spool, fast_uplink(hub, spool, token) as up:
            up.start()
            for round_ in range(rounds):
                sent.add_round(spool, 2 * round_)
                time.sleep(rng.uniform(0.0, 0.1))  # the lock lands amid or after that drain
                with sqlite_write_lock(db_file):
                    started = time.monotonic()
                    sent.add_round(spool, 2 * round_ + 1)  # these meet the lock for sure
                    answers = probe_all(hub, token, 3)
                    assert_retry_later(answers, "database")
                    probes_503 += len(answers)
                    time.sleep(max(0.0, FAULT_S - (time.monotonic() - started)))
            wait_until_drained(spool)
        result = delivery(hub, settings.db_url, sent, "sqlite locked", rounds, caplog,
                          probes_503, up)
    assert set(result.refused) == {"503"}, result.refused
    assert result.orphan_blobs == 0
    assert result.duplicate_records == result.duplicate_samples == 0


# -- PostgreSQL: connections dropped, then refused -----------------------------------------------


@dataclass(frozen=True)
class PostgresFaults:
    """Faults injected through a superuser connection to the server's own database."""

    server: sa.Engine
    database: str

    def terminate_backends(self) -> int:
        """Kills every connection of the hub's database, mid-query or idle; returns how many."""
        with self.server.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": self.database})
                .scalar_one())

    def allow_connections(self, allow: bool) -> None:
        with self.server.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS {allow}'))

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """The database refuses new connections and has none open, as if its server were gone."""
        self.allow_connections(False)
        try:
            self.terminate_backends()
            yield
        finally:
            self.allow_connections(True)


@pytest.fixture
def pg_faults(pg_url: str) -> Iterator[PostgresFaults]:
    empty_pg(pg_url)
    server = sa.create_engine(sa.make_url(os.environ.get("EDGELOOP_TEST_PG_URL", PG_DEFAULT))
                              .set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    try:
        yield PostgresFaults(server, str(sa.make_url(pg_url).database))
    finally:
        server.dispose()


def test_postgresql_dropping_or_refusing_connections_is_answered_503_and_nothing_is_lost(
        pg_url: str, pg_faults: PostgresFaults, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    settings = replace(hub_settings(pg_url, tmp_path), db_busy_timeout_s=1.0)
    sent, probes_503, terminated = Sent([], []), 0, 0
    rounds = ("terminate", "down", "terminate", "down")
    with running_hub(settings) as hub:
        token = hub.add_device(DEVICE)
        with Spool(tmp_path / "spool.sqlite") as spool, fast_uplink(hub, spool, token) as up:
            up.start()
            for round_, fault in enumerate(rounds):
                sent.add_round(spool, round_)
                started = time.monotonic()
                if fault == "terminate":  # again and again while the uplink drains
                    while time.monotonic() - started < FAULT_S:
                        terminated += pg_faults.terminate_backends()
                        time.sleep(0.02)
                    continue
                with pg_faults.down():
                    answers = probe_all(hub, token, 3)
                    assert_retry_later(answers, "database unavailable")
                    probes_503 += len(answers)
                    time.sleep(max(0.0, FAULT_S - (time.monotonic() - started)))
            wait_until_drained(spool)
        result = delivery(hub, pg_url, sent, "postgresql terminated/down", len(rounds),
                          caplog, probes_503, up)
    log.warning("backends terminated: %d", terminated)
    assert terminated > 0
    assert set(result.refused) <= {"503"}, result.refused
    assert result.duplicate_records == result.duplicate_samples == 0


# -- blob storage that cannot be written ---------------------------------------------------------


@contextlib.contextmanager
def replaced_by_a_file(folder: Path) -> Iterator[None]:
    """The folder becomes a regular file until the block ends: every write under it fails.

    chmod 0500 would not do: the tests run as root, and root writes into read-only folders.
    A file where a folder should be fails for root too (ENOTDIR, EEXIST), as a lost mount or a
    broken volume would; a full disk (ENOSPC) takes the same path through the hub.
    """
    aside = folder.with_name(f"{folder.name}.aside")
    folder.mkdir(parents=True, exist_ok=True)
    folder.rename(aside)
    folder.write_bytes(b"not a folder")
    try:
        yield
    finally:
        folder.unlink()
        aside.rename(folder)


def test_failing_blob_storage_refuses_samples_with_a_reason_and_keeps_taking_telemetry(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    settings = hub_settings(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path)
    sent, probes_503 = Sent([], []), 0
    with running_hub(settings) as hub:
        token = hub.add_device(DEVICE)
        broken = (hub.blobs_dir, hub.blobs_dir / "samples" / DEVICE)  # the store, one device
        with Spool(tmp_path / "spool.sqlite") as spool, fast_uplink(hub, spool, token) as up:
            up.start()
            for round_, folder in enumerate(broken):
                with replaced_by_a_file(folder):
                    sent.add_round(spool, round_)
                    answers = probe_all(hub, token, 1, first=PROBE_FRAME + 10 * round_)
                    assert answers[0][0].status_code == 200  # telemetry needs no blob
                    sent.telemetry.append(PROBE_FRAME + 10 * round_)
                    assert_retry_later(answers[1:], "blob storage failed")
                    probes_503 += 1
                    wait_for(lambda: spool.stats().pending_telemetry == 0, "telemetry")
                    time.sleep(FAULT_S)  # the uplink keeps retrying its samples meanwhile
                    assert spool.stats().pending_samples == SAMPLES_PER_ROUND
                    stored_samples = sorted(stored_rows(settings.db_url)[1])
                    assert stored_samples == sent.samples[:-SAMPLES_PER_ROUND]  # none half
                wait_until_drained(spool)  # repaired: the spooled samples go out
        result = delivery(hub, settings.db_url, sent, "blob store unwritable", len(broken),
                          caplog, probes_503, up)
    assert set(result.refused) == {"503"}, result.refused
    assert result.orphan_blobs == 0
    assert result.duplicate_records == result.duplicate_samples == 0


def test_faults_that_cannot_be_staged_here_still_read_as_reasons() -> None:
    # No small filesystem to fill (ENOSPC); a driver error without a message must not crash.
    full = unavailable_reason(OSError(errno.ENOSPC, "No space left on device", "/var/hub/x"))
    silent = sa.exc.OperationalError("COMMIT", {}, sqlite3.OperationalError())
    dropped = sa.exc.DisconnectionError("connection lost to db.internal:5432")
    assert full == "blob storage failed: No space left on device"
    assert unavailable_reason(silent) == "database unavailable: ?"
    assert unavailable_reason(dropped) == "database unavailable: DisconnectionError"
