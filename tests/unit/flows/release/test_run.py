"""Rollback as a new release: which release's files come back, and the manifest they come back
under, which a device's version floor accepts where the older release itself is refused."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_runtime.contract import InputSignature, Lineage, ModelFile, ReleaseManifest
from edge_runtime.update.policy import VersionBelowFloor, check_version_floor
from flows.release.candidate import ReleaseError
from flows.release.rollback import (
    RESTORES,
    ROLLBACK_OF,
    release_to_restore,
    rollback_manifest,
    signed_files,
)
from flows.release.tuf import ReleaseRepository

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def manifest(version: int, parent: str | None, *, model: bytes | None = None,
             metrics: dict[str, float] | None = None) -> ReleaseManifest:
    data = model if model is not None else f"model {version}".encode()
    return ReleaseManifest(
        release_id=f"v{version}", version=version,
        files=[ModelFile(name="model.onnx", sha256=hashlib.sha256(data).hexdigest(),
                         size=len(data))],
        input=InputSignature(imgsz=320, classes=["nut", "washer", "bolt"]),
        metrics=metrics or {"drift_gain": 3.25},
        lineage=Lineage(git_commit=f"commit{version}", dataset_version=f"data{version}",
                        params_hash=f"params{version}", parent_release=parent),
        created_at=NOW, expires_at=NOW + timedelta(days=180))


def signed(*manifests: ReleaseManifest) -> dict[str, ReleaseManifest]:
    return {m.release_id: m for m in manifests}


V1 = manifest(1, None)
V2 = manifest(2, "v1")


def test_rollback_restores_the_release_the_bad_one_replaced() -> None:
    assert release_to_restore(V2, signed(V1, V2)) == V1


def test_rollback_manifest_is_the_old_files_as_a_new_version_the_floor_accepts() -> None:
    v3 = rollback_manifest(V2, V1, version=3, expires_in=timedelta(days=180),
                           now=NOW + timedelta(hours=1))
    assert v3.release_id == "v3-rollback-of-v2" and v3.version == 3
    assert v3.files == V1.files and v3.input == V1.input
    assert v3.lineage == V1.lineage.model_copy(update={"parent_release": "v2"})
    assert v3.metrics == {"drift_gain": 3.25, ROLLBACK_OF: 2.0, RESTORES: 1.0}
    assert v3.expires_at == NOW + timedelta(hours=1, days=180)
    check_version_floor(v3, V2.version)  # a device that activated v2 takes it
    with pytest.raises(VersionBelowFloor, match="below this device's floor 2"):
        check_version_floor(V1, V2.version)  # ... and refuses v1 itself: a rollback attack


V3 = manifest(3, "v2")
V4 = manifest(4, "v3", metrics={ROLLBACK_OF: 3, RESTORES: 2})  # v2's files again


def test_rolling_back_a_rollback_goes_to_the_release_before_the_files_it_restored() -> None:
    assert release_to_restore(V4, signed(V1, V2, V3, V4)) == V1


def test_a_parent_that_was_rolled_back_is_replaced_by_its_rollback() -> None:
    v5 = manifest(5, "v3")  # published while stable still ran v3, before v3 was rolled back
    assert release_to_restore(v5, signed(V1, V2, V3, V4, v5)) == V4


def test_nothing_to_roll_back_to_is_refused() -> None:
    with pytest.raises(ReleaseError, match="replaced no earlier release"):
        release_to_restore(V1, signed(V1))
    with pytest.raises(ReleaseError, match="not in the signed repository"):
        release_to_restore(V2, signed(V2))
    broken = manifest(3, "v2", metrics={ROLLBACK_OF: 2, RESTORES: 7})
    with pytest.raises(ReleaseError, match="restores version 7"):
        release_to_restore(broken, signed(V1, V2, broken))


def test_signed_files_are_read_back_and_checked_against_their_manifest(tmp_path: Path) -> None:
    repo = ReleaseRepository.create(tmp_path / "tuf", tmp_path / "keys")
    model = tmp_path / "model.onnx"
    model.write_bytes(b"model 1")
    repo.add_release(V1, {"model.onnx": model})
    (path,) = signed_files(repo, V1).values()
    assert path.read_bytes() == b"model 1"
    path.write_bytes(b"tampered")
    with pytest.raises(ReleaseError, match="differs from the signed manifest of v1"):
        signed_files(repo, V1)
