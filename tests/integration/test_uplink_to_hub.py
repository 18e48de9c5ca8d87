"""The real device side (edge_runtime's Spool and Uplink) against the real hub: what a device
spools arrives exactly once, however often it is sent; a batch over the hub's limit is split."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from edge_runtime.contract import DeviceStatus
from edge_runtime.outbox.spool import Spool
from edge_runtime.outbox.uplink import Uplink
from edge_runtime.outbox.uplink_policy import UplinkConfig
from tests.support.hub import RunningHub, hub_settings, running_hub
from tests.support.records import jpeg, meta, stats

DEVICE = "cam-7"


def uplink(hub: RunningHub, spool: Spool, token: str) -> Uplink:
    def status() -> DeviceStatus:
        s = spool.stats()
        return DeviceStatus(device_id=DEVICE, sent_at=datetime.now(UTC), model_version="m1",
                            uptime_s=1.0, frames_seen=1201, spool_telemetry=s.pending_telemetry,
                            spool_samples=s.pending_samples, spool_bytes=s.bytes,
                            dropped={"dropped_samples": s.dropped_samples})

    config = UplinkConfig(hub_url=hub.url, device_id=DEVICE, token=token, batch_size=500,
                          timeout_s=10.0)
    return Uplink(spool, config, status)


def test_spooled_records_reach_the_hub_exactly_once(hub: RunningHub, tmp_path: Path) -> None:
    token = hub.add_device(DEVICE)
    records = [stats(DEVICE, i) for i in range(1200)]
    with Spool(tmp_path / "spool.sqlite") as spool, uplink(hub, spool, token) as up:
        spool.add_telemetry(records)
        spool.add_sample(meta(DEVICE, 5), jpeg(seed=5))
        first = up.drain_once()
        assert up.send_heartbeat()
        # The device lost its acknowledgements (say, a crash before deleting): it sends again.
        spool.add_telemetry(records[:700])
        spool.add_sample(meta(DEVICE, 5), jpeg(seed=5))
        again = up.drain_once()
        left = spool.stats()
    assert (first.sent_telemetry, first.sent_samples, first.failed) == (1200, 1, None)
    assert (again.sent_telemetry, again.sent_samples, again.failed) == (700, 1, None)
    assert (left.pending_telemetry, left.pending_samples) == (0, 0)
    with hub.admin() as admin:
        frame = admin.telemetry(device_id=DEVICE)
        kept = admin.samples(device_id=DEVICE)
        image = admin.sample_image(f"{DEVICE}/5")
        (device,) = admin.devices()
    assert sorted(frame.frame_id) == list(range(1200))  # every record, none twice
    assert [s.record_id for s in kept] == [f"{DEVICE}/5"]
    assert image == jpeg(seed=5)
    assert (device.telemetry_stored, device.samples_stored) == (1200, 1)
    assert device.status is not None and device.status.frames_seen == 1201


def test_a_batch_over_the_hub_limit_is_split_until_it_fits(tmp_path: Path) -> None:
    settings = hub_settings(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path,
                            telemetry_body_bytes=2048)  # a few dozen gzip'd records
    records = [stats(DEVICE, i, sharpness=100.0 + i * 0.37) for i in range(600)]
    with running_hub(settings) as hub:
        token = hub.add_device(DEVICE)
        with Spool(tmp_path / "spool.sqlite") as spool, uplink(hub, spool, token) as up:
            spool.add_telemetry(records)
            result = up.drain_once()
            pending = spool.stats().pending_telemetry
        with hub.admin() as admin:
            frame_ids = sorted(admin.telemetry().frame_id)
    assert (result.sent_telemetry, result.rejected_telemetry, pending) == (600, 0, 0)
    assert frame_ids == list(range(600))


def test_a_revoked_device_keeps_its_records(sqlite_hub: RunningHub, tmp_path: Path) -> None:
    token = sqlite_hub.add_device(DEVICE)
    with sqlite_hub.admin() as admin:
        admin.revoke_device(DEVICE)
    with Spool(tmp_path / "spool.sqlite") as spool, uplink(sqlite_hub, spool, token) as up:
        spool.add_telemetry([stats(DEVICE, i) for i in range(10)])
        result = up.drain_once()
        assert spool.stats().pending_telemetry == 10
    assert result.failed is not None and "403" in result.failed.reason
