"""Image type and size from headers alone, then a checked decode."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from hub.errors import Invalid, TooLarge, UnsupportedMediaType
from hub.images import (
    JPEG_BLOCK_BYTES,
    PNG_IEND,
    ImageType,
    check_complete,
    check_decoded_bytes,
    check_dimensions,
    decode_checked,
    read_header,
)


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


def test_a_complete_png_whose_pixels_are_missing_does_not_decode() -> None:
    # IHDR, an IDAT of no pixel data, IEND: complete as a file, yet no image.
    idat = b"IDAT" + zlib.compress(b"")
    data = (png_claiming(64, 48) + struct.pack(">I", len(idat) - 4) + idat
            + struct.pack(">I", zlib.crc32(idat)) + PNG_IEND)
    with pytest.raises(Invalid, match="does not decode"):
        decode_checked(data, 4096, 10_000_000)


def png_with(width: int, height: int, depth: int, colour: int) -> bytes:
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr
            + struct.pack(">I", zlib.crc32(ihdr)) + PNG_IEND)


@pytest.mark.parametrize("depth, colour, channels, sample_bytes", [
    (8, 0, 1, 1), (1, 0, 1, 1), (16, 0, 1, 2), (8, 2, 3, 1), (16, 2, 3, 2),
    (8, 3, 4, 1),  # palette: OpenCV expands it to BGRA
    (8, 4, 4, 1), (16, 6, 4, 2)])
def test_png_decoded_bytes_follow_bit_depth_and_colour_type(depth: int, colour: int,
                                                            channels: int,
                                                            sample_bytes: int) -> None:
    header = read_header(png_with(100, 30, depth, colour))
    assert (header.channels, header.sample_bytes) == (channels, sample_bytes)
    assert header.decoded_bytes == 100 * 30 * channels * sample_bytes


@pytest.mark.parametrize("ext, shape, params", [
    (".png", (48, 64, 3), ()), (".png", (48, 64, 4), ()), (".png", (48, 64), ()),
    (".jpg", (48, 64, 3), ()), (".jpg", (48, 64), ()),
    (".jpg", (48, 64, 3), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1))])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_decoded_bytes_are_never_less_than_what_opencv_allocates(
        ext: str, shape: tuple[int, ...], params: tuple[int, ...], dtype: type) -> None:
    image = np.random.default_rng(1).integers(0, 255, shape).astype(dtype)
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    assert read_header(data.tobytes()).decoded_bytes >= decoded.nbytes


def test_a_progressive_jpeg_also_counts_its_buffered_coefficients() -> None:
    baseline = read_header(encoded(".jpg", 64, 48))
    progressive = read_header(encoded(".jpg", 64, 48, cv2.IMWRITE_JPEG_PROGRESSIVE, 1))
    # 4:2:0: 8x6 luma blocks and 4x3 for each chroma component.
    assert baseline.blocks == progressive.blocks == 8 * 6 + 2 * 4 * 3
    assert progressive.decoded_bytes - baseline.decoded_bytes == (
        progressive.blocks * JPEG_BLOCK_BYTES)


def test_decoded_bytes_limit_names_itself() -> None:
    header = read_header(png_with(1000, 1000, 16, 6))
    check_decoded_bytes(header, 8_000_000)
    with pytest.raises(TooLarge, match="image_decoded_bytes"):
        check_decoded_bytes(header, 7_999_999)


def test_real_files_are_complete() -> None:
    for data in (encoded(".jpg", 641, 17), encoded(".png", 641, 17),
                 encoded(".jpg", 641, 17, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
                 encoded(".jpg", 64, 48, cv2.IMWRITE_JPEG_RST_INTERVAL, 1)):
        check_complete(read_header(data), data)


@pytest.mark.parametrize("cut", [1, 2, 100, 1000])
def test_a_cut_off_file_is_truncated(cut: int) -> None:
    for data in (encoded(".jpg", 64, 48), encoded(".png", 64, 48),
                 encoded(".jpg", 64, 48, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)):
        with pytest.raises(Invalid, match="truncated"):
            check_complete(read_header(data[:-cut]), data[:-cut])


def test_a_jpeg_with_too_little_scan_data_for_its_frame_is_truncated() -> None:
    """A real file's SOF rewritten to claim more blocks than its scan bytes can encode."""
    data = bytearray(encoded(".jpg", 64, 48))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 4000, 6000)
    header = read_header(bytes(data))
    with pytest.raises(Invalid, match=f"{header.blocks} blocks"):
        check_complete(header, bytes(data))


def test_arithmetic_coded_jpeg_is_not_accepted() -> None:
    data = jpeg_claiming(64, 48).replace(b"\xff\xc0", b"\xff\xc9")
    with pytest.raises(UnsupportedMediaType, match="arithmetic"):
        read_header(data)
