"""The release repository: model files as TUF targets, signed with python-tuf's Metadata API.

Four top-level roles (root, targets, snapshot, timestamp), one Ed25519 key each (threshold 1),
`consistent_snapshot` off: the hub serves `root.json`, every `<N>.root.json`, `timestamp.json`,
`snapshot.json` and `targets.json` from `metadata_dir`, and each file as `<release_id>/<name>`.
Each target's custom field carries the release's ReleaseManifest, so a device that verified the
target also verified its manifest. Private keys live in `keys_dir`, outside the repository.
"""

from __future__ import annotations

import fcntl
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

from edge_runtime.contract import TARGET_MANIFEST_FIELD, ReleaseManifest
from flows.release.tuf_metadata import (
    ReleaseRepositoryError,
    RoleExpiry,
    check_dirs,
    copy_atomically,
    file_digest,
    load_signer,
    manifest_of,
    manifest_to_custom,
    utc_now,
    write_atomically,
)

ROLES = ("root", "targets", "snapshot", "timestamp")
SETTINGS_FILE = "repository.json"  # beside metadata/ and targets/: the expiry per role
LOCK_FILE = ".lock"  # one writer at a time: each change bumps versions read from disk
P = ParamSpec("P")
R = TypeVar("R")


def _exclusive(method: Callable[Concatenate[ReleaseRepository, P], R]
               ) -> Callable[Concatenate[ReleaseRepository, P], R]:
    """Runs a change of the repository under its lock file (another release flow may be
    signing at the same time; versions are read from disk inside the lock). Not re-entrant:
    locked methods call only unlocked ones."""

    @functools.wraps(method)
    def locked(self: ReleaseRepository, *args: P.args, **kwargs: P.kwargs) -> R:
        self.repo_dir.mkdir(parents=True, exist_ok=True)
        with open(self.repo_dir / LOCK_FILE, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._follow_rotations()
                return method(self, *args, **kwargs)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    return locked


class ReleaseRepository:
    """A TUF repository on disk whose targets are model release files."""

    def __init__(self, repo_dir: Path, keys_dir: Path, expiry: RoleExpiry,
                 signers: dict[str, CryptoSigner]) -> None:
        self.repo_dir = repo_dir
        self.keys_dir = keys_dir
        self.metadata_dir = repo_dir / "metadata"
        self.targets_dir = repo_dir / "targets"
        self.expiry = expiry
        self._signers = signers

    # -- creating and opening ----------------------------------------------------------------

    @classmethod
    def create(cls, repo_dir: Path, keys_dir: Path, *,
               expiry: RoleExpiry = RoleExpiry()) -> ReleaseRepository:
        """A new repository: root v1, one fresh key per role, no targets yet."""
        repo_dir, keys_dir = check_dirs(repo_dir, keys_dir)
        if (repo_dir / "metadata" / "root.json").exists():
            raise ReleaseRepositoryError(f"{repo_dir} already holds a TUF repository")
        signers = {role: CryptoSigner.generate_ed25519() for role in ROLES}
        repo = cls(repo_dir, keys_dir, expiry, signers)
        for signer in signers.values():
            repo._save_key(signer)
        write_atomically(repo_dir / SETTINGS_FILE,
                         json.dumps({"expiry": expiry.as_dict()}, indent=2).encode(), 0o644)
        now = utc_now()
        root = Root(expires=now + expiry.root, consistent_snapshot=False)
        for role, signer in signers.items():
            root.add_key(signer.public_key, role)
        targets = Targets(expires=now + expiry.targets)
        snapshot = Snapshot(expires=now + expiry.snapshot)
        timestamp = Timestamp(expires=now + expiry.timestamp)
        repo._write_root(Metadata(root), [signers["root"]])
        repo._publish(Metadata(targets), Metadata(snapshot), Metadata(timestamp))
        return repo

    @classmethod
    def open(cls, repo_dir: Path, keys_dir: Path, *,
             expiry: RoleExpiry | None = None) -> ReleaseRepository:
        """An existing repository with its keys; `expiry` overrides the one it was created with."""
        repo_dir, keys_dir = check_dirs(repo_dir, keys_dir)
        root_path = repo_dir / "metadata" / "root.json"
        if not root_path.is_file():
            raise ReleaseRepositoryError(f"no TUF repository at {repo_dir} (no {root_path}): "
                                         "create it first")
        if expiry is None:
            try:
                stored = json.loads((repo_dir / SETTINGS_FILE).read_text())["expiry"]
                expiry = RoleExpiry.from_dict(stored)
            except FileNotFoundError:
                expiry = RoleExpiry()
            except (ValueError, KeyError, TypeError) as exc:
                raise ReleaseRepositoryError(f"{repo_dir / SETTINGS_FILE}: {exc}") from None
        root = Metadata[Root].from_file(str(root_path)).signed
        signers = {role: load_signer(keys_dir, root, role) for role in ROLES}
        return cls(repo_dir, keys_dir, expiry, signers)

    # -- releases ----------------------------------------------------------------------------

    @_exclusive
    def add_release(self, manifest: ReleaseManifest, files: Mapping[str, Path]) -> None:
        """Adds the release's files as targets `<release_id>/<name>`; signs a new targets,
        snapshot and timestamp. Refuses files that do not match the manifest."""
        targets = self._load("targets", Targets)
        self._check_new(manifest, targets.signed)
        listed = {f.name: f for f in manifest.files}
        if set(listed) != set(files):
            raise ReleaseRepositoryError(
                f"release {manifest.release_id}: files {sorted(files)} do not match the "
                f"manifest's {sorted(listed)}")
        custom = {TARGET_MANIFEST_FIELD: manifest_to_custom(manifest)}
        for name, source in files.items():
            sha256, size = file_digest(Path(source))
            expected = listed[name]
            if (sha256, size) != (expected.sha256, expected.size):
                raise ReleaseRepositoryError(
                    f"release {manifest.release_id}: {source} has sha256 {sha256} and "
                    f"{size} bytes, the manifest lists {expected.sha256} and {expected.size}")
            path = f"{manifest.release_id}/{name}"
            copy_atomically(Path(source), self.targets_dir / path)
            targets.signed.targets[path] = TargetFile(
                size, {"sha256": sha256}, path, unrecognized_fields={"custom": custom})
        self._bump_targets(targets)

    def manifest(self, release_id: str) -> ReleaseManifest:
        """The manifest a release was signed with (from its targets' custom field)."""
        for target in self._load("targets", Targets).signed.targets.values():
            if target.path.split("/", 1)[0] == release_id:
                return manifest_of(target)
        raise ReleaseRepositoryError(f"no release {release_id!r} in {self.repo_dir}")

    def manifests(self) -> list[ReleaseManifest]:
        """Every signed release, by version."""
        found = {m.release_id: m for m in map(manifest_of, self._load(
            "targets", Targets).signed.targets.values())}
        return sorted(found.values(), key=lambda m: m.version)

    def metadata_files(self) -> Iterator[Path]:
        """The files a hub serves, root versions first (uploaded in that order, a device never
        sees a timestamp that names a snapshot the hub does not have yet)."""
        roots = sorted(self.metadata_dir.glob("*.root.json"),
                       key=lambda p: int(p.name.split(".", 1)[0]))
        yield from roots
        for name in ("root.json", "targets.json", "snapshot.json", "timestamp.json"):
            yield self.metadata_dir / name

    # -- freshness and keys ------------------------------------------------------------------

    @_exclusive
    def refresh_timestamp(self) -> None:
        """A new timestamp version with a new expiry; the snapshot it names is unchanged."""
        self._sign_and_write("timestamp", self._load("timestamp", Timestamp))

    @_exclusive
    def refresh_expiring(self, margin: timedelta) -> list[str]:
        """Re-signs every role whose metadata expires within `margin` (and what names it: a new
        targets needs a new snapshot and timestamp), the timestamp always. The roles re-signed."""
        limit = datetime.now(UTC) + margin
        done = []
        root = self._load("root", Root)
        if root.signed.expires <= limit:
            root.signed.version += 1
            root.signed.expires = utc_now() + self.expiry.root
            self._write_root(root, [self._signers["root"]])
            done.append("root")
        targets = self._load("targets", Targets)
        snapshot = self._load("snapshot", Snapshot)
        if targets.signed.expires <= limit:
            self._bump_targets(targets)
            return [*done, "targets", "snapshot", "timestamp"]
        if snapshot.signed.expires <= limit:
            self._bump_snapshot(snapshot)
            return [*done, "snapshot", "timestamp"]
        self._sign_and_write("timestamp", self._load("timestamp", Timestamp))
        return [*done, "timestamp"]

    @_exclusive
    def rotate_key(self, role: str) -> None:
        """Replaces the role's key in a new root version (signed by the old and the new root
        key when the root key itself rotates), then re-signs the role's metadata chain."""
        if role not in ROLES:
            raise ReleaseRepositoryError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        root = self._load("root", Root)
        old, new = self._signers[role], CryptoSigner.generate_ed25519()
        self._save_key(new)
        root.signed.revoke_key(old.public_key.keyid, role)
        root.signed.add_key(new.public_key, role)
        self._signers[role] = new
        root_signers = [old, new] if role == "root" else [self._signers["root"]]
        root.signed.version += 1
        root.signed.expires = utc_now() + self.expiry.root
        self._write_root(root, root_signers)
        if role == "targets":
            self._bump_targets(self._load("targets", Targets))
        elif role == "snapshot":
            self._bump_snapshot(self._load("snapshot", Snapshot))
        elif role == "timestamp":
            self._sign_and_write("timestamp", self._load("timestamp", Timestamp))
        self._key_path(old).unlink(missing_ok=True)

    # -- internals ---------------------------------------------------------------------------

    def _follow_rotations(self) -> None:
        """Loads the current key of any role that another process rotated since `open`."""
        root_path = self.metadata_dir / "root.json"
        if not root_path.is_file():  # create() writes it after its first locked call
            return
        root = Metadata[Root].from_file(str(root_path)).signed
        for role in ROLES:
            if self._signers[role].public_key.keyid not in root.roles[role].keyids:
                self._signers[role] = load_signer(self.keys_dir, root, role)

    def _check_new(self, manifest: ReleaseManifest, targets: Targets) -> None:
        known = {m.release_id: m.version for m in map(manifest_of, targets.targets.values())}
        if manifest.release_id in known:
            raise ReleaseRepositoryError(f"release {manifest.release_id!r} is already signed")
        highest = max(known.values(), default=0)
        if manifest.version <= highest:
            raise ReleaseRepositoryError(
                f"release {manifest.release_id}: version {manifest.version} is not above the "
                f"highest signed version {highest}: versions only go up")
        if manifest.expires_at is not None and manifest.expires_at <= datetime.now(UTC):
            raise ReleaseRepositoryError(f"release {manifest.release_id} expired at "
                                         f"{manifest.expires_at.isoformat()}")

    def _bump_targets(self, targets: Metadata[Targets]) -> None:
        self._sign_and_write("targets", targets)
        snapshot = self._load("snapshot", Snapshot)
        snapshot.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
        self._bump_snapshot(snapshot)

    def _bump_snapshot(self, snapshot: Metadata[Snapshot]) -> None:
        self._sign_and_write("snapshot", snapshot)
        timestamp = self._load("timestamp", Timestamp)
        timestamp.signed.snapshot_meta = MetaFile(version=snapshot.signed.version)
        self._sign_and_write("timestamp", timestamp)

    def _publish(self, targets: Metadata[Targets], snapshot: Metadata[Snapshot],
                 timestamp: Metadata[Timestamp]) -> None:
        """The first targets/snapshot/timestamp (version 1 each)."""
        for role, md in (("targets", targets), ("snapshot", snapshot), ("timestamp", timestamp)):
            md.sign(self._signers[role])
            write_atomically(self.metadata_dir / f"{role}.json", md.to_bytes(), 0o644)

    def _sign_and_write(self, role: str, md: Metadata[Any]) -> None:
        md.signed.version += 1
        md.signed.expires = utc_now() + self.expiry.of(role)
        md.sign(self._signers[role])
        write_atomically(self.metadata_dir / f"{role}.json", md.to_bytes(), 0o644)

    def _write_root(self, root: Metadata[Root], signers: list[CryptoSigner]) -> None:
        root.signatures.clear()
        for signer in signers:
            root.sign(signer, append=True)
        data = root.to_bytes()
        write_atomically(self.metadata_dir / f"{root.signed.version}.root.json", data, 0o644)
        write_atomically(self.metadata_dir / "root.json", data, 0o644)

    def _load(self, role: str, kind: type[Signed]) -> Metadata[Any]:
        path = self.metadata_dir / f"{role}.json"
        try:
            md: Metadata[Any] = Metadata.from_file(str(path))
        except FileNotFoundError:
            raise ReleaseRepositoryError(f"{path} is missing") from None
        if not isinstance(md.signed, kind):
            raise ReleaseRepositoryError(f"{path} holds {md.signed.type}, not {role}")
        return md

    def _key_path(self, signer: CryptoSigner) -> Path:
        return self.keys_dir / f"{signer.public_key.keyid}.pem"

    def _save_key(self, signer: CryptoSigner) -> None:
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(self._key_path(signer), signer.private_bytes, 0o600)
