"""Kept frames: checked image bytes to blob storage under a key the hub makes, metadata to the DB.

The blob is written before the row is committed, so a row never points at a missing image. A
database write that fails before its commit deletes the blob again: each attempt writes under a
key of its own, so that deletes nothing another attempt's row points at. Only a crash, or a
commit whose outcome is unknown, leaves an unreferenced blob (harmless, never served).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from edge_runtime.contract import SampleMeta
from hub.blobs import BlobStore
from hub.clock import from_us, now_us, to_us
from hub.db import Database, devices, samples
from hub.errors import Invalid, NotFound, TooLarge, invalid
from hub.images import DecodeSlots, decode_checked
from hub.models import SampleStored, StoredSample
from hub.quarantine import read_stored
from hub.registry import DeviceIdentity
from hub.settings import HubLimits

log = logging.getLogger(__name__)


def parse_meta(meta_json: str | bytes) -> SampleMeta:
    try:
        return SampleMeta.model_validate_json(meta_json, strict=True)  # no coercion
    except ValidationError as exc:
        raise invalid(exc, "sample meta") from None


def ingest_sample(db: Database, blobs: BlobStore, device: DeviceIdentity, meta: SampleMeta,
                  image: bytes, limits: HubLimits, slots: DecodeSlots) -> SampleStored:
    """Checks and stores a kept frame; its decode waits for one of the process's `slots`."""
    device.check_is(meta.device_id, "sample")
    known = _find(db, meta.device_id, meta.frame_id)
    if known is not None:  # a replay: answer as stored, keep the first copy
        return _stored(meta, known, stored=False)
    if len(image) > limits.sample_image_bytes:
        raise TooLarge(f"image of {len(image)} bytes exceeds {limits.sample_image_bytes}")
    header = decode_checked(image, limits.image_side_px, limits.image_pixels,
                            max_decoded_bytes=limits.image_decoded_bytes, slots=slots)
    if (header.width, header.height) != (meta.width, meta.height):
        raise Invalid(f"image is {header.width}x{header.height}, its meta says "
                      f"{meta.width}x{meta.height}")
    sha256 = hashlib.sha256(image).hexdigest()
    key = (f"samples/{meta.device_id}/{meta.frame_id}-{sha256[:16]}-{uuid.uuid4().hex[:12]}"
           f".{header.type.extension}")
    blobs.put(key, image)
    received = now_us()
    inserted = _commit_row(db, blobs, device, {
        "device_id": meta.device_id, "frame_id": meta.frame_id,
        "captured_us": to_us(meta.captured_at), "received_us": received,
        "uncertainty": meta.uncertainty, "blob_key": key, "content_type": header.type.value,
        "sha256": sha256, "size": len(image), "meta": meta.model_dump_json()})
    if inserted:
        return SampleStored(record_id=meta.record_id, stored=True,
                            content_type=header.type.value, sha256=sha256, size=len(image))
    # A concurrent copy of the same frame won the race: keep its blob, drop ours.
    known = _find(db, meta.device_id, meta.frame_id)
    if known is None:
        raise NotFound(f"sample {meta.record_id} vanished while it was stored")
    if known.blob_key != key:
        blobs.delete(key)
    return _stored(meta, known, stored=False)


def _commit_row(db: Database, blobs: BlobStore, device: DeviceIdentity,
                row: dict[str, Any]) -> bool:
    """Inserts a sample's row; False when a copy of the frame is stored already.

    A write that fails before its commit deletes the row's blob: no row will ever point at it.
    """
    committing = False
    try:
        with db.write() as conn:
            inserted = conn.execute(
                db.insert(samples).on_conflict_do_nothing(index_elements=["device_id", "frame_id"])
                .returning(samples.c.id), row).first() is not None
            if inserted:
                conn.execute(devices.update().where(devices.c.device_id == device.device_id)
                             .values(last_seen_us=row["received_us"],
                                     samples_stored=devices.c.samples_stored + 1))
            committing = True
    except Exception:
        if committing:  # the commit failed, yet may have happened: the blob must stay
            log.warning("sample %s/%s: commit outcome unknown, keeping blob %s",
                        row["device_id"], row["frame_id"], row["blob_key"])
        else:
            with contextlib.suppress(OSError):
                blobs.delete(row["blob_key"])
        raise
    return inserted


def _find(db: Database, device_id: str, frame_id: int) -> Any:
    with db.read() as conn:
        return conn.execute(sa.select(samples).where(samples.c.device_id == device_id,
                                                     samples.c.frame_id == frame_id)).first()


def _stored(meta: SampleMeta, row: Any, *, stored: bool) -> SampleStored:
    return SampleStored(record_id=meta.record_id, stored=stored, content_type=row.content_type,
                        sha256=row.sha256, size=row.size)


def list_samples(db: Database, *, since: datetime | None, until: datetime | None,
                 device_id: str | None, limit: int) -> tuple[list[StoredSample], int]:
    """Kept frames captured in [since, until), oldest first; and how many stored rows were left
    out because the contract no longer accepts their meta (see `hub.quarantine`)."""
    query = sa.select(samples).order_by(samples.c.captured_us, samples.c.id).limit(limit)
    if since is not None:
        query = query.where(samples.c.captured_us >= to_us(since))
    if until is not None:
        query = query.where(samples.c.captured_us < to_us(until))
    if device_id is not None:
        query = query.where(samples.c.device_id == device_id)
    with db.read() as conn:
        rows = conn.execute(query).all()
    found = [StoredSample(record_id=f"{row.device_id}/{row.frame_id}", meta=meta,
                          content_type=row.content_type, sha256=row.sha256, size=row.size,
                          received_at=from_us(row.received_us))
             for row in rows
             if (meta := read_stored(SampleMeta, row.meta, "stored sample")[0]) is not None]
    if len(found) < len(rows):
        log.warning("samples list: %d stored rows fail the contract and were left out "
                    "(`edgeloop hub device quarantine` moves them aside)", len(rows) - len(found))
    return found, len(rows) - len(found)



def sample_image(db: Database, device_id: str, frame_id: int) -> tuple[str, str, int]:
    """(blob key, content type, size) of a stored frame."""
    row = _find(db, device_id, frame_id)
    if row is None:
        raise NotFound(f"no sample {device_id}/{frame_id}")
    return row.blob_key, row.content_type, row.size
