"""What the release repository is made of: its error and role expiry, atomic writes and
digests of files, keys and signers, and the release manifest as a target's custom field.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import ValidationError
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Root,
    TargetFile,
)

from edge_runtime.contract import TARGET_MANIFEST_FIELD, ReleaseManifest

CHUNK_BYTES = 1024 * 1024


class ReleaseRepositoryError(ValueError):
    """The repository or its keys are missing or inconsistent, or a release does not fit."""


@dataclass(frozen=True)
class RoleExpiry:
    """How long each role's metadata stays valid after it is signed."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=90)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, timedelta) or value <= timedelta(0):
                raise ReleaseRepositoryError(f"expiry of {f.name} must be a positive "
                                             f"timedelta, got {value!r}")

    def of(self, role: str) -> timedelta:
        value: timedelta = getattr(self, role)
        return value

    def as_dict(self) -> dict[str, float]:
        return {name: value.total_seconds() for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> RoleExpiry:
        return cls(**{name: timedelta(seconds=float(s)) for name, s in values.items()})


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """Temp file in the same folder, fsync, os.replace: a reader sees the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is None else mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def copy_atomically(source: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 (hex) and size in bytes of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_dirs(repo_dir: Path, keys_dir: Path) -> tuple[Path, Path]:
    repo_dir, keys_dir = Path(repo_dir).resolve(), Path(keys_dir).resolve()
    if is_inside(keys_dir, repo_dir) or is_inside(repo_dir, keys_dir):
        raise ReleaseRepositoryError(f"keys {keys_dir} must live outside the repository "
                                     f"{repo_dir} (which is served to devices)")
    return repo_dir, keys_dir


def load_signer(keys_dir: Path, root: Root, role: str) -> CryptoSigner:
    """The signer of the role's current key (threshold 1), from `<keyid>.pem` in keys_dir."""
    for keyid in root.roles[role].keyids:
        path = keys_dir / f"{keyid}.pem"
        if path.is_file():
            private = load_pem_private_key(path.read_bytes(), None)
            return CryptoSigner(private, root.get_key(keyid))  # type: ignore[arg-type]
    raise ReleaseRepositoryError(f"no private key of role {role} in {keys_dir} (looked for "
                                 f"{', '.join(k + '.pem' for k in root.roles[role].keyids)})")


def manifest_to_custom(manifest: ReleaseManifest) -> dict[str, Any]:
    """The manifest as a target's custom field. TUF signs canonical JSON, which has no floats:
    floats become their decimal strings, which `ReleaseManifest.model_validate` reads back as
    the same floats (so a device needs nothing but the contract)."""
    return floats_as_text(manifest.model_dump(mode="json"))  # type: ignore[no-any-return]


def floats_as_text(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {k: floats_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [floats_as_text(v) for v in value]
    return value


def manifest_of(target: TargetFile) -> ReleaseManifest:
    custom = target.unrecognized_fields.get("custom") or {}
    try:
        return ReleaseManifest.model_validate(custom[TARGET_MANIFEST_FIELD])
    except (KeyError, TypeError, ValidationError) as exc:
        raise ReleaseRepositoryError(f"target {target.path} carries no valid release manifest: "
                                     f"{exc}") from None
