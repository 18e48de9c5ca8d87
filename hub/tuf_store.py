"""TUF metadata that the release flow signed, kept and served verbatim (the hub holds no keys).

Only the top-level files of a repository without consistent snapshots are accepted: `root.json`,
`<N>.root.json`, `timestamp.json`, `snapshot.json`, `targets.json`. The hub checks their shape
and that versions do not go backwards (an admin's slip must not roll the fleet back); the devices
check the signatures.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from hub.errors import Conflict, Invalid, NotFound, TooLarge

if TYPE_CHECKING:  # hub.client imports the answer type: it stays free of the server side
    from hub.blobs import BlobStore
    from hub.db import Database

MAX_METADATA_BYTES = 256 * 1024  # the hub's JSON body limit; about 150 releases in targets.json
_NAME = re.compile(r"^(?:(?P<role>root|timestamp|snapshot|targets)|(?P<version>[1-9][0-9]{0,8})"
                   r"\.root)\.json$")


class TufMetadataStored(BaseModel):
    """Answer to an upload: what the hub now serves under `name`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    role: str
    version: int
    sha256: str
    size: int
    changed: bool  # False: the hub already served these exact bytes


def metadata_key(name: str) -> str:
    return f"tuf/metadata/{name}"


def role_of(name: str) -> tuple[str, int | None]:
    """The role a file name serves and, for `<N>.root.json`, its version; NotFound otherwise."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise NotFound(f"{name[:80]!r} is not a TUF metadata file the hub serves (root.json, "
                       "<N>.root.json, timestamp.json, snapshot.json, targets.json)")
    if match["role"]:
        return match["role"], None
    return "root", int(match["version"])


def parse_metadata(name: str, body: bytes) -> tuple[str, int]:
    """Role and version of an uploaded file; Invalid when it is not TUF metadata for `name`."""
    if len(body) > MAX_METADATA_BYTES:
        raise TooLarge(f"{name}: {len(body)} bytes exceeds the limit of {MAX_METADATA_BYTES}")
    try:
        role, pinned = role_of(name)
    except NotFound as exc:
        raise Invalid(exc.detail) from None
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # deep nesting recurses
        raise Invalid(f"{name} is not JSON: {exc}") from None
    signed = document.get("signed") if isinstance(document, dict) else None
    if not isinstance(signed, dict) or not isinstance(document.get("signatures"), list):
        raise Invalid(f"{name} is not TUF metadata: it needs 'signed' and 'signatures'")
    kind, version = signed.get("_type"), signed.get("version")
    if kind != role:
        raise Invalid(f"{name} must hold {role} metadata, not {str(kind)[:40]!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise Invalid(f"{name}: version {str(version)[:40]!r} must be a positive integer")
    if pinned is not None and version != pinned:
        raise Invalid(f"{name} holds root version {version}, not {pinned}")
    if not document["signatures"]:
        raise Invalid(f"{name} carries no signature")
    return role, version


def put_metadata(db: Database, blobs: BlobStore, name: str, body: bytes) -> TufMetadataStored:
    """Stores an uploaded file; a version below the served one is refused, and so is other
    content under a version already served (a versioned root never changes)."""
    role, version = parse_metadata(name, body)
    digest = hashlib.sha256(body).hexdigest()
    stored = TufMetadataStored(name=name, role=role, version=version, sha256=digest,
                               size=len(body), changed=True)
    key = metadata_key(name)
    with db.write() as conn:
        db.lock(conn, "releases")  # one publisher at a time, across hub processes
        if blobs.exists(key):
            current = blobs.read(key)
            served = _version(current)
            if current == body:
                return stored.model_copy(update={"changed": False})
            if version < served:
                raise Conflict(f"{name}: version {version} is below the served version "
                               f"{served}: metadata versions only go up")
            if version == served:
                raise Conflict(f"{name}: version {version} is already served with other "
                               "content; sign a new version")
        blobs.put(key, body)
    return stored


def get_metadata(blobs: BlobStore, name: str) -> bytes:
    role_of(name)
    key = metadata_key(name)
    if not blobs.exists(key):
        raise NotFound(f"no {name} published")  # how ngclient learns there is no newer root
    return blobs.read(key)


def _version(body: bytes) -> int:
    document: Any = json.loads(body)
    return int(document["signed"]["version"])
