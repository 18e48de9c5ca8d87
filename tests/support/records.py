"""What a device sends a hub, made up for the tests: frame stats, telemetry batches (gzipped as
sent), sample metadata and JPEG images."""

from __future__ import annotations

import gzip
import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import cv2
import numpy as np

from edge_runtime.contract import FrameStats, SampleMeta, SamplePolicy, TelemetryBatch

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def stats(device_id: str, frame_id: int, *, at: datetime | None = None,
          counts: dict[str, int] | None = None, **changes: Any) -> FrameStats:
    fields: dict[str, Any] = dict(
        device_id=device_id, model_version="m1", frame_id=frame_id,
        captured_at=at or T0 + timedelta(seconds=frame_id),
        pre_ms=1.0, infer_ms=8.5, post_ms=0.4, detections=1,
        class_counts={"bolt": 1} if counts is None else counts,
        conf_max=0.9, conf_mean=0.9, conf_min=0.9, uncertain=0,
        box_area_mean=0.02, box_area_min=0.02, box_area_max=0.02, box_aspect_mean=1.0,
        brightness=0.5, contrast=0.2, sharpness=120.0, saturation=0.3)
    fields.update(changes)
    return FrameStats(**fields)


def batch(device_id: str, frame_ids: range | list[int]) -> TelemetryBatch:
    return TelemetryBatch(device_id=device_id, sent_at=T0,
                          records=[stats(device_id, i) for i in frame_ids])


def gz(model: Any) -> bytes:
    return gzip.compress(model.model_dump_json().encode())


def meta(device_id: str, frame_id: int, width: int = 64, height: int = 48) -> SampleMeta:
    return SampleMeta(device_id=device_id, model_version="m1", frame_id=frame_id,
                      captured_at=T0 + timedelta(seconds=frame_id), policy=SamplePolicy.UNCERTAIN,
                      uncertainty=0.5, width=width, height=height, predictions=[])


def jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    return encoded.tobytes()


def zero_png(width: int, height: int, *, depth: int = 8, colour: int = 0, channels: int = 1,
             pixels: bool = True, iend: bool = True) -> bytes:
    """A PNG whose pixels are all zero, of any bit depth and colour type (channels to match):
    tiny on the wire however big it says it is. `pixels=False` leaves the image data out,
    `iend=False` the end of the file."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    idat = b""
    if pixels:
        packer = zlib.compressobj(9)
        row = bytes(1 + width * channels * depth // 8)  # a filter byte, then the samples
        idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + (chunk(b"IEND", b"") if iend else b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) was rewritten to claim another size."""
    data = bytearray(jpeg(64, 48))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)
