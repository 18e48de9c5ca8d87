"""The TUF release repository: what it signs verifies with tuf.ngclient, and what it refuses."""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.exceptions import DownloadHTTPError, ExpiredMetadataError
from tuf.api.metadata import Metadata
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from edge_runtime.contract import (
    TARGET_MANIFEST_FIELD,
    InputSignature,
    Lineage,
    ModelFile,
    ReleaseManifest,
)
from flows.release.tuf import ReleaseRepository
from flows.release.tuf_metadata import ReleaseRepositoryError, RoleExpiry

BASE = "http://repo.invalid"


class FolderFetcher(FetcherInterface):
    """Serves a repository folder at BASE (metadata/, targets/), like a static web server."""

    def __init__(self, repo_dir: Path) -> None:
        self.repo_dir = repo_dir
        self.fetched: list[str] = []

    def _fetch(self, url: str) -> Iterator[bytes]:
        self.fetched.append(url)
        path = self.repo_dir / url.removeprefix(BASE + "/")
        if not path.is_file():
            raise DownloadHTTPError(f"not found: {url}", 404)
        return iter((path.read_bytes(),))


def model_file(folder: Path, name: str, content: bytes) -> tuple[Path, ModelFile]:
    path = folder / name
    path.write_bytes(content)
    return path, ModelFile(name=name, sha256=hashlib.sha256(content).hexdigest(),
                           size=len(content))


def release(folder: Path, release_id: str, version: int,
            content: bytes = b"onnx bytes") -> tuple[ReleaseManifest, dict[str, Path]]:
    folder = folder / release_id
    folder.mkdir(parents=True, exist_ok=True)
    path, entry = model_file(folder, "model.onnx", content + release_id.encode())
    manifest = ReleaseManifest(
        release_id=release_id, version=version, files=[entry],
        input=InputSignature(imgsz=320, classes=["nut", "washer", "bolt"]),
        metrics={"drift_map50_95": 41.5},
        lineage=Lineage(git_commit="a" * 40, params_hash="b" * 64),
        created_at=datetime(2026, 11, 1, tzinfo=UTC))
    return manifest, {"model.onnx": path}


def updater(repo: ReleaseRepository, device_dir: Path, trusted_root: bytes) -> Updater:
    device_dir.mkdir(parents=True, exist_ok=True)
    (device_dir / "targets").mkdir(exist_ok=True)
    return Updater(str(device_dir), f"{BASE}/metadata/", str(device_dir / "targets"),
                   f"{BASE}/targets/", fetcher=FolderFetcher(repo.repo_dir),
                   bootstrap=trusted_root)


@pytest.fixture
def repo(tmp_path: Path) -> ReleaseRepository:
    return ReleaseRepository.create(tmp_path / "repo", tmp_path / "keys")


def test_new_repository_has_root_v1_and_keys_outside_it(repo: ReleaseRepository,
                                                        tmp_path: Path) -> None:
    names = sorted(p.name for p in repo.metadata_dir.iterdir())
    assert names == ["1.root.json", "root.json", "snapshot.json", "targets.json",
                     "timestamp.json"]
    root = Metadata.from_file(str(repo.metadata_dir / "root.json")).signed
    assert root.version == 1 and root.consistent_snapshot is False
    keys = sorted((tmp_path / "keys").glob("*.pem"))
    assert len(keys) == 4
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    assert not list((tmp_path / "repo").rglob("*.pem"))


def test_keys_inside_the_repository_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ReleaseRepositoryError, match="outside the repository"):
        ReleaseRepository.create(tmp_path / "repo", tmp_path / "repo" / "keys")


def test_signed_release_verifies_and_downloads_with_ngclient(repo: ReleaseRepository,
                                                             tmp_path: Path) -> None:
    manifest, files = release(tmp_path, "r1", 1)
    repo.add_release(manifest, files)
    reopened = ReleaseRepository.open(repo.repo_dir, repo.keys_dir)
    assert reopened.manifest("r1") == manifest

    device = updater(repo, tmp_path / "device", (repo.metadata_dir / "1.root.json").read_bytes())
    device.refresh()
    info = device.get_targetinfo("r1/model.onnx")
    assert info is not None
    assert ReleaseManifest.model_validate(info.custom[TARGET_MANIFEST_FIELD]) == manifest
    path = device.download_target(info, str(tmp_path / "staged.onnx"))
    assert Path(path).read_bytes() == files["model.onnx"].read_bytes()
    assert device.get_targetinfo("r2/model.onnx") is None


def test_file_that_does_not_match_its_manifest_is_refused(repo: ReleaseRepository,
                                                           tmp_path: Path) -> None:
    manifest, files = release(tmp_path, "r1", 1)
    files["model.onnx"].write_bytes(b"tampered")
    with pytest.raises(ReleaseRepositoryError, match="sha256"):
        repo.add_release(manifest, files)
    with pytest.raises(ReleaseRepositoryError, match="do not match the manifest"):
        repo.add_release(manifest, {"other.onnx": files["model.onnx"]})
    assert json.loads((repo.metadata_dir / "targets.json").read_text())["signed"]["version"] == 1


def test_versions_only_go_up_and_ids_are_signed_once(repo: ReleaseRepository,
                                                     tmp_path: Path) -> None:
    repo.add_release(*release(tmp_path, "r2", 2))
    with pytest.raises(ReleaseRepositoryError, match="already signed"):
        repo.add_release(*release(tmp_path, "r2", 3))
    with pytest.raises(ReleaseRepositoryError, match="versions only go up"):
        repo.add_release(*release(tmp_path, "r1", 2))
    repo.add_release(*release(tmp_path, "r3", 3))
    assert [m.release_id for m in repo.manifests()] == ["r2", "r3"]


def test_refreshed_timestamp_is_picked_up_and_snapshot_unchanged(repo: ReleaseRepository,
                                                                 tmp_path: Path) -> None:
    repo.add_release(*release(tmp_path, "r1", 1))
    snapshot_before = (repo.metadata_dir / "snapshot.json").read_bytes()
    device = updater(repo, tmp_path / "device", (repo.metadata_dir / "root.json").read_bytes())
    device.refresh()
    repo.refresh_timestamp()
    assert (repo.metadata_dir / "snapshot.json").read_bytes() == snapshot_before
    updater(repo, tmp_path / "device", (repo.metadata_dir / "root.json").read_bytes()).refresh()
    local = Metadata.from_file(str(tmp_path / "device" / "timestamp.json")).signed
    assert local.version == 3  # created 1, release 2, refresh 3


def test_expired_timestamp_is_refused_by_the_device(tmp_path: Path) -> None:
    expiry = RoleExpiry(timestamp=timedelta(seconds=1))
    repo = ReleaseRepository.create(tmp_path / "repo", tmp_path / "keys", expiry=expiry)
    timestamp = Metadata.from_file(str(repo.metadata_dir / "timestamp.json"))
    timestamp.signed.expires = datetime(2020, 1, 1, tzinfo=UTC)
    timestamp.sign(repo._signers["timestamp"])
    (repo.metadata_dir / "timestamp.json").write_bytes(timestamp.to_bytes())
    device = updater(repo, tmp_path / "device", (repo.metadata_dir / "root.json").read_bytes())
    with pytest.raises(ExpiredMetadataError):
        device.refresh()


@pytest.mark.parametrize("role", ["root", "targets", "snapshot", "timestamp"])
def test_rotated_key_verifies_through_the_root_chain(repo: ReleaseRepository, tmp_path: Path,
                                                     role: str) -> None:
    trusted_root = (repo.metadata_dir / "root.json").read_bytes()
    repo.add_release(*release(tmp_path, "r1", 1))
    old_keys = set((tmp_path / "keys").glob("*.pem"))
    repo.rotate_key(role)
    assert len(old_keys - set((tmp_path / "keys").glob("*.pem"))) == 1  # old key gone
    reopened = ReleaseRepository.open(repo.repo_dir, repo.keys_dir)
    reopened.add_release(*release(tmp_path, "r2", 2))

    device = updater(reopened, tmp_path / "device", trusted_root)
    device.refresh()
    assert device.get_targetinfo("r2/model.onnx") is not None
    root = Metadata.from_file(str(tmp_path / "device" / "root.json")).signed
    assert root.version == 2
    if role == "root":
        signatures = Metadata.from_file(str(repo.metadata_dir / "2.root.json")).signatures
        assert len(signatures) == 2


def test_unknown_role_and_missing_keys_are_refused(repo: ReleaseRepository,
                                                   tmp_path: Path) -> None:
    with pytest.raises(ReleaseRepositoryError, match="unknown role"):
        repo.rotate_key("mirror")
    with pytest.raises(ReleaseRepositoryError, match="no private key of role"):
        ReleaseRepository.open(repo.repo_dir, tmp_path / "elsewhere")
    with pytest.raises(ReleaseRepositoryError, match="no TUF repository"):
        ReleaseRepository.open(tmp_path / "nothing", tmp_path / "keys")


def test_metadata_files_are_listed_root_chain_first(repo: ReleaseRepository) -> None:
    repo.rotate_key("root")
    names = [p.name for p in repo.metadata_files()]
    assert names == ["1.root.json", "2.root.json", "root.json", "targets.json",
                     "snapshot.json", "timestamp.json"]


def test_roles_near_expiry_are_resigned_and_still_verify(tmp_path: Path) -> None:
    expiry = RoleExpiry(snapshot=timedelta(days=2), timestamp=timedelta(hours=6))
    repo = ReleaseRepository.create(tmp_path / "repo", tmp_path / "keys", expiry=expiry)
    trusted_root = (repo.metadata_dir / "root.json").read_bytes()
    repo.add_release(*release(tmp_path, "r1", 1))
    assert repo.refresh_expiring(timedelta(days=1)) == ["timestamp"]
    assert repo.refresh_expiring(timedelta(days=3)) == ["snapshot", "timestamp"]
    assert repo.refresh_expiring(timedelta(days=400)) == ["root", "targets", "snapshot",
                                                          "timestamp"]
    device = updater(repo, tmp_path / "device", trusted_root)
    device.refresh()
    assert device.get_targetinfo("r1/model.onnx") is not None


def test_a_key_rotated_by_another_process_is_followed(repo: ReleaseRepository,
                                                      tmp_path: Path) -> None:
    trusted_root = (repo.metadata_dir / "root.json").read_bytes()
    other = ReleaseRepository.open(repo.repo_dir, repo.keys_dir)
    other.rotate_key("targets")
    repo.add_release(*release(tmp_path, "r1", 1))  # signed with the new targets key
    device = updater(repo, tmp_path / "device", trusted_root)
    device.refresh()
    assert device.get_targetinfo("r1/model.onnx") is not None
