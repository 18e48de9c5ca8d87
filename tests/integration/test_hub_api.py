"""The hub's HTTP face on a real server: it answers its health check and documents its API."""

from __future__ import annotations

from tests.support.hub import RunningHub


def test_hub_answers_healthz_and_documents_its_api(sqlite_hub: RunningHub) -> None:
    with sqlite_hub.http() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        spec = http.get("/openapi.json").json()
    assert {"/v1/telemetry", "/v1/samples", "/v1/heartbeat", "/v1/assignment",
            "/v1/releases/{release_id}/model", "/v1/admin/telemetry"} <= set(spec["paths"])
    assert {"TelemetryBatch", "FrameStats", "SampleMeta", "DeviceStatus",
            "ReleaseManifest"} <= set(spec["components"]["schemas"])
