"""Releases and channels against a real hub: artefacts checked on upload, versions that only go
up, assign / promote / roll back, and what a device is told to run."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from edge_runtime.contract import InputSignature, ModelFile, ReleaseManifest
from hub.client import HubRequestError
from tests.support.hub import ADMIN_TOKEN, RunningHub
from tests.support.records import T0


def model_bytes(version: int) -> bytes:
    return f"onnx model, version {version}".encode() * 100


def manifest(version: int, files: dict[str, bytes], release_id: str | None = None
             ) -> ReleaseManifest:
    return ReleaseManifest(
        release_id=release_id or f"r{version}", version=version, created_at=T0,
        input=InputSignature(imgsz=320, classes=["bolt", "nut"]),
        files=[ModelFile(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
               for name, data in files.items()])


def publish(hub: RunningHub, version: int, release_id: str | None = None) -> ReleaseManifest:
    files = {"model.onnx": model_bytes(version), "labels.txt": b"bolt\nnut\n"}
    with hub.admin() as admin:
        return admin.create_release(manifest(version, files, release_id), files)


def refusal(call: object) -> HubRequestError:
    with pytest.raises(HubRequestError) as refused:
        call()  # type: ignore[operator]
    return refused.value


def test_channels_are_assigned_promoted_and_rolled_back(hub: RunningHub) -> None:
    r1, r2, r3 = publish(hub, 1), publish(hub, 2), publish(hub, 3)
    stable_token = hub.add_device("cam-s", "stable")
    canary_token = hub.add_device("cam-c", "canary")
    with hub.admin() as admin, hub.device(stable_token) as stable, \
            hub.device(canary_token) as canary:
        assert stable.assignment() is None
        admin.assign("stable", "r1")
        admin.assign("canary", "r2")
        assert (stable.assignment(), canary.assignment()) == (r1, r2)
        assert admin.promote("stable", from_channel="canary").release == r2
        assert stable.assignment() == r2
        admin.assign("canary", "r3")
        assert admin.promote("stable", from_channel="canary").release == r3
        assert admin.rollback("stable").release == r2
        assert admin.rollback("stable").release == r1  # walks back, never flips between two
        assert stable.assignment() == r1
        assert refusal(lambda: admin.rollback("stable")).status == 409
        state = admin.channel("stable")
        on = {r.manifest.release_id: r.channels for r in admin.releases()}
    assert [(e.release_id, e.action, e.rolled_back_at is None) for e in state.history] == [
        ("r3", "promote", False), ("r2", "promote", False), ("r1", "assign", True)]
    assert on == {"r1": ["stable"], "r2": [], "r3": ["canary"]}
    assert r3.version == 3


def test_assignment_of_a_channel_without_release_is_204_with_a_reason(hub: RunningHub) -> None:
    token = hub.add_device("cam-1", "beta")
    with hub.http(token) as http:
        answer = http.get("/v1/assignment")
    assert answer.status_code == 204
    assert "beta" in answer.headers["Edgeloop-Reason"]


def test_devices_download_the_artefacts_they_are_told_to_run(hub: RunningHub) -> None:
    publish(hub, 1)
    token = hub.add_device("cam-1")
    with hub.admin() as admin, hub.device(token) as device:
        admin.assign("stable", "r1")
        assigned = device.assignment()
        assert assigned is not None
        model = device.download(assigned.release_id)
        labels = device.download(assigned.release_id, "labels.txt")
        missing = refusal(lambda: device.download("r1", "weights.bin"))
        unknown = refusal(lambda: device.download("r9"))
    assert model == model_bytes(1)
    assert hashlib.sha256(model).hexdigest() == assigned.files[0].sha256
    assert labels == b"bolt\nnut\n"
    assert (missing.status, unknown.status) == (404, 404)
    with hub.http() as anonymous:
        assert anonymous.get("/v1/releases/r1/model").status_code == 401


def test_versions_only_go_up(hub: RunningHub) -> None:
    publish(hub, 5)
    same = refusal(lambda: publish(hub, 5, release_id="r5-again"))
    lower = refusal(lambda: publish(hub, 4))
    same_id = refusal(lambda: publish(hub, 6, release_id="r5"))
    assert (same.status, lower.status, same_id.status) == (409, 409, 409)
    assert "only go up" in lower.detail
    assert publish(hub, 6).version == 6
    with hub.admin() as admin:
        assert [r.manifest.version for r in admin.releases()] == [6, 5]


@pytest.mark.parametrize("tamper, reason", [
    (lambda files: {**files, "model.onnx": files["model.onnx"][:-1] + b"X"}, "sha256"),
    (lambda files: {**files, "model.onnx": files["model.onnx"] + b"!"}, "bytes uploaded"),
    (lambda files: {"model.onnx": files["model.onnx"]}, "missing ['labels.txt']"),
    (lambda files: {**files, "../model.onnx": b"x"}, "not in the manifest"),
])
def test_artefacts_that_do_not_match_the_manifest_are_refused(
        sqlite_hub: RunningHub, tamper: object, reason: str) -> None:
    files = {"model.onnx": model_bytes(1), "labels.txt": b"bolt\nnut\n"}
    sent = tamper(files)  # type: ignore[operator]
    with sqlite_hub.admin() as admin:
        refused = refusal(lambda: admin.create_release(manifest(1, files), sent))
        assert admin.releases() == []
    assert refused.status == 422
    assert reason in refused.detail


def test_manifest_is_served_byte_for_byte_as_published(sqlite_hub: RunningHub) -> None:
    files = {"model.onnx": model_bytes(1)}
    text = "{\n  " + manifest(1, files).model_dump_json()[1:]  # not pydantic's own layout
    token = sqlite_hub.add_device("cam-1")
    with sqlite_hub.admin() as admin:
        admin.create_release(text, files)
        admin.assign("stable", "r1")
    with sqlite_hub.http(token) as http:
        assert http.get("/v1/assignment").text == text


def test_invalid_manifest_is_refused_with_422(sqlite_hub: RunningHub) -> None:
    with sqlite_hub.http(None) as http:
        answer = http.post("/v1/admin/releases",
                           headers={"Authorization": "Bearer test-admin-token-0123456789"},
                           data={"manifest": '{"release_id": "../r1", "version": 0}'},
                           files={"files": ("model.onnx", b"x", "application/octet-stream")})
    assert answer.status_code == 422
    assert "release_id" in answer.json()["detail"]


def artefact_blobs(hub: RunningHub) -> list[str]:
    folder = hub.blobs_dir / "artefacts"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("version", [2**31, 2**63, 2**70])
def test_a_release_the_hub_cannot_store_leaves_no_artefact_behind(hub: RunningHub,
                                                                  version: int) -> None:
    files = {"model.onnx": model_bytes(7)}
    text = manifest(7, files).model_dump_json().replace('"version":7', f'"version":{version}')
    with hub.admin() as admin:
        refused = refusal(lambda: admin.create_release(text, files))
        assert refused.status == 422 and "version" in refused.detail
        assert admin.releases() == []
        publish(hub, 1)  # the hub still takes a release it can store
    assert artefact_blobs(hub) == sorted(hashlib.sha256(d).hexdigest()
                                         for d in (model_bytes(1), b"bolt\nnut\n"))


def test_devices_fetch_only_releases_their_channel_ever_ran(hub: RunningHub) -> None:
    for version in (1, 2, 3):
        publish(hub, version)
    token = hub.add_device("cam-c", "canary")
    paths = ["/v1/releases/{}/model", "/v1/releases/{}/files/labels.txt",
             "/v1/tuf/targets/{}/model.onnx"]

    def fetchable(http: httpx.Client, release_id: str) -> bool:
        codes = {http.get(p.format(release_id)).status_code for p in paths}
        assert codes in ({200}, {404}), (release_id, codes)
        return codes == {200}

    with hub.admin() as admin, hub.http(token) as device, hub.http(ADMIN_TOKEN) as operator:
        admin.assign("stable", "r1")
        assert [fetchable(device, r) for r in ("r1", "r2", "r3")] == [False, False, False]
        unknown = device.get("/v1/releases/r1/model").json()["detail"]
        assert unknown == device.get("/v1/releases/r9/model").json()["detail"].replace("r9", "r1")
        admin.assign("canary", "r2")
        admin.assign("canary", "r3")
        admin.rollback("canary")  # r3 was on the channel: still fetchable, rolled back or not
        assert [fetchable(device, r) for r in ("r1", "r2", "r3")] == [False, True, True]
        admin.set_device_channel("cam-c", "stable")  # moved: the new channel's history counts
        assert [fetchable(device, r) for r in ("r1", "r2", "r3")] == [True, False, False]
        assert all(fetchable(operator, r) for r in ("r1", "r2", "r3"))  # the admin fetches any
