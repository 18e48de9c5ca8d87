"""The spool keeps what was committed, drops by its stated policy, and survives bad files."""

from __future__ import annotations

import random
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_runtime.contract import FrameStats, SampleMeta, SamplePolicy
from edge_runtime.outbox.budget import SpoolBudget, SpoolCounter, SpoolError
from edge_runtime.outbox.spool import Spool
from edge_runtime.outbox.writer import SpoolWriter

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def frame_stats(frame_id: int, device_id: str = "cam-1") -> FrameStats:
    return FrameStats(
        device_id=device_id, model_version="m1", frame_id=frame_id,
        captured_at=T0 + timedelta(milliseconds=33 * frame_id),
        pre_ms=1.0, infer_ms=8.5, post_ms=0.4, detections=2, class_counts={"bolt": 2},
        conf_max=0.9, conf_mean=0.7, conf_min=0.5, uncertain=1,
        box_area_mean=0.02, box_area_min=0.01, box_area_max=0.03, box_aspect_mean=1.1,
        brightness=0.5, contrast=0.2, sharpness=120.0, saturation=0.3,
    )


def sample_meta(frame_id: int, device_id: str = "cam-1") -> SampleMeta:
    return SampleMeta(
        device_id=device_id, model_version="m1", frame_id=frame_id,
        captured_at=T0 + timedelta(milliseconds=33 * frame_id),
        policy=SamplePolicy.UNCERTAIN, uncertainty=0.8, width=640, height=480, predictions=[],
    )


def fake_jpeg(size: int, seed: int = 0) -> bytes:
    """JPEG magic then incompressible bytes: the spool stores images as they are."""
    return b"\xff\xd8\xff\xe0" + random.Random(seed).randbytes(size - 4)


def open_spool(tmp_path: Path, max_bytes: int = 64 * 1024 * 1024) -> Spool:
    return Spool(tmp_path / "spool.db", SpoolBudget(max_bytes=max_bytes))


def test_telemetry_roundtrips_in_commit_order(tmp_path: Path) -> None:
    with open_spool(tmp_path) as spool:
        assert spool.add_telemetry([frame_stats(i) for i in range(5)]) == 5
        pending = spool.pending_telemetry(limit=3)
    assert [r for _, r in pending] == [frame_stats(i) for i in range(3)]


def test_sample_roundtrips_with_meta_and_jpeg_bytes(tmp_path: Path) -> None:
    jpeg = fake_jpeg(5000)
    with open_spool(tmp_path) as spool:
        assert spool.add_sample(sample_meta(7), jpeg) is True
        [(_, meta, image)] = spool.pending_samples(limit=10)
    assert (meta, image) == (sample_meta(7), jpeg)


def test_readding_a_record_id_is_a_no_op(tmp_path: Path) -> None:
    with open_spool(tmp_path) as spool:
        spool.add_telemetry([frame_stats(1), frame_stats(2)])
        assert spool.add_telemetry([frame_stats(2), frame_stats(3)]) == 1
        spool.add_sample(sample_meta(1), fake_jpeg(100))
        assert spool.add_sample(sample_meta(1), fake_jpeg(100, seed=1)) is False
        stats = spool.stats()
    assert (stats.pending_telemetry, stats.pending_samples) == (3, 1)


def test_committed_rows_survive_reopening(tmp_path: Path) -> None:
    with open_spool(tmp_path) as spool:
        spool.add_telemetry([frame_stats(i) for i in range(10)])
        spool.add_sample(sample_meta(3), fake_jpeg(300))
    with open_spool(tmp_path) as spool:
        assert len(spool.pending_telemetry(limit=100)) == 10
        assert len(spool.pending_samples(limit=100)) == 1


def test_ack_deletes_only_the_acked_rows(tmp_path: Path) -> None:
    with open_spool(tmp_path) as spool:
        spool.add_telemetry([frame_stats(i) for i in range(6)])
        spool.add_sample(sample_meta(1), fake_jpeg(100))
        spool.add_sample(sample_meta(2), fake_jpeg(100))
        first_three = [row_id for row_id, _ in spool.pending_telemetry(limit=3)]
        assert spool.ack_telemetry(first_three) == 3
        assert spool.ack_telemetry(first_three) == 0
        [(sample_row, _, _), _] = spool.pending_samples(limit=10)
        spool.ack_samples([sample_row])
        left = [r.frame_id for _, r in spool.pending_telemetry(limit=100)]
        samples_left = [m.frame_id for _, m, _ in spool.pending_samples(limit=10)]
    assert (left, samples_left) == ([3, 4, 5], [2])


def test_rejected_rows_are_deleted_and_counted(tmp_path: Path) -> None:
    with open_spool(tmp_path) as spool:
        spool.add_telemetry([frame_stats(i) for i in range(4)])
        rows = [row_id for row_id, _ in spool.pending_telemetry(limit=2)]
        spool.reject_telemetry(rows)
        stats = spool.stats()
    assert stats.pending_telemetry == 2
    assert stats.counters[SpoolCounter.REJECTED_TELEMETRY] == 2


def test_frame_ids_are_monotonic_across_reopen(tmp_path: Path) -> None:
    with open_spool(tmp_path) as spool:
        first = spool.reserve_frame_ids(100)
        second = spool.reserve_frame_ids(1)
    with open_spool(tmp_path) as spool:
        third = spool.reserve_frame_ids(5)
    assert second == first + 100
    assert third == second + 1


def test_over_budget_drops_oldest_samples_before_any_telemetry(tmp_path: Path) -> None:
    budget = 1024 * 1024
    with open_spool(tmp_path, max_bytes=budget) as spool:
        spool.add_telemetry([frame_stats(i) for i in range(300)])
        sizes = []
        for i in range(40):
            spool.add_sample(sample_meta(i), fake_jpeg(50_000, seed=i))
            sizes.append(spool.disk_bytes())
        stats = spool.stats()
        kept = [meta.frame_id for _, meta, _ in spool.pending_samples(limit=100)]
    assert max(sizes) <= budget
    assert stats.dropped_samples > 0
    assert stats.dropped_telemetry == 0 and stats.pending_telemetry == 300
    assert kept == list(range(40 - len(kept), 40)), "the oldest frames go first"
    assert stats.dropped_samples + stats.pending_samples == 40


def test_over_budget_without_samples_drops_oldest_telemetry(tmp_path: Path) -> None:
    budget = 512 * 1024
    with open_spool(tmp_path, max_bytes=budget) as spool:
        for start in range(0, 3000, 100):
            spool.add_telemetry([frame_stats(i) for i in range(start, start + 100)])
            assert spool.disk_bytes() <= budget
        stats = spool.stats()
        kept = [r.frame_id for _, r in spool.pending_telemetry(limit=10_000)]
    assert stats.dropped_telemetry > 0
    assert stats.dropped_telemetry + stats.pending_telemetry == 3000
    assert kept == list(range(3000 - len(kept), 3000))


def test_space_freed_by_acks_is_reused_before_anything_is_dropped(tmp_path: Path) -> None:
    budget = 1024 * 1024
    with open_spool(tmp_path, max_bytes=budget) as spool:
        for round_ in range(3):
            for i in range(12):
                spool.add_sample(sample_meta(round_ * 100 + i), fake_jpeg(50_000, seed=i))
            spool.ack_samples([row_id for row_id, _, _ in spool.pending_samples(limit=100)])
        stats = spool.stats()
    assert stats.dropped_samples == 0
    assert stats.bytes <= budget


def test_file_that_is_not_a_database_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    path.write_bytes(b"this is not sqlite " * 1000)
    with Spool(path, SpoolBudget()) as spool:
        spool.add_telemetry([frame_stats(1)])
        stats = spool.stats()
        moved = spool.quarantined_to
    assert moved is not None and moved.name.startswith("spool.db.corrupt-")
    assert moved.read_bytes().startswith(b"this is not sqlite")
    assert stats.quarantined == 1 and stats.pending_telemetry == 1


def test_database_failing_quick_check_is_quarantined_and_ids_stay_ahead(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool(path, SpoolBudget()) as spool:
        spool.add_telemetry([frame_stats(i) for i in range(2000)])
        old_ids_end = spool.reserve_frame_ids(1) + 1
    with path.open("r+b") as f:  # scribble over b-tree pages in the middle of the file
        f.seek(8 * 4096)
        f.write(b"\x07" * 4096 * 4)
    with Spool(path, SpoolBudget()) as spool:
        stats = spool.stats()
        new_id = spool.reserve_frame_ids(1)
        check = spool._db.execute("PRAGMA integrity_check").fetchone()[0]
    assert stats.quarantined == 1 and stats.pending_telemetry == 0
    assert new_id >= old_ids_end
    assert check == "ok"


@pytest.mark.parametrize(
    "misuse",
    [
        lambda s: s.reserve_frame_ids(0),
        lambda s: s.pending_telemetry(limit=0),
        lambda s: s.add_sample(sample_meta(1), b"PNG not a jpeg"),
        lambda s: s.add_sample(sample_meta(1), fake_jpeg(200 * 1024)),
        lambda s: s.add_telemetry([sample_meta(1)]),
        lambda s: s.add_to_counter(SpoolCounter.NEXT_FRAME_ID, 5),
    ],
    ids=["reserve-zero", "limit-zero", "not-jpeg", "jpeg-over-quarter-budget", "wrong-type",
         "move-frame-id-counter"],
)
def test_misuse_raises_spool_error(tmp_path: Path, misuse) -> None:
    with open_spool(tmp_path, max_bytes=512 * 1024) as spool, pytest.raises(SpoolError):
        misuse(spool)


def test_budget_below_minimum_and_closed_spool_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="max_bytes=1000"):
        SpoolBudget(max_bytes=1000)
    spool = open_spool(tmp_path)
    spool.close()
    with pytest.raises(SpoolError, match="closed"):
        spool.add_telemetry([frame_stats(1)])


def test_spool_is_wal_with_full_sync_and_incremental_vacuum(tmp_path: Path) -> None:
    with open_spool(tmp_path) as spool:
        spool.add_telemetry([frame_stats(1)])
    db = sqlite3.connect(tmp_path / "spool.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    db.close()


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


def test_writer_commits_full_batches_and_holds_the_rest_until_the_interval(
        tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    writer = SpoolWriter(spool, flush_every=50, flush_interval_s=30.0)
    for i in range(123):
        assert writer.submit(frame_stats(i))
    wait_for(lambda: writer.committed == 100)
    time.sleep(0.1)
    assert spool.stats().pending_telemetry == 100
    writer.close()
    assert writer.committed == 123
    assert spool.stats().pending_telemetry == 123
    spool.close()


def test_writer_flushes_a_partial_batch_after_flush_interval(tmp_path: Path) -> None:
    with open_spool(tmp_path) as spool:
        writer = SpoolWriter(spool, flush_every=1000, flush_interval_s=0.1)
        writer.submit(frame_stats(1))
        writer.submit_sample(sample_meta(1), fake_jpeg(1000))
        wait_for(lambda: writer.committed == 1 and writer.committed_samples == 1, timeout=2.0)
        writer.close()
        stats = spool.stats()
    assert (stats.pending_telemetry, stats.pending_samples) == (1, 1)


def test_writer_drops_and_counts_records_when_its_queue_is_full(tmp_path: Path) -> None:
    with open_spool(tmp_path) as spool:
        writer = SpoolWriter(spool, queue_size=2, flush_every=1, flush_interval_s=0.05)
        accepted = sum(writer.submit(frame_stats(i)) for i in range(2000))
        writer.close()
        stats = spool.stats()
    assert writer.dropped_queue_full > 0
    assert accepted + writer.dropped_queue_full == 2000
    assert writer.committed == accepted == stats.pending_telemetry
    assert stats.counters[SpoolCounter.DROPPED_QUEUE_FULL] == writer.dropped_queue_full


def test_closed_writer_refuses_records(tmp_path: Path) -> None:
    with open_spool(tmp_path) as spool:
        writer = SpoolWriter(spool)
        writer.close()
        with pytest.raises(SpoolError, match="closed"):
            writer.submit(frame_stats(1))
