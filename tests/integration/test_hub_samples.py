"""Kept frames against a real hub: stored once, images checked before they are decoded, storage
keys made by the hub whatever names a client sends."""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.hub import RunningHub, hub_settings, running_hub
from tests.support.records import jpeg, meta


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk declaring width x height, and no pixels at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\0" * 64)


def post(hub: RunningHub, token: str, meta_json: str, image: bytes,
         filename: str = "cam-1-1.jpg") -> tuple[int, dict]:
    with hub.http(token) as http:
        answer = http.post("/v1/samples", data={"meta": meta_json},
                           files={"image": (filename, image, "image/jpeg")})
    return answer.status_code, answer.json()


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_replayed_sample_is_stored_once(hub: RunningHub) -> None:
    token = hub.add_device("cam-1")
    image = jpeg(seed=1)
    with hub.device(token) as device, hub.admin() as admin:
        first = device.post_sample(meta("cam-1", 7), image)
        replay = device.post_sample(meta("cam-1", 7), image)
        listed = admin.samples(device_id="cam-1")
        fetched = admin.sample_image("cam-1/7")
        record = admin.devices()[0]
    assert first.stored and not replay.stored
    assert replay.sha256 == first.sha256
    assert [s.record_id for s in listed] == ["cam-1/7"]
    assert listed[0].meta == meta("cam-1", 7)
    assert listed[0].content_type == "image/jpeg"
    assert fetched == image
    assert record.samples_stored == 1
    assert len(files_under(hub.blobs_dir)) == 1


def test_png_frames_are_accepted_too(sqlite_hub: RunningHub) -> None:
    token = sqlite_hub.add_device("cam-1")
    ok, png = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))
    assert ok
    status, body = post(sqlite_hub, token, meta("cam-1", 1).model_dump_json(), png.tobytes())
    assert (status, body["content_type"]) == (200, "image/png")


def test_non_image_bytes_are_refused_with_415(sqlite_hub: RunningHub) -> None:
    token = sqlite_hub.add_device("cam-1")
    status, body = post(sqlite_hub, token, meta("cam-1", 1).model_dump_json(),
                        b"#!/bin/sh\nrm -rf /\n")
    assert status == 415
    assert "neither JPEG nor PNG" in body["detail"]


def test_huge_dimensions_are_refused_before_decoding(sqlite_hub: RunningHub) -> None:
    token = sqlite_hub.add_device("cam-1")
    # 16000 x 16000 would need 768 MB to decode; the header alone must be enough to refuse it.
    status, body = post(sqlite_hub, token, meta("cam-1", 1, 16000, 16000).model_dump_json(),
                        png_header(16000, 16000))
    assert status == 413
    assert "16000x16000" in body["detail"]


def test_broken_and_mismatched_images_are_refused_with_422(sqlite_hub: RunningHub) -> None:
    token = sqlite_hub.add_device("cam-1")
    truncated = jpeg()[:200]
    status, body = post(sqlite_hub, token, meta("cam-1", 1).model_dump_json(), truncated)
    assert status == 422, body
    status, body = post(sqlite_hub, token, meta("cam-1", 2, 320, 240).model_dump_json(), jpeg())
    assert status == 422
    assert "64x48" in body["detail"]
    assert files_under(sqlite_hub.blobs_dir) == set()


def test_oversized_image_file_is_refused_with_413(tmp_path: Path) -> None:
    settings = hub_settings(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path,
                            sample_image_bytes=20_000, json_body_bytes=8_000)
    with running_hub(settings) as hub:
        token = hub.add_device("cam-1")
        big = jpeg(640, 480)  # noise does not compress: ~ 250 KB
        status, body = post(hub, token, meta("cam-1", 1, 640, 480).model_dump_json(), big)
    assert status == 413
    assert "limit" in body["detail"]


def test_invalid_meta_is_refused_with_422(sqlite_hub: RunningHub) -> None:
    token = sqlite_hub.add_device("cam-1")
    bad = meta("cam-1", 1).model_dump(mode="json") | {"uncertainty": 3.0}
    status, body = post(sqlite_hub, token, json.dumps(bad), jpeg())
    assert status == 422
    assert "uncertainty" in body["detail"]
    with sqlite_hub.http(token) as http:
        no_image = http.post("/v1/samples", data={"meta": meta("cam-1", 1).model_dump_json()},
                             files={"other": ("x.jpg", jpeg(), "image/jpeg")})
        not_multipart = http.post("/v1/samples", json={"meta": "{}"})
    assert no_image.status_code in (400, 422)
    assert not_multipart.status_code == 415


@pytest.mark.parametrize("filename", [
    "../../../../tmp/evil.jpg", "/etc/passwd", "..\\..\\windows\\win.ini", "a\x00b.jpg",
    "..／..／etc／passwd", "\u202egpj.exe", "." * 300,
])
def test_client_file_names_never_reach_storage(sqlite_hub: RunningHub, filename: str) -> None:
    token = sqlite_hub.add_device("cam-1")
    outside = files_under(sqlite_hub.blobs_dir.parent)
    status, body = post(sqlite_hub, token, meta("cam-1", 1).model_dump_json(), jpeg(), filename)
    assert status == 200, body
    new = files_under(sqlite_hub.blobs_dir.parent) - outside
    blobs = files_under(sqlite_hub.blobs_dir)
    assert {p for p in new if not p.name.startswith("hub.sqlite")} == blobs
    (blob,) = blobs
    assert blob.relative_to(sqlite_hub.blobs_dir).parts[:2] == ("samples", "cam-1")
    assert blob.read_bytes() == jpeg()


def test_names_in_meta_and_paths_cannot_traverse(sqlite_hub: RunningHub) -> None:
    token = sqlite_hub.add_device("cam-1")
    evil = meta("cam-1", 1).model_dump(mode="json") | {"device_id": "../cam-1"}
    status, _ = post(sqlite_hub, token, json.dumps(evil), jpeg())
    assert status == 422  # the contract's Name refuses separators and leading dots
    with sqlite_hub.http(token) as http:
        for path in ("/v1/releases/..%2F..%2Fetc/files/passwd",
                     "/v1/releases/r1/files/..%2F..%2Fhub.sqlite",
                     "/v1/releases/%2Fetc/model", "/v1/releases/r1/files/%00"):
            assert http.get(path).status_code in (404, 422), path


def test_samples_are_stored_through_any_fsspec_url(tmp_path: Path) -> None:
    url = f"memory://hub-test-{tmp_path.name}"
    settings = hub_settings(f"sqlite:///{tmp_path / 'hub.sqlite'}", tmp_path)
    with running_hub(replace(settings, blobs_url=url)) as hub:
        token = hub.add_device("cam-1")
        with hub.device(token) as device, hub.admin() as admin:
            assert device.post_sample(meta("cam-1", 1), jpeg()).stored
            assert admin.sample_image("cam-1/1") == jpeg()
    assert not (tmp_path / "blobs").exists()
