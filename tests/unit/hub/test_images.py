"""Image type and size from headers alone, then a checked decode."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from hub.errors import Invalid, TooLarge, UnsupportedMediaType
from hub.images import ImageType, check_dimensions, decode_checked, read_header


def encoded(ext: str, width: int, height: int, *params: int) -> bytes:
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok
    return data.tobytes()


def png_claiming(width: int, height: int) -> bytes:
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr
            + struct.pack(">I", zlib.crc32(ihdr)))


def jpeg_claiming(width: int, height: int) -> bytes:
    """SOI, an APP0 segment, then a baseline SOF0 declaring the size; no image data."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + b"\x01\x01\0\0\x01\0\x01\0\0"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0


@pytest.mark.parametrize("ext, kind, params", [
    (".jpg", ImageType.JPEG, ()),
    (".jpg", ImageType.JPEG, (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),  # SOF2
    (".png", ImageType.PNG, ()),
])
@pytest.mark.parametrize("width, height", [(64, 48), (1, 1), (641, 17)])
def test_header_gives_type_and_size_of_real_files(ext: str, kind: ImageType, params: tuple,
                                                  width: int, height: int) -> None:
    data = encoded(ext, width, height, *params)
    header = read_header(data)
    assert (header.type, header.width, header.height) == (kind, width, height)
    assert decode_checked(data, 4096, 10_000_000) == header


def test_sizes_are_read_from_crafted_headers_without_pixels() -> None:
    assert read_header(png_claiming(60000, 70000)).width == 60000
    assert read_header(jpeg_claiming(50000, 40000)).height == 40000


@pytest.mark.parametrize("data", [png_claiming(20000, 100), jpeg_claiming(100, 20000),
                                  png_claiming(10000, 10000)])
def test_absurd_dimensions_are_refused_before_decoding(data: bytes) -> None:
    with pytest.raises(TooLarge):
        decode_checked(data, 16384, 40_000_000)  # a decode of these bytes would fail otherwise


def test_dimension_limits() -> None:
    header = read_header(png_claiming(100, 50))
    check_dimensions(header, 100, 5000)
    with pytest.raises(TooLarge, match="a side"):
        check_dimensions(header, 99, 5000)
    with pytest.raises(TooLarge, match="pixels"):
        check_dimensions(header, 100, 4999)


@pytest.mark.parametrize("data", [b"", b"GIF89a....", b"<html>", b"\xff\xd8", b"RIFF....WEBP"])
def test_other_bytes_are_not_images(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType):
        read_header(data)


@pytest.mark.parametrize("data", [
    b"\xff\xd8\xff\xe0\x00",  # cut inside the first segment
    b"\xff\xd8\xff\xda\x00\x08",  # image data before any frame header
    b"\xff\xd8\xff\xe0\x00\x01",  # a segment length below its own size
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIDAT",  # PNG whose first chunk is not IHDR
    png_claiming(0, 10),
])
def test_broken_headers_are_invalid(data: bytes) -> None:
    with pytest.raises(Invalid):
        read_header(data)


def test_a_valid_header_with_broken_pixels_does_not_decode() -> None:
    data = encoded(".jpg", 64, 48)
    with pytest.raises(Invalid, match="does not decode"):
        decode_checked(data[:300], 4096, 10_000_000)
