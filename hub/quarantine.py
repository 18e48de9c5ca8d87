"""Rows stored before the contract was tightened that it no longer accepts: the exports leave them
out (and count them); `quarantine_device` moves a device's such rows out of the live tables.

Nothing is deleted: each row goes, as it was stored, into the `quarantine` table with the reason.
"""

from __future__ import annotations

from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from edge_runtime.contract import DeviceStatus, FrameStats, SampleMeta
from hub.clock import now_us
from hub.db import Database, devices, quarantine, samples, telemetry
from hub.errors import NotFound, invalid
from hub.models import Quarantined

PAGE_ROWS = 5000
M = TypeVar("M", bound=BaseModel)


def read_stored(model: type[M], text: str, what: str) -> tuple[M | None, str | None]:
    """A stored row as the contract reads it now: (the record, None), or (None, why not)."""
    try:
        return model.model_validate_json(text), None
    except ValidationError as exc:
        return None, invalid(exc, what, max_errors=0).detail


def quarantine_device(db: Database, device_id: str) -> Quarantined:
    with db.read() as conn:
        status = conn.execute(sa.select(devices.c.status)
                              .where(devices.c.device_id == device_id)).first()
    if status is None:
        raise NotFound(f"no device {device_id!r}")
    checked, moved = {}, {}
    checked["telemetry"], moved["telemetry"] = _sweep(
        db, device_id, "telemetry", telemetry, telemetry.c.body, FrameStats)
    checked["sample"], moved["sample"] = _sweep(
        db, device_id, "sample", samples, samples.c.meta, SampleMeta)
    checked["heartbeat"], moved["heartbeat"] = 0, 0
    if status.status is not None:
        checked["heartbeat"] = 1
        _, reason = read_stored(DeviceStatus, status.status, "stored heartbeat")
        if reason is not None:
            with db.write() as conn:
                _keep(conn, "heartbeat", device_id, None, status.status, None, reason)
                conn.execute(devices.update().where(devices.c.device_id == device_id)
                             .values(status=None, status_sent_us=None))
            moved["heartbeat"] = 1
    return Quarantined(device_id=device_id, checked=checked, quarantined=moved)


def _sweep(db: Database, device_id: str, kind: str, table: sa.Table, body: sa.Column[Any],
           model: type[BaseModel]) -> tuple[int, int]:
    """Reads the device's rows page by page (by id); moves the failing ones. (read, moved)"""
    read = moved = 0
    after = -1
    while True:
        with db.read() as conn:
            page = conn.execute(sa.select(table).where(table.c.device_id == device_id,
                                                       table.c.id > after)
                                .order_by(table.c.id).limit(PAGE_ROWS)).all()
        if not page:
            return read, moved
        read, after = read + len(page), page[-1].id
        bad = [(row, reason) for row in page
               if (reason := read_stored(model, getattr(row, body.name), f"stored {kind}")[1])
               is not None]
        if bad:
            with db.write() as conn:
                for row, reason in bad:
                    _keep(conn, kind, device_id, row.frame_id, getattr(row, body.name),
                          getattr(row, "blob_key", None), reason)
                conn.execute(table.delete().where(table.c.id.in_([row.id for row, _ in bad])))
                stored = (devices.c.telemetry_stored if kind == "telemetry"
                          else devices.c.samples_stored)
                conn.execute(devices.update().where(devices.c.device_id == device_id)
                             .values({stored: stored - len(bad)}))
            moved += len(bad)


def _keep(conn: sa.Connection, kind: str, device_id: str, frame_id: int | None, body: str,
          blob_key: str | None, reason: str) -> None:
    conn.execute(quarantine.insert().values(kind=kind, device_id=device_id, frame_id=frame_id,
                                            body=body, blob_key=blob_key, reason=reason,
                                            quarantined_us=now_us()))
