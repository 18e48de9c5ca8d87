"""Two model slots (A/B) in the device's state folder, switched by an atomically replaced pointer.

Layout under `root`:
    slots/a/, slots/b/    a release's files, then `release.json` written last (the slot is
                          complete only with it, and only while every file matches its hash)
    slots/.staging-<x>/   a slot being written; renamed over slots/<x> once complete
    active                which slot serves, what it holds, the slot to roll back to, and
                          whether the new model is still on trial (health check pending)
    floor                 the highest release version ever activated
    outcome               the last update's result, for the heartbeat after a restart
Every file is written to a temporary name, fsynced, `os.replace`d and its folder fsynced, so a
kill -9 at any point leaves the previous or the next state, never a torn one; `recover()`
removes what an interrupted update left behind.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_runtime.outbox.storage import fsync_dir

RELEASE_MARKER = "release.json"
CHUNK = 1 << 20


class SlotError(RuntimeError):
    """The slot store is unusable (not provisioned, or the active model is damaged)."""


class Slot(enum.StrEnum):
    A = "a"
    B = "b"

    @property
    def other(self) -> Slot:
        return Slot.B if self is Slot.A else Slot.A


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    size: int


@dataclass(frozen=True)
class SlotContent:
    """What a complete slot holds: a release and its files' digests."""

    release_id: str
    version: int
    files: Mapping[str, FileDigest]

    def to_json(self) -> dict[str, Any]:
        return {"release_id": self.release_id, "version": self.version,
                "files": {n: {"sha256": d.sha256, "size": d.size}
                          for n, d in sorted(self.files.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SlotContent:
        return cls(str(data["release_id"]), int(data["version"]),
                   {str(n): FileDigest(str(d["sha256"]), int(d["size"]))
                    for n, d in data["files"].items()})


@dataclass(frozen=True)
class Pointer:
    """The `active` file: the serving slot, the one to roll back to, and the trial flag."""

    slot: Slot
    content: SlotContent
    trial: bool = False  # activated but not yet judged healthy on live frames
    previous: Slot | None = None

    def to_json(self) -> dict[str, Any]:
        return {"slot": self.slot.value, "content": self.content.to_json(), "trial": self.trial,
                "previous": self.previous.value if self.previous else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pointer:
        previous = data.get("previous")
        return cls(Slot(data["slot"]), SlotContent.from_json(data["content"]),
                   bool(data.get("trial", False)), Slot(previous) if previous else None)


@dataclass(frozen=True)
class Recovery:
    """What `recover()` found and did."""

    pointer: Pointer
    removed: tuple[str, ...] = ()  # leftovers deleted (staging, partial slots, temp files)
    reverted: bool = False  # the active slot was damaged: the previous one serves again
    notes: tuple[str, ...] = field(default=())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename over `path`, fsync the folder: readers see old or new, never torn."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _copy_synced(source: Path, target: Path) -> FileDigest:
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return FileDigest(digest.hexdigest(), size)


class SlotStore:
    """The device's two model slots, its active pointer and its version floor."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.slots_dir = root / "slots"
        self.pointer_path = root / "active"
        self.floor_path = root / "floor"
        self.outcome_path = root / "outcome"

    # -- reading --------------------------------------------------------------------------------

    def slot_dir(self, slot: Slot) -> Path:
        return self.slots_dir / slot.value

    def pointer(self) -> Pointer:
        try:
            return Pointer.from_json(json.loads(self.pointer_path.read_bytes()))
        except FileNotFoundError as error:
            raise SlotError(f"{self.root} holds no active model: provision the device first"
                            ) from error

    def floor(self) -> int:
        """The highest release version ever activated here (0 before the first release)."""
        try:
            return int(json.loads(self.floor_path.read_bytes())["version"])
        except FileNotFoundError:
            return 0

    def content(self, slot: Slot, *, verify: bool = False) -> SlotContent | None:
        """A complete slot's content; None when empty, partial or (with verify) damaged."""
        marker = self.slot_dir(slot) / RELEASE_MARKER
        try:
            content = SlotContent.from_json(json.loads(marker.read_bytes()))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        if verify and not self._intact(slot, content):
            return None
        return content

    def _intact(self, slot: Slot, content: SlotContent) -> bool:
        folder = self.slot_dir(slot)
        present = {p.name for p in folder.iterdir()} - {RELEASE_MARKER}
        if present != set(content.files):
            return False
        for name, digest in content.files.items():
            path = folder / name
            if path.stat().st_size != digest.size or sha256_file(path) != digest.sha256:
                return False
        return True

    def model_path(self, slot: Slot, name: str = "model.onnx") -> Path:
        return self.slot_dir(slot) / name

    def read_outcome(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.outcome_path.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # -- writing --------------------------------------------------------------------------------

    def provision(self, files: Mapping[str, Path], content: SlotContent) -> Pointer:
        """First install: the given files into slot A, active and confirmed."""
        if self.pointer_path.exists():
            raise SlotError(f"{self.root} is already provisioned")
        self.root.mkdir(parents=True, exist_ok=True)
        self.stage(Slot.A, files, content, active=None)
        pointer = Pointer(Slot.A, content)
        self._write_json(self.floor_path, {"version": content.version})
        self._write_json(self.pointer_path, pointer.to_json())
        return pointer

    def stage(self, slot: Slot, files: Mapping[str, Path], content: SlotContent, *,
              active: Slot | None, checkpoint: Callable[[], None] | None = None) -> Path:
        """Copy `files` into `slot` (never the active one); the slot is complete or absent.

        Each file is hashed as it is copied and must match `content`; the marker is written
        last, then the staging folder is renamed over the slot.
        """
        if slot is active:
            raise SlotError(f"slot {slot.value} is active; stage into the other one")
        if set(files) != set(content.files):
            raise SlotError(f"files {sorted(files)} differ from the release's "
                            f"{sorted(content.files)}")
        self.slots_dir.mkdir(parents=True, exist_ok=True)
        staging = self.slots_dir / f".staging-{slot.value}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name, source in files.items():
            digest = _copy_synced(source, staging / name)
            if digest != content.files[name]:
                shutil.rmtree(staging, ignore_errors=True)
                raise SlotError(f"{name} changed while staging: sha256 {digest.sha256[:12]}.., "
                                f"expected {content.files[name].sha256[:12]}..")
        if checkpoint is not None:
            checkpoint()
        write_atomic(staging / RELEASE_MARKER, json.dumps(content.to_json()).encode())
        target = self.slot_dir(slot)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(staging, target)
        fsync_dir(self.slots_dir)
        return target

    def activate(self, slot: Slot, *, checkpoint: Callable[[], None] | None = None) -> Pointer:
        """Make a complete slot serve, on trial; the floor rises first, then the pointer moves."""
        content = self.content(slot, verify=True)
        if content is None:
            raise SlotError(f"slot {slot.value} is not complete and verified")
        current = self.pointer()
        if slot is current.slot:
            raise SlotError(f"slot {slot.value} is already active")
        self._write_json(self.floor_path, {"version": max(self.floor(), content.version)})
        if checkpoint is not None:
            checkpoint()
        pointer = Pointer(slot, content, trial=True, previous=current.slot)
        self._write_json(self.pointer_path, pointer.to_json())
        return pointer

    def confirm(self) -> Pointer:
        """The model on trial passed its health check: it stays."""
        pointer = replace(self.pointer(), trial=False)
        self._write_json(self.pointer_path, pointer.to_json())
        return pointer

    def roll_back(self) -> Pointer:
        """Serve the previous slot again and empty the one that failed."""
        current = self.pointer()
        if current.previous is None:
            raise SlotError("there is no previous slot to roll back to")
        content = self.content(current.previous, verify=True)
        if content is None:
            raise SlotError(f"previous slot {current.previous.value} is not intact")
        pointer = Pointer(current.previous, content)
        self._write_json(self.pointer_path, pointer.to_json())
        self.clear(current.slot)
        return pointer

    def clear(self, slot: Slot) -> None:
        """Empty an inactive slot."""
        if self.pointer_path.exists() and self.pointer().slot is slot:
            raise SlotError(f"slot {slot.value} is active")
        shutil.rmtree(self.slot_dir(slot), ignore_errors=True)
        if self.slots_dir.exists():
            fsync_dir(self.slots_dir)

    def write_outcome(self, outcome: Mapping[str, Any]) -> None:
        self._write_json(self.outcome_path, dict(outcome))

    def _write_json(self, path: Path, data: Mapping[str, Any]) -> None:
        write_atomic(path, json.dumps(data, sort_keys=True).encode())

    # -- after a restart ------------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Remove what an interrupted update left; make sure the pointer names an intact slot."""
        removed: list[str] = []
        for leftover in [*self.root.glob(".*.tmp"), *self.slots_dir.glob(".staging-*"),
                         *self.slots_dir.glob(".*.tmp")]:
            removed.append(str(leftover.relative_to(self.root)))
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        pointer = self.pointer()
        reverted = False
        if self.content(pointer.slot, verify=True) != pointer.content:
            # Only a damaged disk gets here (the pointer moves after the slot is complete).
            if pointer.previous is None or self.content(pointer.previous, verify=True) is None:
                raise SlotError(f"active slot {pointer.slot.value} is damaged and there is no "
                                "intact slot to fall back to")
            pointer = self.roll_back()
            reverted = True
        other = pointer.slot.other
        if self.slot_dir(other).exists() and self.content(other, verify=True) is None:
            removed.append(f"slots/{other.value}")
            shutil.rmtree(self.slot_dir(other), ignore_errors=True)
        if pointer.previous is not None and self.content(pointer.previous) is None:
            pointer = replace(pointer, previous=None)
            self._write_json(self.pointer_path, pointer.to_json())
        if removed:
            fsync_dir(self.root)
        return Recovery(pointer, tuple(removed), reverted)
