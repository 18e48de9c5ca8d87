"""The device updater against a real signed repository over HTTP: what it installs, what it
refuses (and why), and how it undoes a model that fails on live frames."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, TargetFile, Targets, Timestamp

from edge_runtime.contract import MODEL_FILE, TARGET_MANIFEST_FIELD
from edge_runtime.update.config import UpdateStatus
from edge_runtime.update.policy import Refusal
from edge_runtime.update.slots import Pointer, Slot
from edge_runtime.update.updater import Updater
from flows.release.tuf_metadata import manifest_to_custom
from tests.support.updater import (
    Rig,
    build_models,
    live_frames,
    manifest_for,
    pem_signer,
    resign,
    rig,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(seed_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_models(seed_model, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return live_frames(8)


@pytest.fixture
def device(tmp_path: Path, models: dict[str, Path]) -> Iterator[Rig]:
    with rig(tmp_path, models) as built:
        yield built


def updater(device: Rig, frames: list[np.ndarray], **overrides: object) -> Updater:
    made = Updater(device.config(**overrides), cached_frames=frames[:2])
    made.recover()
    return made


def assert_nothing_activated(made: Updater, before: Pointer, floor: int = 1) -> None:
    assert made.slots.pointer() == before
    assert not made.slots.pointer().trial
    assert made.slots.floor() == floor
    assert not made.slots.slot_dir(before.slot.other).exists(), "the inactive slot got files"
    assert sorted(p.name for p in made.slots.slots_dir.iterdir()) == [before.slot.value]
    assert not made.download_dir.exists()
    cached = {p.name for p in made.cache_dir.iterdir()} if made.cache_dir.exists() else set()
    assert cached <= {before.content.files[MODEL_FILE].sha256}, "a refused model stayed cached"


def refused(device: Rig, frames: list[np.ndarray], release_id: str = "r2",
            **overrides: object) -> UpdateStatus:
    made = updater(device, frames, **overrides)
    before = made.slots.pointer()
    status = made.update(release_id, frames)
    assert status.release_id == "r1" and status.version == 1
    assert status.target == release_id
    assert_nothing_activated(made, before, floor=before.content.version)
    heartbeat = status.heartbeat_error()
    assert heartbeat is not None and status.refusal is not None
    assert heartbeat.startswith(f"update {release_id}: {status.refusal.value}: ")
    return status


def test_a_new_release_is_verified_swapped_in_and_confirmed(device: Rig,
                                                            frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "r2")
    made = updater(device, frames)
    status = made.update("r2", frames)
    assert (status.release_id, status.version, status.trial, status.refusal) == (
        "r2", 2, False, None)
    pointer = made.slots.pointer()
    assert pointer.slot is Slot.B and pointer.previous is Slot.A
    assert made.slots.floor() == 2
    kept = made.slots.content(Slot.A, verify=True)
    assert kept is not None and kept.release_id == "r1"  # kept for a rollback
    detector = made.open_active()
    assert detector.info.version == "r2"
    assert detector.info.path == made.slots.model_path(Slot.B)
    # The optimised model is cached under the hash of the model it came from.
    sha = pointer.content.files[MODEL_FILE].sha256
    assert made.cache_dir / sha in detector.info.path.parent.parent.parent.glob("ort-cache/*")
    assert made.update("r2", frames).refusal is None  # up to date: nothing happens
    assert all(r.startswith("/v1/tuf/") for r in device.server.requests)


def test_flipped_byte_in_the_model_is_refused(device: Rig, frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "r2")
    served = device.repo.targets_dir / "r2" / MODEL_FILE
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0x01
    served.write_bytes(bytes(data))
    status = refused(device, frames)
    assert status.refusal is Refusal.HASH
    assert "LengthOrHashMismatchError" in (status.detail or "")


def test_truncated_model_is_refused(device: Rig, frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "r2")
    served = device.repo.targets_dir / "r2" / MODEL_FILE
    served.write_bytes(served.read_bytes()[:-1000])
    assert refused(device, frames).refusal is Refusal.HASH


def test_a_different_model_under_the_signed_name_is_refused(device: Rig,
                                                            frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "r2")
    shutil.copy(device.models["r3"], device.repo.targets_dir / "r2" / MODEL_FILE)
    assert refused(device, frames).refusal is Refusal.HASH


def test_manifest_hash_that_disagrees_with_the_signed_target_is_refused(
        device: Rig, frames: list[np.ndarray]) -> None:
    manifest = device.publish("r2", 2, "r2")
    lying = manifest.model_copy(update={"files": [
        manifest.files[0].model_copy(update={"sha256": "0" * 64})]})

    def lie(targets: Targets) -> None:
        for target in targets.targets.values():
            target.unrecognized_fields["custom"] = {
                TARGET_MANIFEST_FIELD: manifest_to_custom(lying)}

    resign(device.repo, edit_targets=lie)
    status = refused(device, frames)
    assert status.refusal is Refusal.HASH
    assert "manifest says sha256 000000000000" in (status.detail or "")


def test_oversized_download_is_refused(device: Rig, frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "r2")
    served = device.repo.targets_dir / "r2" / MODEL_FILE
    served.write_bytes(served.read_bytes() + b"\0" * 100_000)
    status = refused(device, frames)
    assert status.refusal is Refusal.TOO_LARGE
    assert "DownloadLengthMismatchError" in (status.detail or "")


def test_release_over_the_device_limit_is_refused_before_download(
        device: Rig, frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "r2")
    status = refused(device, frames, max_release_bytes=1_000_000)
    assert status.refusal is Refusal.TOO_LARGE
    assert "over the limit of 1000000" in (status.detail or "")
    assert not any(r.startswith("/v1/tuf/targets/") for r in device.server.requests)


def test_signed_file_missing_from_the_manifest_is_refused(device: Rig,
                                                          frames: list[np.ndarray]) -> None:
    manifest = device.publish("r2", 2, "r2")
    extra = device.repo.targets_dir / "r2" / "extra.bin"
    extra.write_bytes(b"not in the manifest")

    def add_extra(targets: Targets) -> None:
        target = TargetFile.from_file("r2/extra.bin", str(extra), ["sha256"])
        target.unrecognized_fields["custom"] = {
            TARGET_MANIFEST_FIELD: manifest_to_custom(manifest)}
        targets.targets[target.path] = target

    resign(device.repo, edit_targets=add_extra)
    status = refused(device, frames)
    assert status.refusal is Refusal.EXTRA_FILE
    assert "extra.bin" in (status.detail or "")


def test_manifest_file_that_is_not_signed_is_refused(device: Rig,
                                                     frames: list[np.ndarray]) -> None:
    labels = device.repo.repo_dir.parent / "labels.txt"
    labels.write_text("nut\nwasher\nbolt\n")
    files = {MODEL_FILE: device.models["r2"], "labels.txt": labels}
    device.repo.add_release(manifest_for("r2", 2, files), files)
    resign(device.repo, edit_targets=lambda t: t.targets.pop("r2/labels.txt"))
    status = refused(device, frames)
    assert status.refusal is Refusal.MISSING_FILE
    assert "labels.txt" in (status.detail or "")


def test_signed_file_the_hub_does_not_serve_is_refused(device: Rig,
                                                       frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "r2")
    (device.repo.targets_dir / "r2" / MODEL_FILE).unlink()
    status = refused(device, frames)
    assert status.refusal is Refusal.MISSING_FILE
    assert "404" in (status.detail or "")


def test_release_that_is_not_signed_at_all_is_refused(device: Rig,
                                                      frames: list[np.ndarray]) -> None:
    assert refused(device, frames, "r9").refusal is Refusal.NOT_A_TARGET


def test_targets_signed_by_an_unknown_key_are_refused(device: Rig,
                                                      frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "r2")
    resign(device.repo, targets_signer=CryptoSigner.generate_ed25519())
    status = refused(device, frames)
    assert status.refusal is Refusal.SIGNATURE
    assert "UnsignedMetadataError" in (status.detail or "")


def test_targets_signed_by_a_rotated_out_key_are_refused(device: Rig,
                                                         frames: list[np.ndarray]) -> None:
    root = Metadata[Root].from_file(str(device.repo.metadata_dir / "root.json")).signed
    old_key = device.repo.keys_dir / f"{root.roles['targets'].keyids[0]}.pem"
    kept = device.repo.repo_dir.parent / "stolen.pem"
    shutil.copy(old_key, kept)
    device.repo.rotate_key("targets")  # root v2 revokes it; the device trusts root v1
    assert not old_key.exists()
    device.publish("r2", 2, "r2")
    resign(device.repo, targets_signer=pem_signer(kept))
    status = refused(device, frames)
    assert status.refusal is Refusal.SIGNATURE
    assert (device.state_dir / "tuf" / "metadata" / "root_history" / "2.root.json").is_file()


def test_the_rotated_key_signs_releases_the_device_accepts(device: Rig,
                                                           frames: list[np.ndarray]) -> None:
    device.repo.rotate_key("targets")
    device.publish("r2", 2, "r2")
    status = updater(device, frames).update("r2", frames)
    assert (status.release_id, status.refusal) == ("r2", None)


def test_expired_metadata_is_refused(device: Rig, frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "r2")

    def expire(timestamp: Timestamp) -> None:
        timestamp.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

    resign(device.repo, edit_timestamp=expire)  # a freeze: the hub keeps serving stale state
    status = refused(device, frames)
    assert status.refusal is Refusal.EXPIRED
    assert "ExpiredMetadataError" in (status.detail or "")


def test_replayed_older_metadata_is_refused(device: Rig, frames: list[np.ndarray]) -> None:
    md = device.repo.metadata_dir
    old = {name: (md / name).read_bytes() for name in ("timestamp.json", "snapshot.json")}
    device.publish("r2", 2, "r2")
    assert updater(device, frames).update("r2", frames).release_id == "r2"
    for name, data in old.items():  # the hub replays the state from before r2
        (md / name).write_bytes(data)
    made = updater(device, frames)
    before = made.slots.pointer()
    status = made.update("r1", frames)
    assert status.refusal is Refusal.METADATA_ROLLBACK
    assert "BadVersionNumberError" in (status.detail or "")
    assert made.slots.pointer() == before and made.slots.floor() == 2


def test_older_but_validly_signed_release_is_refused(device: Rig, frames: list[np.ndarray],
                                                     models: dict[str, Path]) -> None:
    device.publish("r2", 2, "r2")
    device.publish("r3", 3, "r3")
    assert updater(device, frames).update("r3", frames).release_id == "r3"
    made = updater(device, frames)
    before = made.slots.pointer()
    status = made.update("r2", frames)
    assert status.refusal is Refusal.BELOW_FLOOR
    assert "below this device's floor 3" in (status.detail or "")
    assert made.slots.pointer() == before and made.slots.floor() == 3
    untouched = made.slots.content(Slot.A, verify=True)
    assert untouched is not None and untouched.release_id == "r1"


def test_manifest_for_another_input_signature_is_refused(device: Rig,
                                                         frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "r2", classes=("nut", "washer", "screw"))
    status = refused(device, frames)
    assert status.refusal is Refusal.INPUT_MISMATCH
    assert "screw" in (status.detail or "")
    assert not any(r.startswith("/v1/tuf/targets/") for r in device.server.requests)


def test_manifest_for_another_input_size_is_refused(device: Rig,
                                                    frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "r2", imgsz=640)
    assert refused(device, frames).refusal is Refusal.INPUT_MISMATCH


def test_model_with_nan_outputs_fails_its_smoke_test(device: Rig,
                                                     frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "nan")
    status = refused(device, frames)
    assert status.refusal is Refusal.SMOKE_TEST
    assert "NaN" in (status.detail or "")


def test_wrong_device_token_is_reported_as_unavailable(device: Rig,
                                                       frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "r2")
    status = refused(device, frames, token="not-the-token")
    assert status.refusal is Refusal.UNAVAILABLE
    assert "401" in (status.detail or "")


def test_model_failing_its_health_check_is_rolled_back_and_reported(
        device: Rig, frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "blind")  # loads and runs, finds nothing on the line
    made = updater(device, frames)
    status = made.update("r2", frames)
    assert (status.release_id, status.version, status.trial) == ("r1", 1, False)
    assert status.refusal is Refusal.HEALTH_CHECK
    assert "detected parts on 0% of live frames" in (status.detail or "")
    assert (status.heartbeat_error() or "").startswith("update r2: health_check: ")
    pointer = made.slots.pointer()
    assert pointer.slot is Slot.A and not made.slots.slot_dir(Slot.B).exists()
    assert made.slots.floor() == 2  # it was activated: r2 stays the floor
    # After a restart the reason is still reported, and the release is not tried again.
    again = updater(device, frames)
    assert again.status().refusal is Refusal.HEALTH_CHECK
    requests = len(device.server.requests)
    retry = again.update("r2", frames)
    assert retry.refusal is Refusal.HEALTH_CHECK and "failed here before" in (retry.detail or "")
    assert len(device.server.requests) == requests
    device.publish("r3", 3, "r3")  # the fix ships as a new release
    assert again.update("r3", frames).release_id == "r3"


def test_the_assigned_release_is_polled_and_installed(device: Rig,
                                                      frames: list[np.ndarray]) -> None:
    made = updater(device, frames)
    assert made.poll_assignment() is None  # 204: nothing assigned
    assert made.step(frames).release_id == "r1"
    device.server.assignment = device.publish("r2", 2, "r2")
    assert made.poll_assignment() == "r2"
    status = made.step(frames)
    assert (status.release_id, status.refusal) == ("r2", None)


def test_a_reused_slot_never_serves_a_stale_optimised_model(device: Rig,
                                                            frames: list[np.ndarray]) -> None:
    device.publish("r2", 2, "r2")
    device.publish("r3", 3, "r3")
    made = updater(device, frames)
    first = made.open_active()  # r1 in slot A, its optimised copy cached
    assert first.info.version == "r1"
    assert made.update("r2", frames).release_id == "r2"  # into slot B
    assert made.update("r3", frames).release_id == "r3"  # back into slot A, same path as r1
    pointer = made.slots.pointer()
    assert pointer.slot is Slot.A
    detector = made.open_active()
    assert detector.info.version == "r3"
    hashes = {made.slots.content(s).files[MODEL_FILE].sha256 for s in Slot}  # type: ignore[union-attr]
    assert {p.name for p in made.cache_dir.iterdir()} == hashes  # r1's copy is gone
