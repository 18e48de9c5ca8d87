"""Who may call what: device tokens write only as their device, admin calls need the admin token,
revoked and unknown tokens are refused, and several hub processes agree at once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from edge_runtime.contract import DeviceStatus, TelemetryBatch
from hub.auth import hash_token
from hub.client import HubRequestError
from hub.db import Database, devices
from tests.support.hub import ADMIN_TOKEN, RunningHub, hub_settings, running_hub
from tests.support.postgres import empty_pg
from tests.support.records import T0, batch, gz, jpeg, meta

JSON_GZIP = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
ADMIN_CALLS = [
    ("GET", "/v1/admin/devices", None),
    ("POST", "/v1/admin/devices", {"device_id": "cam-9"}),
    ("POST", "/v1/admin/devices/cam-1/revoke", None),
    ("GET", "/v1/admin/telemetry", None),
    ("GET", "/v1/admin/samples", None),
    ("GET", "/v1/admin/releases", None),
    ("PUT", "/v1/admin/channels/stable", {"release_id": "r1"}),
    ("POST", "/v1/admin/channels/stable/rollback", None),
]


def status_of(device_id: str) -> DeviceStatus:
    return DeviceStatus(device_id=device_id, sent_at=T0, model_version="m1", uptime_s=1.0,
                        frames_seen=1, spool_telemetry=0, spool_samples=0, spool_bytes=0,
                        dropped={})


def device_calls(http: httpx.Client, as_device: str) -> dict[str, int]:
    """Status of each device write, claiming to be `as_device`."""
    return {
        "telemetry": http.post("/v1/telemetry", content=gz(batch(as_device, [1])),
                               headers=JSON_GZIP).status_code,
        "sample": http.post("/v1/samples", data={"meta": meta(as_device, 1).model_dump_json()},
                            files={"image": ("x.jpg", jpeg(), "image/jpeg")}).status_code,
        "heartbeat": http.post("/v1/heartbeat", content=status_of(as_device).model_dump_json(),
                               headers={"Content-Type": "application/json"}).status_code,
        "assignment": http.get("/v1/assignment").status_code,
    }


@pytest.mark.parametrize("authorization, expected", [
    (None, 401),
    ("Bearer not-a-token", 401),
    ("Basic dXNlcjpwYXNz", 401),
    ("Bearer", 401),
    (f"Bearer {ADMIN_TOKEN}", 401),  # the admin token is not a device's
])
def test_device_endpoints_refuse_missing_and_wrong_tokens(
        sqlite_hub: RunningHub, authorization: str | None, expected: int) -> None:
    sqlite_hub.add_device("cam-1")
    headers = {} if authorization is None else {"Authorization": authorization}
    with httpx.Client(base_url=sqlite_hub.url, headers=headers, trust_env=False) as http:
        answers = device_calls(http, "cam-1")
        assert http.get("/v1/telemetry").status_code == 405
    assert answers == dict.fromkeys(answers, expected)


def test_a_device_writes_only_as_itself(hub: RunningHub) -> None:
    token = hub.add_device("cam-1")
    hub.add_device("cam-2")
    with hub.http(token) as http:
        as_other = device_calls(http, "cam-2")
        own_batch_foreign_record = http.post(
            "/v1/telemetry", headers={"Content-Type": "application/json"},
            content=TelemetryBatch.model_construct(
                device_id="cam-1", sent_at=T0, contract=1,
                records=[*batch("cam-1", [1]).records, *batch("cam-2", [2]).records],
            ).model_dump_json())
    assert {k: v for k, v in as_other.items() if k != "assignment"} == {
        "telemetry": 403, "sample": 403, "heartbeat": 403}
    # The contract itself refuses a batch that mixes devices: 422, so that the uplink isolates
    # and drops the foreign record instead of retrying the whole batch forever (as on 403).
    assert own_batch_foreign_record.status_code == 422
    assert "cam-2" in own_batch_foreign_record.json()["detail"]
    with hub.admin() as admin:
        assert len(admin.telemetry()) == 0
        assert admin.samples() == []


def test_revoked_device_is_refused_and_rotation_lets_it_back(hub: RunningHub) -> None:
    token = hub.add_device("cam-1")
    with hub.admin() as admin:
        assert admin.revoke_device("cam-1").revoked
        with hub.http(token) as http:
            refused = device_calls(http, "cam-1")
        fresh = admin.rotate_token("cam-1").token
    assert refused == dict.fromkeys(refused, 403)
    with hub.http(token) as old, hub.http(fresh) as new:
        assert old.get("/v1/assignment").status_code == 401  # the old token is gone for good
        assert new.post("/v1/telemetry", content=gz(batch("cam-1", [1])),
                        headers=JSON_GZIP).status_code == 200


@pytest.mark.parametrize("method, path, body", ADMIN_CALLS)
def test_admin_endpoints_refuse_device_and_missing_tokens(
        sqlite_hub: RunningHub, method: str, path: str, body: dict | None) -> None:
    device_token = sqlite_hub.add_device("cam-1")
    for token in (None, device_token, "x" * 40):
        with sqlite_hub.http(token) as http:
            answer = http.request(method, path, json=body)
        assert answer.status_code == 401, (token, answer.text)
        assert answer.json()["detail"]


def test_tokens_are_stored_only_as_hashes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    with running_hub(hub_settings(url, tmp_path)) as hub:
        token = hub.add_device("cam-1")
    db = Database(url)
    try:
        with db.read() as conn:
            stored = conn.execute(devices.select()).one()
    finally:
        db.dispose()
    assert stored.token_hash == hash_token(token)
    assert token not in str(stored)
    assert token.encode() not in (tmp_path / "hub.sqlite").read_bytes()


def test_two_hub_processes_share_one_registry(pg_url: str, tmp_path: Path) -> None:
    empty_pg(pg_url)
    settings = hub_settings(pg_url, tmp_path)
    with running_hub(settings) as a, running_hub(settings) as b:
        token = a.add_device("cam-1")
        with b.device(token) as on_b:
            assert on_b.post_telemetry(batch("cam-1", range(10))).stored == 10
        with a.admin() as admin:
            admin.revoke_device("cam-1")
        with b.http(token) as http:  # revocation holds on every process at once: no cache
            assert http.get("/v1/assignment").status_code == 403


def test_invalid_device_ids_are_refused_with_a_readable_reason(sqlite_hub: RunningHub) -> None:
    with sqlite_hub.admin() as admin:
        for bad in ("../cam", "cam/1", ".hidden", "", "x" * 65, "cam\x00"):
            with pytest.raises(HubRequestError) as refused:
                admin.add_device(bad)
            assert refused.value.status == 422
            assert "device_id" in refused.value.detail
        assert admin.devices() == []
