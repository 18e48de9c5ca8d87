"""Telemetry and heartbeat ingest against a real hub: idempotency, limits, refusals, concurrency,
and the Parquet query the flows read the fleet's data with."""

from __future__ import annotations

import gzip
import sqlite3
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from edge_runtime.contract import MAX_BATCH_RECORDS, DeviceStatus, TelemetryBatch
from hub.client import HubRequestError
from tests.support.hub import RunningHub, hub_settings, running_hub
from tests.support.records import T0, batch, gz, stats

JSON_GZIP = {"Content-Type": "application/json", "Content-Encoding": "gzip"}


def test_replayed_batch_is_stored_once_and_still_acknowledged(hub: RunningHub) -> None:
    token = hub.add_device("cam-1")
    with hub.device(token) as device, hub.admin() as admin:
        first = device.post_telemetry(batch("cam-1", range(0, 300)))
        replay = device.post_telemetry(batch("cam-1", range(0, 300)))
        overlap = device.post_telemetry(batch("cam-1", range(200, 400)))
        frame = admin.telemetry(device_id="cam-1")
        record = next(d for d in admin.devices() if d.device_id == "cam-1")
    assert (first.stored, first.duplicates) == (300, 0)
    assert (replay.stored, replay.duplicates) == (0, 300)
    assert (overlap.stored, overlap.duplicates) == (100, 100)
    assert sorted(frame.frame_id) == list(range(400))
    assert record.telemetry_stored == 400
    assert record.last_seen is not None


def test_a_full_batch_of_the_contract_maximum_is_stored(hub: RunningHub) -> None:
    token = hub.add_device("cam-1")
    with hub.device(token) as device:
        answer = device.post_telemetry(batch("cam-1", range(MAX_BATCH_RECORDS)))
    assert (answer.received, answer.stored) == (MAX_BATCH_RECORDS, MAX_BATCH_RECORDS)


def test_uncompressed_batch_is_accepted(sqlite_hub: RunningHub) -> None:
    token = sqlite_hub.add_device("cam-1")
    with sqlite_hub.device(token) as device:
        assert device.post_telemetry(batch("cam-1", range(5)), compress=False).stored == 5


def test_invalid_record_is_refused_with_422_naming_the_field(sqlite_hub: RunningHub) -> None:
    token = sqlite_hub.add_device("cam-1")
    good = [stats("cam-1", i).model_dump(mode="json") for i in range(3)]
    good[1]["conf_max"] = 1.5  # scores live in 0..1
    body = {"device_id": "cam-1", "sent_at": T0.isoformat(), "records": good}
    with sqlite_hub.http(token) as http, sqlite_hub.admin() as admin:
        answer = http.post("/v1/telemetry", json=body)
        assert answer.status_code == 422
        assert "records.1.conf_max" in answer.json()["detail"]
        assert answer.json()["errors"][0]["loc"] == ["records", 1, "conf_max"]
        assert http.post("/v1/telemetry", content=b"{not json",
                         headers={"Content-Type": "application/json"}).status_code == 422
        assert len(admin.telemetry()) == 0  # the batch is refused whole, never in part


def test_body_over_the_limit_is_refused_with_413_before_it_is_read(tmp_path: Path) -> None:
    settings = hub_settings(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path,
                            telemetry_body_bytes=64 * 1024)
    with running_hub(settings) as hub:
        token = hub.add_device("cam-1")
        big = gzip.compress(batch("cam-1", range(500)).model_dump_json().encode(), 0)  # ~200 KB
        with hub.http(token) as http:
            declared = http.post("/v1/telemetry", content=big, headers=JSON_GZIP)
            chunks = (big[i:i + 8192] for i in range(0, len(big), 8192))  # no Content-Length
            streamed = http.post("/v1/telemetry", content=chunks, headers=JSON_GZIP)
    assert declared.status_code == 413, declared.text
    assert streamed.status_code == 413, streamed.text
    assert "limit" in declared.json()["detail"]


def test_gzip_bomb_is_refused_with_413(sqlite_hub: RunningHub) -> None:
    token = sqlite_hub.add_device("cam-1")
    bomb = gzip.compress(b"[" + b" " * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB from ~64 KB
    with sqlite_hub.http(token) as http:
        answer = http.post("/v1/telemetry", content=bomb, headers=JSON_GZIP)
        truncated = http.post("/v1/telemetry", content=gz(batch("cam-1", [1]))[:-9],
                              headers=JSON_GZIP)
    assert answer.status_code == 413
    assert "decompressed" in answer.json()["detail"]
    assert truncated.status_code == 400


@pytest.mark.parametrize("headers", [
    {"Content-Type": "text/plain"},
    {"Content-Type": "application/json", "Content-Encoding": "br"},
    {},
])
def test_unsupported_media_type_is_415(sqlite_hub: RunningHub, headers: dict[str, str]) -> None:
    token = sqlite_hub.add_device("cam-1")
    with sqlite_hub.http(token) as http:
        answer = http.post("/v1/telemetry", content=batch("cam-1", [1]).model_dump_json(),
                           headers=headers)
    assert answer.status_code == 415
    assert answer.json()["detail"]


def test_concurrent_devices_each_land_exactly_once(hub: RunningHub) -> None:
    devices = {f"cam-{i}": hub.add_device(f"cam-{i}") for i in range(6)}
    errors: list[BaseException] = []

    def upload(device_id: str, token: str) -> None:
        try:
            with hub.device(token) as client:
                for start in range(0, 1000, 250):
                    client.post_telemetry(batch(device_id, range(start, start + 250)))
                    client.post_telemetry(batch(device_id, range(start, start + 250)))  # replay
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=item) for item in devices.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with hub.admin() as admin:
        frame = admin.telemetry()
        stored = {d.device_id: d.telemetry_stored for d in admin.devices()}
    assert len(frame) == 6000
    assert frame.groupby("device_id").frame_id.nunique().to_dict() == dict.fromkeys(devices, 1000)
    assert stored == dict.fromkeys(devices, 1000)


def test_parquet_query_returns_the_time_range_flattened(hub: RunningHub) -> None:
    token_a, token_b = hub.add_device("cam-a"), hub.add_device("cam-b")
    at = [T0 + timedelta(minutes=m) for m in range(10)]
    records_a = [stats("cam-a", i, at=at[i], counts={"bolt": 2, "nut": i % 2}) for i in range(10)]
    records_b = [stats("cam-b", i, at=at[i], counts={"washer": 1},
                       embedding=[0.5, 0.25]) for i in range(10)]
    with hub.device(token_a) as a, hub.device(token_b) as b, hub.admin() as admin:
        a.post_telemetry(TelemetryBatch(device_id="cam-a", sent_at=T0, records=records_a))
        b.post_telemetry(TelemetryBatch(device_id="cam-b", sent_at=T0, records=records_b))
        window = admin.telemetry(at[2], at[5])
        only_a = admin.telemetry(at[2], at[5], device_id="cam-a", classes=["bolt", "screw"])
        empty = admin.telemetry(at[9] + timedelta(hours=1), at[9] + timedelta(hours=2))
        first_three = admin.telemetry(at[0], limit=3)
    assert len(window) == 6
    assert sorted(zip(window.device_id, window.frame_id, strict=True)) == [
        (d, i) for d in ("cam-a", "cam-b") for i in (2, 3, 4)]
    assert list(window.captured_at.drop_duplicates()) == at[2:5]
    assert {"count_bolt", "count_nut", "count_washer", "emb_0", "emb_1"} <= set(window.columns)
    assert "class_counts" not in window.columns and "embedding" not in window.columns
    a_rows = window[window.device_id == "cam-a"].sort_values("frame_id")
    assert list(a_rows.count_bolt) == [2, 2, 2]
    assert list(a_rows.count_nut) == [0, 1, 0]
    assert list(a_rows.count_washer) == [0, 0, 0]
    assert list(only_a.frame_id) == [2, 3, 4]
    assert [c for c in only_a.columns if c.startswith("count_")] == ["count_bolt", "count_screw"]
    assert list(only_a.count_screw) == [0, 0, 0]
    assert len(empty) == 0 and "brightness" in empty.columns
    assert not window.attrs["truncated"]
    assert (len(first_three), first_three.attrs["truncated"]) == (3, True)
    assert list(first_three.captured_at) == [at[0], at[0], at[1]]  # oldest first


def test_telemetry_window_reads_every_page_so_the_newest_rows_are_not_cut(
        sqlite_hub: RunningHub) -> None:
    token_a, token_b = sqlite_hub.add_device("cam-a"), sqlite_hub.add_device("cam-b")
    at = [T0 + timedelta(seconds=s) for s in range(12)]
    with sqlite_hub.device(token_a) as a, sqlite_hub.device(token_b) as b, \
            sqlite_hub.admin() as admin:
        a.post_telemetry(TelemetryBatch(device_id="cam-a", sent_at=T0, records=[
            stats("cam-a", i, at=at[i], counts={"bolt": 1}) for i in range(12)]))
        b.post_telemetry(TelemetryBatch(device_id="cam-b", sent_at=T0, records=[
            stats("cam-b", i, at=at[i], counts={"washer": 2}) for i in range(12)]))
        one_call = admin.telemetry(at[0], limit=5)
        window = admin.telemetry_window(at[0], page_rows=5)
    assert one_call.attrs["truncated"] and at[11] not in set(one_call.captured_at)
    assert sorted(zip(window.device_id, window.frame_id, strict=True)) == [
        (d, i) for d in ("cam-a", "cam-b") for i in range(12)]  # each record once, the newest too
    assert list(window.count_washer[window.device_id == "cam-a"]) == [0] * 12


def test_naive_query_times_are_refused(sqlite_hub: RunningHub) -> None:
    with sqlite_hub.admin() as admin, pytest.raises(HubRequestError) as refused:
        admin.telemetry(T0.replace(tzinfo=None))
    assert refused.value.status == 422


def test_heartbeat_updates_the_registry_and_a_late_one_does_not_win(hub: RunningHub) -> None:
    token = hub.add_device("cam-1")

    def status(minute: int, frames: int) -> DeviceStatus:
        return DeviceStatus(device_id="cam-1", sent_at=T0 + timedelta(minutes=minute),
                            model_version="m7", release_version=7, uptime_s=60.0 * minute,
                            frames_seen=frames, spool_telemetry=12, spool_samples=3,
                            spool_bytes=4096, dropped={"dropped_samples": 2})

    with hub.device(token) as device, hub.admin() as admin:
        assert device.heartbeat(status(5, 500)).applied
        assert not device.heartbeat(status(4, 400)).applied  # a retried, older heartbeat
        record = admin.devices()[0]
    assert record.status is not None
    assert (record.status.model_version, record.status.frames_seen) == ("m7", 500)
    assert (record.status.spool_telemetry, record.status.dropped) == (12, {"dropped_samples": 2})


def test_busy_database_is_answered_503_and_nothing_is_lost(tmp_path: Path) -> None:
    settings = replace(hub_settings(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path),
                       db_busy_timeout_s=0.2)
    with running_hub(settings) as hub:
        token = hub.add_device("cam-1")
        blocker = sqlite3.connect(tmp_path / "hub.sqlite", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with hub.http(token) as http:
                busy = http.post("/v1/telemetry", content=gz(batch("cam-1", range(10))),
                                 headers=JSON_GZIP)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        with hub.device(token) as device, hub.admin() as admin:
            retried = device.post_telemetry(batch("cam-1", range(10)))
            assert len(admin.telemetry()) == 10
    assert busy.status_code == 503
    assert busy.headers["Retry-After"]
    assert retried.stored == 10


def test_records_come_back_as_sent(sqlite_hub: RunningHub) -> None:
    token = sqlite_hub.add_device("cam-1")
    sent = stats("cam-1", 3, embedding=[0.1, 0.2, 0.3], conf_max=None, conf_mean=None,
                 conf_min=None, detections=0, counts={})
    with sqlite_hub.device(token) as device, sqlite_hub.admin() as admin:
        device.post_telemetry(TelemetryBatch(device_id="cam-1", sent_at=T0, records=[sent]))
        row = admin.telemetry().iloc[0]
    assert (row.device_id, row.frame_id, row.model_version) == ("cam-1", 3, "m1")
    assert row.captured_at.to_pydatetime() == sent.captured_at
    assert (row.sharpness, row.detections) == (120.0, 0)
    assert [row.emb_0, row.emb_1, row.emb_2] == [0.1, 0.2, 0.3]
    assert pd.isna(row.conf_max)
