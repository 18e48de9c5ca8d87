"""Telemetry: batches in (validated once, one transaction, duplicates ignored), Parquet out."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError

from edge_runtime.contract import FrameStats, TelemetryBatch, stats_row
from hub.clock import now_us, to_us
from hub.db import BIGINT_MAX, Database, devices, telemetry
from hub.errors import Invalid, invalid
from hub.models import TelemetryStored
from hub.registry import DeviceIdentity

PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
_RECORDS = TypeAdapter(list[FrameStats])
_FLAT_EXCLUDED = ("class_counts", "embedding")  # stats_row spreads these into columns
_COLUMNS = ("device_id", "frame_id", "model_version", "captured_us", "received_us", "body")


def _insert_sql(dialect: str) -> str:
    marks = ", ".join(["?" if dialect == "sqlite" else "%s"] * len(_COLUMNS))
    return (f"INSERT INTO {telemetry.name} ({', '.join(_COLUMNS)}) VALUES ({marks}) "
            "ON CONFLICT (device_id, frame_id) DO NOTHING")


def ingest_telemetry(db: Database, device: DeviceIdentity, body: bytes) -> TelemetryStored:
    """Stores a batch (JSON bytes) of `device`; answers only after the transaction committed."""
    try:
        batch = TelemetryBatch.model_validate_json(body)
    except ValidationError as exc:
        raise invalid(exc, "telemetry batch") from None
    device.check_is(batch.device_id, "telemetry batch")
    for index, record in enumerate(batch.records):
        if record.frame_id > BIGINT_MAX:  # else the database raises, and that would be a 500
            raise Invalid(f"invalid telemetry batch: records.{index}.frame_id: {record.frame_id} "
                          f"exceeds {BIGINT_MAX}")
    received = now_us()
    dump = FrameStats.__pydantic_serializer__.to_json  # model_dump_json minus per-call overhead
    rows = [(r.device_id, r.frame_id, r.model_version, to_us(r.captured_at), received,
             dump(r).decode()) for r in batch.records]

    def store(conn: sa.Connection) -> int:
        # The driver's executemany: SQLAlchemy's per-row parameter handling cost more than the
        # insert itself. Its rowcount is the rows inserted; duplicates are ignored.
        stored = int(conn.exec_driver_sql(_insert_sql(db.dialect), rows).rowcount)
        conn.execute(devices.update().where(devices.c.device_id == device.device_id)
                     .values(last_seen_us=received,
                             telemetry_stored=devices.c.telemetry_stored + stored))
        return stored

    stored = db.write_grouped(store)  # batches arriving meanwhile share its commit
    return TelemetryStored(device_id=device.device_id, received=len(rows), stored=stored,
                           duplicates=len(rows) - stored)


@dataclass(frozen=True)
class TelemetryTable:
    parquet: bytes
    rows: int
    truncated: bool  # more rows matched than the limit let through


def query_telemetry(db: Database, *, since: datetime | None, until: datetime | None,
                    device_id: str | None, classes: tuple[str, ...] | None,
                    limit: int) -> TelemetryTable:
    """Records captured in [since, until), oldest first, flattened like the device's stats_row.

    `classes` names the `count_<class>` columns; by default every class seen in the result.
    """
    query = sa.select(telemetry.c.body).order_by(telemetry.c.captured_us, telemetry.c.id)
    if since is not None:
        query = query.where(telemetry.c.captured_us >= to_us(since))
    if until is not None:
        query = query.where(telemetry.c.captured_us < to_us(until))
    if device_id is not None:
        query = query.where(telemetry.c.device_id == device_id)
    with db.read() as conn:
        bodies = conn.execute(query.limit(limit + 1)).scalars().all()
    truncated = len(bodies) > limit
    records = _RECORDS.validate_json(f"[{','.join(bodies[:limit])}]")
    return TelemetryTable(to_parquet(records, classes), len(records), truncated)


def to_parquet(records: list[FrameStats], classes: tuple[str, ...] | None) -> bytes:
    import pandas as pd  # type: ignore[import-untyped]  # only the query path needs pandas

    names = classes if classes is not None else tuple(
        sorted({name for r in records for name in r.class_counts}))
    rows = []
    for record in records:
        row = stats_row(record, names)
        # One zone for the whole column: mixed offsets would make pandas fall back to objects.
        row["captured_at"] = record.captured_at.astimezone(UTC)
        rows.append(row)
    columns = [f for f in FrameStats.model_fields if f not in _FLAT_EXCLUDED]
    columns += [f"count_{name}" for name in names]
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)
    out = io.BytesIO()
    frame.to_parquet(out, index=False, engine="pyarrow")
    return out.getvalue()
