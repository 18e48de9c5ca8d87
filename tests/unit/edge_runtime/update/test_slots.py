"""The A/B slots: complete-or-absent staging, atomic swap, floor, rollback, recovery."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edge_runtime.update.slots import (
    FileDigest,
    Slot,
    SlotContent,
    SlotError,
    SlotStore,
    write_atomic,
)


def release(tmp_path: Path, release_id: str, version: int) -> tuple[dict[str, Path], SlotContent]:
    source = tmp_path / "src" / release_id
    source.mkdir(parents=True)
    data = f"model {release_id}".encode() * 1000
    (source / "model.onnx").write_bytes(data)
    digest = FileDigest(hashlib.sha256(data).hexdigest(), len(data))
    return {"model.onnx": source / "model.onnx"}, SlotContent(release_id, version,
                                                              {"model.onnx": digest})


@pytest.fixture
def store(tmp_path: Path) -> SlotStore:
    slots = SlotStore(tmp_path / "device")
    slots.provision(*release(tmp_path, "r1", 1))
    return slots


def test_provisioned_store_serves_slot_a(store: SlotStore) -> None:
    pointer = store.pointer()
    assert (pointer.slot, pointer.content.release_id, pointer.trial) == (Slot.A, "r1", False)
    assert store.floor() == 1
    with pytest.raises(SlotError):
        store.provision({}, pointer.content)


def test_stage_swap_confirm(store: SlotStore, tmp_path: Path) -> None:
    files, content = release(tmp_path, "r2", 2)
    store.stage(Slot.B, files, content, active=Slot.A)
    assert store.content(Slot.B, verify=True) == content
    assert store.pointer().slot is Slot.A  # staging moves nothing
    pointer = store.activate(Slot.B)
    assert (pointer.slot, pointer.trial, pointer.previous) == (Slot.B, True, Slot.A)
    assert store.floor() == 2
    assert store.confirm().trial is False


def test_staging_into_the_active_slot_is_refused(store: SlotStore, tmp_path: Path) -> None:
    with pytest.raises(SlotError, match="active"):
        store.stage(Slot.A, *release(tmp_path, "r2", 2), active=Slot.A)


def test_a_file_that_does_not_match_its_hash_never_becomes_a_slot(store: SlotStore,
                                                                  tmp_path: Path) -> None:
    files, content = release(tmp_path, "r2", 2)
    files["model.onnx"].write_bytes(b"swapped under our feet")
    with pytest.raises(SlotError, match="changed while staging"):
        store.stage(Slot.B, files, content, active=Slot.A)
    assert not store.slot_dir(Slot.B).exists()
    assert not list(store.slots_dir.glob(".staging-*"))


def test_an_incomplete_slot_cannot_be_activated(store: SlotStore) -> None:
    store.slot_dir(Slot.B).mkdir()
    (store.slot_dir(Slot.B) / "model.onnx").write_bytes(b"half")
    with pytest.raises(SlotError, match="not complete"):
        store.activate(Slot.B)


def test_a_damaged_slot_is_not_complete(store: SlotStore, tmp_path: Path) -> None:
    files, content = release(tmp_path, "r2", 2)
    store.stage(Slot.B, files, content, active=Slot.A)
    model = store.model_path(Slot.B)
    data = bytearray(model.read_bytes())
    data[10] ^= 1
    model.write_bytes(bytes(data))
    assert store.content(Slot.B) == content  # the marker alone says complete...
    assert store.content(Slot.B, verify=True) is None  # ...the bytes do not


def test_roll_back_serves_the_previous_slot_and_empties_the_failed_one(
        store: SlotStore, tmp_path: Path) -> None:
    store.stage(Slot.B, *release(tmp_path, "r2", 2), active=Slot.A)
    store.activate(Slot.B)
    pointer = store.roll_back()
    assert (pointer.slot, pointer.content.release_id, pointer.trial) == (Slot.A, "r1", False)
    assert not store.slot_dir(Slot.B).exists()
    assert store.floor() == 2  # once activated, never below it again


def test_recover_removes_staging_partial_slots_and_temp_files(store: SlotStore,
                                                              tmp_path: Path) -> None:
    staging = store.slots_dir / ".staging-b"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"partial")
    (store.root / ".active.tmp").write_bytes(b"{")
    store.slot_dir(Slot.B).mkdir()
    (store.slot_dir(Slot.B) / "model.onnx").write_bytes(b"no marker")
    recovery = store.recover()
    assert set(recovery.removed) == {"slots/.staging-b", ".active.tmp", "slots/b"}
    assert recovery.pointer.slot is Slot.A and not recovery.reverted
    assert sorted(p.name for p in store.slots_dir.iterdir()) == ["a"]


def test_recover_keeps_the_previous_release_and_a_model_on_trial(store: SlotStore,
                                                                 tmp_path: Path) -> None:
    store.stage(Slot.B, *release(tmp_path, "r2", 2), active=Slot.A)
    store.activate(Slot.B)
    recovery = store.recover()
    assert (recovery.pointer.slot, recovery.pointer.trial) == (Slot.B, True)
    assert store.content(Slot.A, verify=True) is not None


def test_recover_falls_back_when_the_active_slot_is_damaged(store: SlotStore,
                                                            tmp_path: Path) -> None:
    store.stage(Slot.B, *release(tmp_path, "r2", 2), active=Slot.A)
    store.activate(Slot.B)
    store.model_path(Slot.B).write_bytes(b"bit rot")
    recovery = store.recover()
    assert recovery.reverted and recovery.pointer.slot is Slot.A


def test_unprovisioned_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(SlotError, match="provision"):
        SlotStore(tmp_path).pointer()
    assert SlotStore(tmp_path).floor() == 0


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "pointer"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pointer"]
