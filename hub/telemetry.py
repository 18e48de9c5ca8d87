"""Telemetry: batches in (validated once, one transaction, duplicates ignored), Parquet out."""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError

from edge_runtime.contract import MAX_CLASSES, FrameStats, TelemetryBatch, stats_row
from hub.clock import now_us, to_us
from hub.db import Database, devices, telemetry
from hub.errors import invalid
from hub.models import TelemetryStored
from hub.quarantine import read_stored
from hub.registry import DeviceIdentity

log = logging.getLogger(__name__)
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
        batch = TelemetryBatch.model_validate_json(body, strict=True)  # no coercion
    except ValidationError as exc:
        raise invalid(exc, "telemetry batch") from None
    device.check_is(batch.device_id, "telemetry batch")
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
    skipped: int = 0  # stored rows the contract no longer accepts (see `quarantine`)
    classes_left_out: int = 0  # class names beyond MAX_CLASSES, the rarest, without a column


def query_telemetry(db: Database, *, since: datetime | None, until: datetime | None,
                    device_id: str | None, classes: tuple[str, ...] | None,
                    limit: int) -> TelemetryTable:
    """Records captured in [since, until), oldest first, flattened like the device's stats_row.

    `classes` names the `count_<class>` columns; by default every class seen in the result (the
    MAX_CLASSES most counted, should a device report more). A stored row that no longer passes
    the contract (stored before it was tightened) is left out and counted, never a failure of
    the whole export.
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
    records, skipped = parse_stored(bodies[:limit])
    if skipped:
        log.warning("telemetry export: %d stored rows fail the contract and were left out "
                    "(`edgeloop hub device quarantine` moves them aside)", skipped)
    names, left_out = (classes, 0) if classes is not None else class_columns(records)
    return TelemetryTable(to_parquet(records, names), len(records), truncated, skipped, left_out)


def parse_stored(bodies: Sequence[str]) -> tuple[list[FrameStats], int]:
    """The stored records that pass the contract, and how many did not."""
    try:
        return _RECORDS.validate_json(f"[{','.join(bodies)}]"), 0  # one call: the common case
    except ValidationError:
        read = (read_stored(FrameStats, body, "stored telemetry")[0] for body in bodies)
        good = [record for record in read if record is not None]
        return good, len(bodies) - len(good)


def class_columns(records: list[FrameStats]) -> tuple[tuple[str, ...], int]:
    """Every class name the records count, sorted; past MAX_CLASSES only the most counted (one
    device's made-up names must not widen the fleet's table without end), and how many not."""
    totals: Counter[str] = Counter()
    for record in records:
        totals.update(record.class_counts)
    kept = sorted(totals) if len(totals) <= MAX_CLASSES else sorted(
        name for name, _ in totals.most_common(MAX_CLASSES))
    return tuple(kept), len(totals) - len(kept)


def to_parquet(records: list[FrameStats], names: tuple[str, ...]) -> bytes:
    import pandas as pd  # type: ignore[import-untyped]  # only the query path needs pandas

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
