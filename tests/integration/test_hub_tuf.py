"""TUF through a real hub: the metadata the release flow signs, served by the hub, verifies with
tuf.ngclient on a device (targets download, timestamps refresh, rotated keys chain), and the hub
refuses uploads that are not what it serves."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tuf.api.exceptions import DownloadHTTPError, LengthOrHashMismatchError
from tuf.api.metadata import Metadata
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from edge_runtime.contract import TARGET_MANIFEST_FIELD, InputSignature, ModelFile, ReleaseManifest
from flows.release.tuf import ReleaseRepository
from hub.client import HubClient, HubRequestError
from tests.support.hub import RunningHub
from tests.support.records import T0


class BearerFetcher(FetcherInterface):
    """ngclient's downloads with the device's bearer token (what the device updater does)."""

    def __init__(self, token: str) -> None:
        self._http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30.0,
                                  trust_env=False)

    def _fetch(self, url: str) -> Iterator[bytes]:
        response = self._http.get(url)
        if response.status_code != 200:
            raise DownloadHTTPError(f"GET {url}: {response.status_code}", response.status_code)
        return iter((response.content,))


def release_files(tmp_path: Path, version: int) -> tuple[ReleaseManifest, dict[str, Path]]:
    folder = tmp_path / f"r{version}"
    folder.mkdir(parents=True, exist_ok=True)
    data = f"onnx model, version {version}".encode() * 200
    (folder / "model.onnx").write_bytes(data)
    manifest = ReleaseManifest(
        release_id=f"r{version}", version=version, created_at=T0,
        input=InputSignature(imgsz=320, classes=["bolt", "nut"]),
        metrics={"drift_map50_95": 40.25 + version},
        files=[ModelFile(name="model.onnx", sha256=hashlib.sha256(data).hexdigest(),
                         size=len(data))])
    return manifest, {"model.onnx": folder / "model.onnx"}


def publish(admin: HubClient, repo: ReleaseRepository, tmp_path: Path,
            version: int) -> ReleaseManifest:
    """Signs and publishes release `version`, assigned to the canary channel (a device fetches
    only what its channel was assigned)."""
    manifest, files = release_files(tmp_path, version)
    admin.create_release(manifest, files)
    repo.add_release(manifest, files)
    admin.publish_tuf_metadata(repo.metadata_files())
    admin.assign("canary", manifest.release_id)
    return manifest


def device_updater(hub: RunningHub, token: str, folder: Path, trusted_root: bytes) -> Updater:
    (folder / "targets").mkdir(parents=True, exist_ok=True)
    return Updater(str(folder), f"{hub.url}/v1/tuf/metadata/", str(folder / "targets"),
                   f"{hub.url}/v1/tuf/targets/", fetcher=BearerFetcher(token),
                   bootstrap=trusted_root)


@pytest.fixture
def repo(tmp_path: Path) -> ReleaseRepository:
    return ReleaseRepository.create(tmp_path / "tuf", tmp_path / "keys")


def test_device_verifies_hub_metadata_and_downloads_the_signed_model(
        hub: RunningHub, repo: ReleaseRepository, tmp_path: Path) -> None:
    token = hub.add_device("cam-1", "canary")
    trusted_root = (repo.metadata_dir / "1.root.json").read_bytes()
    with hub.admin() as admin:
        manifest = publish(admin, repo, tmp_path, 1)
    device = device_updater(hub, token, tmp_path / "device", trusted_root)
    device.refresh()
    info = device.get_targetinfo("r1/model.onnx")
    assert info is not None
    assert ReleaseManifest.model_validate(info.custom[TARGET_MANIFEST_FIELD]) == manifest
    staged = device.download_target(info, str(tmp_path / "staged.onnx"))
    assert Path(staged).read_bytes() == (tmp_path / "r1" / "model.onnx").read_bytes()
    with hub.device(token) as client:
        assert client.tuf_target("r1/model.onnx") == Path(staged).read_bytes()
        assert client.tuf_metadata("2.root.json") is None


def test_tampered_blob_on_the_hub_is_refused_by_the_device(
        hub: RunningHub, repo: ReleaseRepository, tmp_path: Path) -> None:
    token = hub.add_device("cam-1", "canary")
    with hub.admin() as admin:
        manifest = publish(admin, repo, tmp_path, 1)
    blob = hub.blobs_dir / "artefacts" / manifest.files[0].sha256
    data = bytearray(blob.read_bytes())
    data[100] ^= 0x01
    blob.write_bytes(bytes(data))
    device = device_updater(hub, token, tmp_path / "device",
                            (repo.metadata_dir / "root.json").read_bytes())
    device.refresh()
    info = device.get_targetinfo("r1/model.onnx")
    assert info is not None
    with pytest.raises(LengthOrHashMismatchError):
        device.download_target(info, str(tmp_path / "staged.onnx"))


def test_resigned_timestamp_is_picked_up_by_the_device(
        hub: RunningHub, repo: ReleaseRepository, tmp_path: Path) -> None:
    token = hub.add_device("cam-1", "canary")
    trusted_root = (repo.metadata_dir / "root.json").read_bytes()
    with hub.admin() as admin:
        publish(admin, repo, tmp_path, 1)
        device_updater(hub, token, tmp_path / "device", trusted_root).refresh()
        seen = Metadata.from_file(str(tmp_path / "device" / "timestamp.json")).signed.version
        repo.refresh_timestamp()
        stored = admin.put_tuf_metadata("timestamp.json",
                                        (repo.metadata_dir / "timestamp.json").read_bytes())
    assert stored.version == seen + 1 and stored.changed
    device_updater(hub, token, tmp_path / "device", trusted_root).refresh()
    now = Metadata.from_file(str(tmp_path / "device" / "timestamp.json")).signed.version
    assert now == seen + 1


def test_rotated_root_key_verifies_through_the_root_chain(
        hub: RunningHub, repo: ReleaseRepository, tmp_path: Path) -> None:
    token = hub.add_device("cam-1", "canary")
    trusted_root = (repo.metadata_dir / "1.root.json").read_bytes()
    with hub.admin() as admin:
        publish(admin, repo, tmp_path, 1)
        device_updater(hub, token, tmp_path / "device", trusted_root).refresh()
        repo.rotate_key("root")
        repo.rotate_key("timestamp")
        publish(admin, repo, tmp_path, 2)
    device = device_updater(hub, token, tmp_path / "device", trusted_root)
    device.refresh()
    assert Metadata.from_file(str(tmp_path / "device" / "root.json")).signed.version == 3
    info = device.get_targetinfo("r2/model.onnx")
    assert info is not None
    device.download_target(info, str(tmp_path / "r2.onnx"))


def test_hub_refuses_what_it_would_not_serve(hub: RunningHub,
                                             repo: ReleaseRepository, tmp_path: Path) -> None:
    timestamp = (repo.metadata_dir / "timestamp.json").read_bytes()
    with hub.admin() as admin:
        admin.publish_tuf_metadata(repo.metadata_files())
        cases = {
            "keys.json": (timestamp, 422, "not a TUF metadata file the hub serves"),
            "timestamp.json": (b"{not json", 422, "not JSON"),
            "snapshot.json": (timestamp, 422, "must hold snapshot metadata"),
            "2.root.json": ((repo.metadata_dir / "1.root.json").read_bytes(), 422,
                            "holds root version 1, not 2"),
        }
        for name, (body, status, reason) in cases.items():
            with pytest.raises(HubRequestError) as refused:
                admin.put_tuf_metadata(name, body)
            assert (refused.value.status, reason in refused.value.detail) == (status, True), name
        assert not admin.put_tuf_metadata("timestamp.json", timestamp).changed  # a retry is fine
        repo.refresh_timestamp()
        newer = (repo.metadata_dir / "timestamp.json").read_bytes()
        admin.put_tuf_metadata("timestamp.json", newer)
        with pytest.raises(HubRequestError) as older:
            admin.put_tuf_metadata("timestamp.json", timestamp)
        assert older.value.status == 409 and "only go up" in older.value.detail
        assert admin.tuf_metadata("timestamp.json") == newer
        assert admin.tuf_metadata("keys.json") is None
    with hub.http() as anonymous:
        assert anonymous.get("/v1/tuf/metadata/root.json").status_code == 401
    token = hub.add_device("cam-1")
    with hub.http(token) as device:
        assert device.put("/v1/admin/tuf/metadata/root.json", content=timestamp,
                          headers={"Content-Type": "application/json"}).status_code == 401
        assert device.get("/v1/tuf/targets/r9/model.onnx").status_code == 404
        unknown = device.get("/v1/tuf/metadata/keys.json")
        assert unknown.status_code == 404 and "root.json" in unknown.json()["detail"]
        too_big = b'{"signed": {}, "signatures": [], "pad": "' + b"x" * 300_000 + b'"}'
        assert hub.http().put(
            "/v1/admin/tuf/metadata/targets.json", content=too_big,
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {hub.settings.admin_token}"},
        ).status_code == 413
