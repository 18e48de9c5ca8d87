"""The device registry: who may connect (token hashes), which channel each device follows, and
what its latest heartbeat said."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from edge_runtime.contract import DeviceStatus
from hub.auth import hash_token, new_device_token
from hub.clock import from_us, now_us, to_us
from hub.db import Database, devices
from hub.errors import Conflict, Forbidden, NotFound, Unauthorized
from hub.models import DeviceRecord, HeartbeatTaken, NewDeviceToken
from hub.quarantine import read_stored


@dataclass(frozen=True)
class DeviceIdentity:
    """The device a request's token belongs to; a device may only write as itself."""

    device_id: str
    channel: str

    def check_is(self, claimed: str, what: str) -> None:
        if claimed != self.device_id:
            raise Forbidden(f"{what} claims device {claimed!r}, but the token is "
                            f"{self.device_id!r}'s")


def authenticate(db: Database, token: str) -> DeviceIdentity:
    with db.read() as conn:
        row = conn.execute(
            sa.select(devices.c.device_id, devices.c.channel, devices.c.revoked_us)
            .where(devices.c.token_hash == hash_token(token))).first()
    if row is None:
        raise Unauthorized("unknown device token")
    if row.revoked_us is not None:
        raise Forbidden(f"device {row.device_id!r} is revoked")
    return DeviceIdentity(row.device_id, row.channel)


def add_device(db: Database, device_id: str, channel: str) -> NewDeviceToken:
    token = new_device_token()
    with db.write() as conn:
        inserted = conn.execute(
            db.insert(devices).on_conflict_do_nothing(index_elements=["device_id"])
            .returning(devices.c.device_id),
            {"device_id": device_id, "channel": channel, "token_hash": hash_token(token),
             "created_us": now_us()}).first()
    if inserted is None:
        raise Conflict(f"device {device_id!r} already exists (rotate its token instead)")
    return NewDeviceToken(device_id=device_id, channel=channel, token=token)


def rotate_token(db: Database, device_id: str) -> NewDeviceToken:
    """A new token for a device (the old one stops working); also lifts a revocation."""
    token = new_device_token()
    row = _update(db, device_id, token_hash=hash_token(token), revoked_us=None)
    return NewDeviceToken(device_id=device_id, channel=row.channel, token=token)


def revoke_device(db: Database, device_id: str) -> DeviceRecord:
    return _update(db, device_id, revoked_us=now_us())


def set_channel(db: Database, device_id: str, channel: str) -> DeviceRecord:
    return _update(db, device_id, channel=channel)


def _update(db: Database, device_id: str, **values: Any) -> DeviceRecord:
    with db.write() as conn:
        row = conn.execute(devices.update().where(devices.c.device_id == device_id)
                           .values(**values).returning(*devices.c)).first()
    if row is None:
        raise NotFound(f"no device {device_id!r}")
    return _record(row)


def list_devices(db: Database) -> list[DeviceRecord]:
    with db.read() as conn:
        rows = conn.execute(sa.select(devices).order_by(devices.c.device_id)).all()
    return [_record(row) for row in rows]


def record_heartbeat(db: Database, device: DeviceIdentity, status: DeviceStatus) -> HeartbeatTaken:
    device.check_is(status.device_id, "heartbeat")
    now = now_us()
    # A clock far ahead must not freeze the status: a heartbeat counts as sent no later than it
    # arrived, so the next one from a corrected clock wins again.
    sent_us = min(to_us(status.sent_at), now)
    with db.write() as conn:
        applied = conn.execute(
            devices.update()
            .where(devices.c.device_id == device.device_id)
            # A retried heartbeat that arrives late must not overwrite a newer one.
            .where(sa.or_(devices.c.status_sent_us.is_(None),
                          devices.c.status_sent_us <= sent_us))
            .values(status=status.model_dump_json(), status_sent_us=sent_us,
                    last_seen_us=now)).rowcount == 1
        if not applied:
            conn.execute(devices.update().where(devices.c.device_id == device.device_id)
                         .values(last_seen_us=now))
    return HeartbeatTaken(device_id=device.device_id, applied=applied)


def _record(row: Any) -> DeviceRecord:
    status, status_error = _stored_status(row.status)
    return DeviceRecord(
        device_id=row.device_id,
        channel=row.channel,
        created_at=from_us(row.created_us),
        revoked_at=None if row.revoked_us is None else from_us(row.revoked_us),
        last_seen=None if row.last_seen_us is None else from_us(row.last_seen_us),
        telemetry_stored=row.telemetry_stored,
        samples_stored=row.samples_stored,
        status=status,
        status_error=status_error,
    )


def _stored_status(stored: str | None) -> tuple[DeviceStatus | None, str | None]:
    """The stored heartbeat, or None and why not: a heartbeat stored under an older, looser
    contract may fail today's, and one such device must not take the whole list down."""
    return (None, None) if stored is None else read_stored(DeviceStatus, stored,
                                                           "stored heartbeat")
