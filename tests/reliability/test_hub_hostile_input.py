"""Hand-written hostile requests against a running hub: bodies too big as sent or once inflated,
images that claim absurd sizes, names that try to leave their folder, a device token used for
another device, replayed and reordered batches. Each refusal is a 4xx with a reason, and the
hub stores nothing of what it refused."""

from __future__ import annotations

import gzip
import io
import json
import random
import socket
import time
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from edge_runtime.contract import DeviceStatus, TelemetryBatch
from tests.support.hub import ADMIN_TOKEN, RunningHub, hub_settings, running_hub
from tests.support.records import T0, batch, gz, jpeg, jpeg_claiming, meta, stats, zero_png

pytestmark = pytest.mark.slow

KIB, MIB = 1024, 1024 * 1024
LIMITS = dict(telemetry_body_bytes=64 * KIB, telemetry_json_bytes=1 * MIB,
              sample_image_bytes=256 * KIB, image_pixels=4_000_000, json_body_bytes=64 * KIB,
              telemetry_json_values=100_000)
HOSTILE_NAMES = ["..", "../etc", "a/../../b", "/etc/passwd", "C:\\x", "cam\x00", "cam-1\n",
                 "\x00", "ｃａｍ１", "cam\u202e1", "cam\u200b", "é", "cam/1", "cam%2F1",
                 ".hidden", "x" * 65, ""]


@pytest.fixture
def small_hub(tmp_path: Path) -> Iterator[RunningHub]:
    """A SQLite hub with small limits, so that going over them stays cheap."""
    with running_hub(hub_settings(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path,
                                  **LIMITS)) as running:
        yield running


# -- what a refusal looks like, and what "nothing stored" means -----------------------------------


def refused(response: httpx.Response, status: int, *words: str) -> str:
    """The reason of a refusal, after checking its status and that it names `words`."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail, response.text[:500]
    for word in words:
        assert word.lower() in detail.lower(), detail
    return detail


def stored_files(hub: RunningHub) -> list[str]:
    return sorted(str(p.relative_to(hub.blobs_dir)) for p in hub.blobs_dir.rglob("*")
                  if p.is_file())


def assert_nothing_stored(hub: RunningHub) -> None:
    with hub.http(ADMIN_TOKEN) as admin:
        devices = admin.get("/v1/admin/devices").json()
        samples = admin.get("/v1/admin/samples").json()
        releases = admin.get("/v1/admin/releases").json()
        rows = admin.get("/v1/admin/telemetry").headers["Edgeloop-Rows"]
    assert [(d["telemetry_stored"], d["samples_stored"], d["status"]) for d in devices] == [
        (0, 0, None)] * len(devices)
    assert (samples, releases, rows) == ([], [], "0")
    assert stored_files(hub) == []


def post_telemetry(http: httpx.Client, body: bytes | Iterator[bytes], *,
                   gzip: bool = True) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    return http.post("/v1/telemetry", content=body, headers=headers)


def post_sample(http: httpx.Client, meta_json: str, image: bytes,
                filename: str = "frame.jpg") -> httpx.Response:
    return http.post("/v1/samples", data={"meta": meta_json},
                     files={"image": (filename, image, "image/jpeg")})


def heartbeat(device_id: str, sent_at: datetime, frames_seen: int = 1) -> DeviceStatus:
    return DeviceStatus(device_id=device_id, sent_at=sent_at, model_version="m1", uptime_s=1.0,
                        frames_seen=frames_seen, spool_telemetry=0, spool_samples=0,
                        spool_bytes=0, dropped={})


def gzip_of_zeros(size: int, members: int = 1) -> bytes:
    """`members` gzip members that each inflate to `size` zero bytes (about 1000:1)."""
    out = bytearray()
    chunk = bytes(MIB)
    for _ in range(members):
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        for start in range(0, size, MIB):
            out += packer.compress(chunk[: min(MIB, size - start)])
        out += packer.flush()
    return bytes(out)


# -- bodies too big as sent, or once inflated ------------------------------------------------------


def test_a_body_over_the_limit_is_refused_whether_or_not_it_declares_its_length(
        small_hub: RunningHub) -> None:
    token = small_hub.add_device("cam-1")
    big = b"[" + b" " * (LIMITS["telemetry_body_bytes"] + KIB) + b"]"
    with small_hub.http(token) as http:
        refused(post_telemetry(http, big, gzip=False), 413, "exceeds")
        # Chunked, no Content-Length: the hub counts while it reads and stops at the limit.
        chunks = (big[i : i + 4 * KIB] for i in range(0, len(big), 4 * KIB))
        refused(post_telemetry(http, chunks, gzip=False), 413, "exceeds")
        refused(http.post("/v1/heartbeat", content=b"{" + b" " * 70 * KIB + b"}",
                          headers={"Content-Type": "application/json"}), 413, "exceeds")
    assert_nothing_stored(small_hub)


def raw_status(hub: RunningHub, request: bytes) -> int:
    """The status a raw HTTP/1.1 request gets (httpx would refuse to send a malformed one)."""
    host, port = hub.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        status_line = conn.makefile("rb").readline()
    return int(status_line.split()[1])


@pytest.mark.parametrize("declared", ["-1", "lots", "1e9", str(2**70), "2, 2", "0x10"])
def test_a_content_length_that_is_not_a_length_is_refused(small_hub: RunningHub,
                                                         declared: str) -> None:
    token = small_hub.add_device("cam-1")
    request = (f"POST /v1/heartbeat HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {declared}\r\n"
               "Connection: close\r\n\r\n{}").encode()
    assert 400 <= raw_status(small_hub, request) < 500
    assert_nothing_stored(small_hub)


@pytest.mark.parametrize("members", [1, 40], ids=["one-member", "many-members"])
def test_a_small_gzip_that_inflates_past_the_limit_is_refused(small_hub: RunningHub,
                                                             members: int) -> None:
    token = small_hub.add_device("cam-1")
    # 64 MiB of zeros in about 64 KiB, or 40 members of 32 KiB each that only add up past it.
    size = 64 * MIB if members == 1 else 32 * KIB
    bomb = gzip_of_zeros(size, members)
    assert len(bomb) < LIMITS["telemetry_body_bytes"]
    with small_hub.http(token) as http:
        refused(post_telemetry(http, bomb), 413, "decompressed")
    assert_nothing_stored(small_hub)


def test_gzip_that_is_broken_or_not_gzip_is_refused(small_hub: RunningHub) -> None:
    token = small_hub.add_device("cam-1")
    good = gz(batch("cam-1", range(3)))
    with small_hub.http(token) as http:
        refused(post_telemetry(http, good[: len(good) // 2]), 400, "gzip")
        refused(post_telemetry(http, zlib.compress(b"{}")), 400, "gzip")
        refused(post_telemetry(http, good[:10] + bytes([good[10] ^ 0xFF]) + good[11:]), 400,
                "gzip")
        refused(http.post("/v1/telemetry", content=good, headers={
            "Content-Type": "application/json", "Content-Encoding": "br"}), 415, "encoding")
    assert_nothing_stored(small_hub)


def test_json_nested_too_deeply_is_refused_on_every_json_endpoint(small_hub: RunningHub) -> None:
    token = small_hub.add_device("cam-1")
    deep = b"[" * 30_000 + b"]" * 30_000  # 60 KB: under every body limit
    json_type = {"Content-Type": "application/json"}
    with small_hub.http(token) as http, small_hub.http(ADMIN_TOKEN) as admin:
        refused(post_telemetry(http, deep, gzip=False), 422, "recursion")
        refused(http.post("/v1/heartbeat", content=deep, headers=json_type), 422, "recursion")
        refused(post_sample(http, deep.decode(), jpeg(64, 48)), 422, "recursion")
        refused(admin.put("/v1/admin/tuf/metadata/timestamp.json", headers=json_type,
                          content=b'{"signed": ' + deep + b', "signatures": []}'), 422, "json")
        refused(admin.post("/v1/admin/devices", content=deep, headers=json_type), 400, "parsing")
        assert [d["device_id"] for d in admin.get("/v1/admin/devices").json()] == ["cam-1"]
    assert_nothing_stored(small_hub)


def test_multipart_with_extra_or_oversized_parts_is_refused(small_hub: RunningHub) -> None:
    token = small_hub.add_device("cam-1")
    sample = meta("cam-1", 1).model_dump_json()
    image = ("frame.jpg", jpeg(64, 48), "image/jpeg")
    with small_hub.http(token) as http:
        refused(http.post("/v1/samples", data={"meta": sample, "more": "x"},
                          files={"image": image}), 400, "fields")
        refused(http.post("/v1/samples", data={"meta": sample},
                          files={"image": image, "image2": image}), 400, "files")
        refused(http.post("/v1/samples", data={"meta": sample + " " * 70 * KIB},
                          files={"image": image}), 400, "exceeded")
        refused(http.post("/v1/samples", content=b"--x\r\nnot multipart at all", headers={
            "Content-Type": "multipart/form-data; boundary=x"}), 400, "multipart")
    assert_nothing_stored(small_hub)


# -- images ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("image", "status", "word"), [
    (zero_png(100_000, 100_000, pixels=False), 413, "a side"),
    (zero_png(2**31 - 1, 1, pixels=False), 413, "a side"),
    (jpeg_claiming(65535, 65535), 413, "a side"),
    (zero_png(4000, 4000), 413, "pixels"),  # 16 MP of zeros: a 16 KiB decompression bomb
    (zero_png(0, 48, pixels=False), 422, "empty"),
    (jpeg_claiming(0, 0), 422, "empty"),
    (zero_png(64, 48, pixels=False), 422, "decode"),  # the header is fine, the pixels are not there
    (jpeg(64, 48)[:200], 422, "truncated"),
    (b"\xff\xd8\xff" + b"\xff" * 5000, 422, "jpeg"),
    (b"GIF89a" + bytes(100), 415, "neither"),
], ids=["png-100k-side", "png-2G-side", "jpeg-64k-side", "png-pixel-bomb", "png-zero-width",
        "jpeg-zero-size", "png-no-pixels", "jpeg-truncated", "jpeg-fill-bytes-only", "gif"])
def test_images_with_absurd_or_broken_headers_are_refused_before_decoding(
        small_hub: RunningHub, image: bytes, status: int, word: str) -> None:
    token = small_hub.add_device("cam-1")
    with small_hub.http(token) as http:
        refused(post_sample(http, meta("cam-1", 1).model_dump_json(), image), status, word)
    assert_nothing_stored(small_hub)


def test_an_image_over_the_byte_limit_is_refused(small_hub: RunningHub) -> None:
    token = small_hub.add_device("cam-1")
    image = jpeg(64, 48) + bytes(LIMITS["sample_image_bytes"] + KIB)
    with small_hub.http(token) as http:
        response = post_sample(http, meta("cam-1", 1).model_dump_json(), image)
    refused(response, 413, "exceeds")
    assert_nothing_stored(small_hub)


@pytest.mark.parametrize(("image", "size", "status", "words"), [
    (jpeg(64, 48)[:-2], (64, 48), 422, ("truncated", "eoi")),
    (jpeg_claiming(1800, 1200), (1800, 1200), 422, ("truncated", "blocks")),
    (zero_png(1000, 1000, depth=16, colour=6, channels=4), (1000, 1000), 413,
     ("image_decoded_bytes",)),
    (zero_png(64, 48, colour=2, channels=3, iend=False), (64, 48), 422, ("truncated", "iend")),
], ids=["jpeg-no-eoi", "jpeg-huge-frame-tiny-data", "png-16bit-rgba-over-budget",
        "png-no-iend"])
def test_truncated_or_over_budget_images_are_refused_and_not_stored(
        db_url: str, tmp_path: Path, image: bytes, size: tuple[int, int], status: int,
        words: tuple[str, ...]) -> None:
    # 1000x1000 16-bit RGBA decodes to 8 MB: over a 7 MiB budget, under the pixel cap; the
    # 1800x1200 JPEG (6.5 MB) is within it, but its 50,700 blocks need 6,338 bytes of scan data.
    settings = hub_settings(db_url, tmp_path, **LIMITS, image_decoded_bytes=7 * MIB)
    with running_hub(settings) as hub:
        token = hub.add_device("cam-1")
        with hub.http(token) as http:
            refused(post_sample(http, meta("cam-1", 1, *size).model_dump_json(), image),
                    status, *words)
            # The same frame, whole and within budget, is stored: the refusal was the file's.
            post_sample(http, meta("cam-1", 2).model_dump_json(), jpeg(64, 48)).raise_for_status()
        with hub.http(ADMIN_TOKEN) as admin:
            assert [s["meta"]["frame_id"] for s in admin.get("/v1/admin/samples").json()] == [2]
        assert len(stored_files(hub)) == 1


def test_a_telemetry_body_of_too_many_json_values_is_refused_naming_the_limit(
        small_hub: RunningHub) -> None:
    token = small_hub.add_device("cam-1")
    limit = small_hub.settings.limits.telemetry_json_values
    # Empty arrays: about 3 bytes each, yet each one costs the parser a tree node.
    body = (b'{"device_id":"cam-1","sent_at":"2026-01-01T00:00:00Z","records":['
            + b"[]," * limit + b"[]]}")
    assert len(body) < LIMITS["telemetry_json_bytes"]
    with small_hub.http(token) as http:
        refused(post_telemetry(http, gzip.compress(body)), 413, "telemetry_json_values")
        post_telemetry(http, gz(batch("cam-1", range(3)))).raise_for_status()


# -- names that try to leave their folder ----------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
def test_hostile_names_in_bodies_are_refused_with_422(small_hub: RunningHub, name: str) -> None:
    token = small_hub.add_device("cam-1")
    record = json.loads(meta("cam-1", 1).model_dump_json()) | {"device_id": name}
    with small_hub.http(token) as http, small_hub.http(ADMIN_TOKEN) as admin:
        refused(post_sample(http, json.dumps(record), jpeg(64, 48)), 422, "device_id")
        sent = json.loads(batch("cam-1", [1]).model_dump_json())
        sent["records"][0]["model_version"] = name
        refused(post_telemetry(http, json.dumps(sent).encode(), gzip=False), 422,
                "model_version")
        refused(admin.post("/v1/admin/devices", json={"device_id": name}), 422, "device_id")
        refused(admin.put("/v1/admin/devices/cam-1/channel", json={"channel": name}), 422,
                "channel")
        assert [d["device_id"] for d in admin.get("/v1/admin/devices").json()] == ["cam-1"]
        assert admin.get("/v1/admin/devices").json()[0]["channel"] == "stable"
    assert_nothing_stored(small_hub)


@pytest.mark.parametrize("name", ["..", "%2e%2e", "..%2F..%2Fhub.sqlite", "%2Fetc%2Fpasswd",
                                  "a%00b", "%C3%A9", "%E2%80%AE1", "..%5C..%5Cx"])
def test_hostile_names_in_paths_never_reach_storage(small_hub: RunningHub, name: str) -> None:
    token = small_hub.add_device("cam-1")
    with small_hub.http(token) as http, small_hub.http(ADMIN_TOKEN) as admin:
        for path in (f"/v1/releases/{name}/model", f"/v1/releases/r1/files/{name}",
                     f"/v1/tuf/metadata/{name}", f"/v1/tuf/metadata/{name}.root.json",
                     f"/v1/tuf/targets/{name}/model.onnx", f"/v1/tuf/targets/r1/{name}"):
            response = http.get(path)
            assert response.status_code in (404, 422), (path, response.status_code)
            assert response.json()["detail"]
        for path in (f"/v1/admin/devices/{name}/revoke", f"/v1/admin/channels/{name}/rollback"):
            response = admin.post(path)
            assert response.status_code in (404, 422), (path, response.status_code)
        response = admin.put(f"/v1/admin/tuf/metadata/{name}", content=b'{"signed": {}}',
                             headers={"Content-Type": "application/json"})
        assert response.status_code in (404, 422), (name, response.status_code)
        assert response.json()["detail"]
    assert_nothing_stored(small_hub)


def test_release_file_names_that_traverse_are_refused(small_hub: RunningHub) -> None:
    manifest: dict[str, Any] = {"release_id": "r1", "version": 1, "created_at": T0.isoformat(),
                "input": {"imgsz": 320, "classes": ["bolt"]}, "metrics": {},
                "files": [{"name": "../model.onnx", "sha256": "0" * 64, "size": 4}]}
    with small_hub.http(ADMIN_TOKEN) as admin:
        refused(admin.post("/v1/admin/releases", data={"manifest": json.dumps(manifest)},
                           files={"files": ("../model.onnx", b"onnx")}), 422, "files.0.name")
        manifest["files"][0]["name"] = "model.onnx"
        refused(admin.post("/v1/admin/releases", data={"manifest": json.dumps(manifest)},
                           files={"files": ("/etc/model.onnx", b"onnx")}), 422,
                "not in the manifest")
        assert admin.get("/v1/admin/releases").json() == []
    assert_nothing_stored(small_hub)


@pytest.mark.parametrize("device_id", ["\x00", "cam\x00-1", "../cam-1", "é"], ids=repr)
def test_query_filters_with_bytes_no_device_id_has_are_refused(hub: RunningHub,
                                                               device_id: str) -> None:
    with hub.http(ADMIN_TOKEN) as admin:
        for path in ("/v1/admin/telemetry", "/v1/admin/samples"):
            refused(admin.get(path, params={"device_id": device_id}), 422, "device_id")


def test_a_class_named_twice_in_a_query_is_one_column(hub: RunningHub) -> None:
    token = hub.add_device("cam-1")
    with hub.http(ADMIN_TOKEN) as admin:
        empty = admin.get("/v1/admin/telemetry", params={"classes": "bolt,bolt,nut"})
        with hub.http(token) as http:
            post_telemetry(http, gz(batch("cam-1", range(3)))).raise_for_status()
        full = admin.get("/v1/admin/telemetry", params={"classes": "bolt,bolt,nut"})
    assert (empty.status_code, full.status_code) == (200, 200)
    assert stored_columns(empty.content)[-2:] == stored_columns(full.content)[-2:] == [
        "count_bolt", "count_nut"]


# -- another device's token ----------------------------------------------------------------------


def test_a_device_token_cannot_write_as_another_device(hub: RunningHub) -> None:
    hub.add_device("cam-2")
    token = hub.add_device("cam-1")
    status = heartbeat("cam-2", T0)
    with hub.http(token) as http:
        refused(post_telemetry(http, gz(batch("cam-2", range(3)))), 403, "cam-2")
        refused(post_sample(http, meta("cam-2", 1).model_dump_json(), jpeg(64, 48)), 403,
                "cam-2")
        refused(http.post("/v1/heartbeat", content=status.model_dump_json(),
                          headers={"Content-Type": "application/json"}), 403, "cam-2")
        # Own id on the batch, another device's on a record: the batch is refused whole.
        mixed = json.loads(batch("cam-1", range(2)).model_dump_json())
        mixed["records"][1]["device_id"] = "cam-2"
        refused(post_telemetry(http, json.dumps(mixed).encode(), gzip=False), 422, "cam-2")
    assert_nothing_stored(hub)


def test_a_frame_id_beyond_what_the_database_holds_is_refused_with_422(hub: RunningHub) -> None:
    token = hub.add_device("cam-1")
    huge = 2**63
    sent = json.loads(batch("cam-1", [1]).model_dump_json())
    sent["records"][0]["frame_id"] = huge
    with hub.http(token) as http, hub.http(ADMIN_TOKEN) as admin:
        refused(post_telemetry(http, json.dumps(sent).encode(), gzip=False), 422, "frame_id")
        record = json.loads(meta("cam-1", 1).model_dump_json()) | {"frame_id": huge}
        refused(post_sample(http, json.dumps(record), jpeg(64, 48)), 422, "frame_id")
        refused(admin.get(f"/v1/admin/samples/cam-1/{huge}/image"), 422, "frame_id")
    assert_nothing_stored(hub)


# -- replayed and reordered batches --------------------------------------------------------------


def stored_frames(hub: RunningHub) -> list[tuple[int, float]]:
    with hub.http(ADMIN_TOKEN) as admin:
        table = pq.read_table(io.BytesIO(admin.get("/v1/admin/telemetry").content))
    return sorted(zip(table["frame_id"].to_pylist(), table["infer_ms"].to_pylist(), strict=True))


def stored_columns(parquet: bytes) -> list[str]:
    return list(pq.read_table(io.BytesIO(parquet)).column_names)


def test_replayed_and_reordered_batches_store_each_frame_once(hub: RunningHub) -> None:
    token = hub.add_device("cam-1")
    order = list(range(40))
    random.Random(7).shuffle(order)
    batches = [batch("cam-1", order[i : i + 10]) for i in range(0, 40, 10)]
    answers: list[dict[str, Any]] = []
    with hub.http(token) as http:
        for sent in [batches[2], batches[0], batches[2], batches[3], batches[1], batches[0],
                     batches[3]]:
            answers.append(post_telemetry(http, gz(sent)).json())
        # A replay whose content was changed in flight does not overwrite the first copy.
        forged = TelemetryBatch(device_id="cam-1", sent_at=T0,
                                records=[stats("cam-1", order[0], infer_ms=999.0)])
        answers.append(post_telemetry(http, gz(forged)).json())
    assert [(a["stored"], a["duplicates"]) for a in answers] == [
        (10, 0), (10, 0), (0, 10), (10, 0), (10, 0), (0, 10), (0, 10), (0, 1)]
    assert stored_frames(hub) == [(i, 8.5) for i in range(40)]


def test_a_replayed_sample_with_other_bytes_keeps_the_first_copy(hub: RunningHub) -> None:
    token = hub.add_device("cam-1")
    first, second = jpeg(64, 48, seed=1), jpeg(64, 48, seed=2)
    with hub.http(token) as http, hub.http(ADMIN_TOKEN) as admin:
        kept = post_sample(http, meta("cam-1", 5).model_dump_json(), first).json()
        again = post_sample(http, meta("cam-1", 5).model_dump_json(), second).json()
        image = admin.get("/v1/admin/samples/cam-1/5/image").content
    assert (kept["stored"], again["stored"], again["sha256"]) == (True, False, kept["sha256"])
    assert image == first
    assert len([f for f in stored_files(hub) if f.startswith("samples/")]) == 1


def test_reordered_heartbeats_keep_the_newest_status(hub: RunningHub) -> None:
    token = hub.add_device("cam-1")
    statuses = [heartbeat("cam-1", T0 + timedelta(seconds=s), frames_seen=s)
                for s in (30, 10, 30, 20)]
    with hub.http(token) as http, hub.http(ADMIN_TOKEN) as admin:
        applied = [http.post("/v1/heartbeat", content=s.model_dump_json(),
                             headers={"Content-Type": "application/json"}).json()["applied"]
                   for s in statuses]
        shown = admin.get("/v1/admin/devices").json()[0]["status"]
    assert applied == [True, False, True, False]
    assert shown["frames_seen"] == 30


# -- the operator's console -----------------------------------------------------------------------

TERMINAL_TRICKS = ["\x1b[2J\x1b[31mFAKE", "ok\ncam-99  stable  active", "\x9b31m", "\u202eevil",
                   "zero\u200bwidth", "\r", "\x7f", "\u2028"]


def hostile_heartbeat(device_id: str, trick: str) -> str:
    """The trick in every string the contract lets carry it: control characters only in the
    free text (last_error, detail); the one-line fields refuse them (test_hub_lossless)."""
    line = "x" if any(ch in CONTROLS for ch in trick) else trick
    status = json.loads(heartbeat(device_id, T0).model_dump_json())
    status |= {"last_error": trick * 3, "dropped": {f"k{line}": 1}, "update": {
        "phase": line[:32], "target_release": "r1", "refusal": line[:32],
        "detail": f"detail {trick}"}}
    return json.dumps(status)  # ensure_ascii: the controls travel as JSON escapes


CONTROLS = {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))}


def device_list(hub: RunningHub, *flags: str) -> list[str]:
    from click.testing import CliRunner

    from hub.cli import hub as hub_group

    result = CliRunner().invoke(hub_group, ["device", "list", "--hub", hub.url, "--admin-token",
                                            ADMIN_TOKEN, *flags])
    assert result.exit_code == 0, result.output
    assert all(ch.isprintable() for ch in result.output.replace("\n", "")), result.output
    return result.output.removesuffix("\n").split("\n")


def store_status_directly(hub: RunningHub, device_id: str, status_json: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(hub.settings.db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE devices SET status = :s WHERE device_id = :d"),
                     {"s": status_json, "d": device_id})
    engine.dispose()


def test_hostile_heartbeats_cannot_draw_on_the_operators_console(hub: RunningHub) -> None:
    names = [f"cam-{i}" for i in range(len(TERMINAL_TRICKS))]
    for name, trick in zip(names, TERMINAL_TRICKS, strict=True):
        with hub.http(hub.add_device(name)) as http:
            http.post("/v1/heartbeat", content=hostile_heartbeat(name, trick),
                      headers={"Content-Type": "application/json"}).raise_for_status()
    table = device_list(hub)
    assert len(table) == 1 + len(names) and table[0].startswith("DEVICE")
    assert [line.split()[0] for line in table[1:]] == sorted(names)
    shown = "\n".join(table)
    for escaped in ("\\x1b[2J\\x1b[31mFAKE", "\\x9b31m", "\\u202eevil", "zero\\u200bwidth",
                    "ok\\x0acam-99", "\\x0d", "\\x7f", "\\u2028"):
        assert escaped in shown, escaped
    # --json: one object per line, the same values as the hub holds, controls as JSON escapes.
    lines = device_list(hub, "--json")
    with hub.http(ADMIN_TOKEN) as admin:
        assert [json.loads(line) for line in lines] == admin.get("/v1/admin/devices").json()


def test_a_stored_status_the_contract_refuses_or_too_wide_to_print_lists_all_the_same(
        hub: RunningHub) -> None:
    for name in ("cam-1", "cam-2", "cam-3"):
        hub.add_device(name)
    wide = json.loads(heartbeat("cam-1", T0).model_dump_json())
    store_status_directly(hub, "cam-1", json.dumps(wide).replace(
        '"frames_seen": 1', '"frames_seen": ' + "9" * 5000))
    store_status_directly(hub, "cam-2", json.dumps(wide | {"device_id": "cam-2",
                                                           "frames_seen": -1}))
    with hub.http(ADMIN_TOKEN) as admin:
        listed = {d["device_id"]: d for d in admin.get("/v1/admin/devices").json()}
    assert (listed["cam-2"]["status"], "frames_seen" in listed["cam-2"]["status_error"]) == (
        None, True)
    table = device_list(hub)
    assert [line.split()[0] for line in table] == ["DEVICE", "cam-1", "cam-2", "cam-3"]
    assert "9" * 30 not in "\n".join(table)
    assert "STATUS UNREADABLE" in table[2] and "frames_seen" in table[2]


# -- slow clients and oversized heads --------------------------------------------------------------


@pytest.fixture
def impatient_hub(tmp_path: Path) -> Iterator[RunningHub]:
    """A SQLite hub that waits 0.5 s for a stalled body and takes 4 KiB of head."""
    with running_hub(hub_settings(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path,
                                  body_idle_s=0.5, head_bytes=4 * KIB)) as running:
        yield running


def raw_answer(hub: RunningHub, *parts: bytes, pause_s: float = 0.0) -> tuple[int, float]:
    """The status a raw request sent in `parts` gets (a pause after each part but the last),
    and how long after the last part it came."""
    host, port = hub.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        for i, part in enumerate(parts):
            conn.sendall(part)
            if i < len(parts) - 1:
                time.sleep(pause_s)
        sent = time.monotonic()
        status_line = conn.makefile("rb").readline()
    return int(status_line.split()[1]), time.monotonic() - sent


def test_a_body_that_stalls_is_answered_408_and_nothing_is_stored(
        impatient_hub: RunningHub) -> None:
    token = impatient_hub.add_device("cam-1")
    body = heartbeat("cam-1", T0).model_dump_json().encode()
    head = (f"POST /v1/heartbeat HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    status, waited = raw_answer(impatient_hub, head + body[:10])  # and the rest never comes
    assert status == 408 and waited < 5
    assert_nothing_stored(impatient_hub)
    # A body that pauses less than the timeout between its pieces is taken.
    assert raw_answer(impatient_hub, head + body[:10], body[10:], pause_s=0.2)[0] == 200
    with impatient_hub.admin() as admin:
        assert [d.status for d in admin.devices()] == [heartbeat("cam-1", T0)]


def test_a_request_head_over_the_cap_is_refused_before_the_app_sees_it(
        impatient_hub: RunningHub) -> None:
    token = impatient_hub.add_device("cam-1")

    def head(pad: int) -> bytes:
        return (f"GET /v1/assignment HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n"
                f"X-Pad: {'p' * pad}\r\nConnection: close\r\n\r\n").encode()

    assert raw_answer(impatient_hub, head(2 * KIB))[0] == 204  # under the cap: answered
    assert raw_answer(impatient_hub, head(8 * KIB))[0] == 400
    # One endless header, sent in pieces, is cut off too (the parser buffers it whole).
    status, _ = raw_answer(impatient_hub, head(0)[:60], b"p" * (8 * KIB))
    assert status == 400
