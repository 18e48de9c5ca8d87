"""Releases and channels: artefacts checked against their manifest, versions that only go up,
channels that are assigned, promoted and rolled back.

No artefact blob outlives a refused release: everything that can refuse one (manifest, names,
sizes and hashes, a version the column holds, a clash with an existing release) is checked before
the first blob is written, and when the row's insert still fails, the blobs this call wrote are
removed again unless a committed release lists them. Blobs are content-addressed and shared, so
one race is left: a second upload of the same bytes that finds this call's blob already there
(and so writes none) and commits after the removal's check lists a blob that is gone; its devices
then get 503 for that file until the release is uploaded again. Removal is best effort too: if the
database cannot be asked, the blob is kept (an orphan costs disk, a wrong removal costs a
release).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, BinaryIO

import sqlalchemy as sa
from pydantic import ValidationError

from edge_runtime.contract import ModelFile, ReleaseManifest
from hub.blobs import BlobStore, file_chunks
from hub.clock import from_us, now_us
from hub.db import Database, channel_events, releases
from hub.errors import Conflict, Invalid, NotFound, invalid
from hub.models import ChannelEvent, ChannelState, ReleaseRecord

HISTORY_SHOWN = 20
log = logging.getLogger("hub")


@dataclass(frozen=True)
class Upload:
    """One uploaded artefact: the name it was sent under and its (spooled) bytes."""

    name: str
    source: BinaryIO


def artefact_key(file: ModelFile) -> str:
    return f"artefacts/{file.sha256}"  # content-addressed: no client name reaches storage


def parse_manifest(manifest_json: str | bytes) -> tuple[ReleaseManifest, str]:
    """The manifest and its text as uploaded (served verbatim, so a signature over it holds)."""
    try:
        manifest = ReleaseManifest.model_validate_json(manifest_json, strict=True)
    except ValidationError as exc:
        raise invalid(exc, "release manifest") from None
    text = manifest_json.decode() if isinstance(manifest_json, bytes) else manifest_json
    return manifest, text


def create_release(db: Database, blobs: BlobStore, manifest_json: str | bytes,
                   uploads: list[Upload]) -> ReleaseManifest:
    """Checks the release whole, stores its artefacts, then its row (the release exists from
    then on); a refusal at any step leaves no blob of it behind (see the module docstring)."""
    manifest, text = parse_manifest(manifest_json)
    files = {f.name: f for f in manifest.files}
    check_upload_names([f.name for f in manifest.files], [u.name for u in uploads])
    with db.read() as conn:
        _check_new(conn, manifest)  # before hashing gigabytes for a release that cannot land
    for upload in uploads:
        _verify(files[upload.name], upload.source)
    written: list[str] = []
    try:
        for upload in uploads:
            key = artefact_key(files[upload.name])
            if not blobs.exists(key) or blobs.size(key) != files[upload.name].size:
                written.append(key)  # before the write: a half-written blob is removed too
                blobs.put_stream(key, file_chunks(upload.source))
        with db.write() as conn:
            db.lock(conn, "releases")
            _check_new(conn, manifest)  # another publisher may have won since the first check
            conn.execute(releases.insert().values(release_id=manifest.release_id,
                                                  version=manifest.version,
                                                  created_us=now_us(), manifest=text))
    except BaseException:
        remove_unreferenced(db, blobs, written)
        raise
    return manifest


def remove_unreferenced(db: Database, blobs: BlobStore, keys: list[str]) -> None:
    """Removes the artefact blobs `keys` that no committed release lists (best effort)."""
    for key in keys:
        sha256 = key.rpartition("/")[2]
        try:
            with db.read() as conn:
                listed = conn.execute(sa.select(releases.c.release_id).where(
                    releases.c.manifest.contains(sha256, autoescape=True)).limit(1)).first()
            if listed is None:
                blobs.delete(key)
        except Exception as exc:  # the refusal being raised matters more than this removal
            log.warning("kept artefact %s of a refused release: %s", sha256,
                        type(exc).__name__)


def check_upload_names(listed: list[str], uploaded: list[str]) -> None:
    """Each manifest file uploaded exactly once, and nothing else."""
    twice = sorted(n for n, c in Counter(listed).items() if c > 1)
    if twice:
        raise Invalid(f"the manifest lists {twice} more than once")
    sent_twice = sorted(n for n, c in Counter(uploaded).items() if c > 1)
    if sent_twice:
        raise Invalid(f"files {sent_twice} were uploaded more than once")
    missing, extra = sorted(set(listed) - set(uploaded)), sorted(set(uploaded) - set(listed))
    if missing or extra:
        raise Invalid(f"uploaded files do not match the manifest: missing {missing}, "
                      f"not in the manifest {[e[:80] for e in extra]}")


def _check_new(conn: sa.Connection, manifest: ReleaseManifest) -> None:
    exists = conn.execute(sa.select(releases.c.version)
                          .where(releases.c.release_id == manifest.release_id)).first()
    if exists is not None:
        raise Conflict(f"release {manifest.release_id!r} already exists")
    highest = conn.execute(sa.select(sa.func.max(releases.c.version))).scalar()
    if highest is not None and manifest.version <= highest:
        raise Conflict(f"version {manifest.version} is not above the fleet's highest release "
                       f"version {highest}: versions only go up")


def _verify(file: ModelFile, source: BinaryIO) -> None:
    digest, size = hashlib.sha256(), 0
    for chunk in file_chunks(source):
        digest.update(chunk)
        size += len(chunk)
    if size != file.size:
        raise Invalid(f"{file.name}: {size} bytes uploaded, the manifest says {file.size}")
    if digest.hexdigest() != file.sha256:
        raise Invalid(f"{file.name}: sha256 {digest.hexdigest()} does not match the manifest's "
                      f"{file.sha256}")


def list_releases(db: Database) -> list[ReleaseRecord]:
    with db.read() as conn:
        rows = conn.execute(sa.select(releases).order_by(releases.c.version.desc())).all()
        current = _current_all(conn)
    on: dict[str, list[str]] = {}
    for channel, release_id in current.items():
        on.setdefault(release_id, []).append(channel)
    return [ReleaseRecord(manifest=ReleaseManifest.model_validate_json(row.manifest),
                          created_at=from_us(row.created_us),
                          channels=sorted(on.get(row.release_id, []))) for row in rows]


def manifest_text(db: Database, release_id: str) -> str:
    with db.read() as conn:
        text = conn.execute(sa.select(releases.c.manifest)
                            .where(releases.c.release_id == release_id)).scalar()
    if text is None:
        raise NotFound(f"no release {release_id!r}")
    return str(text)


def artefact(db: Database, release_id: str, name: str | None) -> ModelFile:
    """A release's file by name; with name None, its model (first .onnx file, else first file)."""
    manifest = ReleaseManifest.model_validate_json(manifest_text(db, release_id))
    if name is None:
        onnx = [f for f in manifest.files if f.name.endswith(".onnx")]
        return (onnx or manifest.files)[0]
    for file in manifest.files:
        if file.name == name:
            return file
    raise NotFound(f"release {release_id!r} has no file {name[:80]!r}")


def ever_on_channel(db: Database, channel: str, release_id: str) -> bool:
    """Whether the release was ever assigned or promoted on the channel (rolled back or not):
    what a device of that channel may download."""
    with db.read() as conn:
        return conn.execute(sa.select(channel_events.c.id).where(
            channel_events.c.channel == channel,
            channel_events.c.release_id == release_id).limit(1)).first() is not None


def assigned_manifest(db: Database, channel: str) -> str | None:
    """The manifest text that a channel's devices should run, or None."""
    with db.read() as conn:
        return assigned_manifest_in(conn, channel)


# -- channels ------------------------------------------------------------------------------------


def assign(db: Database, channel: str, release_id: str, action: str = "assign") -> ChannelState:
    with db.write() as conn:
        db.lock(conn, "releases")
        if conn.execute(sa.select(releases.c.version)
                        .where(releases.c.release_id == release_id)).first() is None:
            raise NotFound(f"no release {release_id!r}")
        if _current_all(conn, channel).get(channel) != release_id:  # a retry changes nothing
            conn.execute(channel_events.insert().values(
                channel=channel, release_id=release_id, action=action, assigned_us=now_us()))
    return channel_state(db, channel)


def promote(db: Database, channel: str, from_channel: str) -> ChannelState:
    with db.read() as conn:
        source = _current_all(conn, from_channel).get(from_channel)
    if source is None:
        raise Conflict(f"channel {from_channel!r} has no release to promote")
    return assign(db, channel, source, action="promote")


def rollback(db: Database, channel: str) -> ChannelState:
    """Back to the release the channel ran before its current one."""
    with db.write() as conn:
        db.lock(conn, "releases")
        active = conn.execute(
            sa.select(channel_events.c.id)
            .where(channel_events.c.channel == channel, channel_events.c.rolled_back_us.is_(None))
            .order_by(channel_events.c.id.desc()).limit(2)).scalars().all()
        if len(active) < 2:
            raise Conflict(f"channel {channel!r} has no earlier release to roll back to")
        conn.execute(channel_events.update().where(channel_events.c.id == active[0])
                     .values(rolled_back_us=now_us()))
    return channel_state(db, channel)


def channel_state(db: Database, channel: str) -> ChannelState:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(channel_events, releases.c.version, releases.c.manifest)
            .join(releases, channel_events.c.release_id == releases.c.release_id)
            .where(channel_events.c.channel == channel)
            .order_by(channel_events.c.id.desc()).limit(HISTORY_SHOWN)).all()
        current = assigned_manifest_in(conn, channel)
    return ChannelState(
        channel=channel,
        release=None if current is None else ReleaseManifest.model_validate_json(current),
        history=[_event(row) for row in rows])


def list_channels(db: Database) -> list[ChannelState]:
    with db.read() as conn:
        names = conn.execute(sa.select(channel_events.c.channel).distinct()).scalars().all()
    return [channel_state(db, name) for name in sorted(names)]


def assigned_manifest_in(conn: sa.Connection, channel: str) -> str | None:
    return conn.execute(
        sa.select(releases.c.manifest)
        .join(channel_events, channel_events.c.release_id == releases.c.release_id)
        .where(channel_events.c.channel == channel, channel_events.c.rolled_back_us.is_(None))
        .order_by(channel_events.c.id.desc()).limit(1)).scalar()


def _current_all(conn: sa.Connection, channel: str | None = None) -> dict[str, str]:
    """channel -> release id it runs now (of one channel, or of all)."""
    query = (sa.select(channel_events.c.channel, channel_events.c.release_id)
             .where(channel_events.c.rolled_back_us.is_(None))
             .order_by(channel_events.c.id))
    if channel is not None:
        query = query.where(channel_events.c.channel == channel)
    return {row.channel: row.release_id for row in conn.execute(query)}  # newest row wins


def _event(row: Any) -> ChannelEvent:
    return ChannelEvent(release_id=row.release_id, version=row.version, action=row.action,
                        assigned_at=from_us(row.assigned_us),
                        rolled_back_at=None if row.rolled_back_us is None
                        else from_us(row.rolled_back_us))
