"""Image checks for uploaded frames: the type from magic bytes, the size from the header, then
a real decode, so that a decompression bomb is refused before any pixel memory is allocated."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from hub.errors import Invalid, TooLarge, UnsupportedMediaType

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # no length field follows
_JPEG_SOS = 0xDA  # entropy-coded data follows; the frame header must have come before


class ImageType(enum.StrEnum):
    JPEG = "image/jpeg"
    PNG = "image/png"

    @property
    def extension(self) -> str:
        return "jpg" if self is ImageType.JPEG else "png"


@dataclass(frozen=True)
class ImageHeader:
    type: ImageType
    width: int
    height: int


def sniff(data: bytes) -> ImageType:
    if data.startswith(JPEG_MAGIC):
        return ImageType.JPEG
    if data.startswith(PNG_MAGIC):
        return ImageType.PNG
    raise UnsupportedMediaType(f"image is neither JPEG nor PNG (starts with {data[:8]!r})")


def read_header(data: bytes) -> ImageHeader:
    """Type and dimensions from the file header alone; Invalid when the header is broken."""
    kind = sniff(data)
    width, height = _png_size(data) if kind is ImageType.PNG else _jpeg_size(data)
    if width < 1 or height < 1:
        raise Invalid(f"{kind.name} header declares an empty image ({width}x{height})")
    return ImageHeader(kind, width, height)


def _png_size(data: bytes) -> tuple[int, int]:
    # The IHDR chunk must come first: length 13, type, then big-endian width and height.
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise Invalid("PNG has no IHDR chunk where it must be")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise Invalid(f"JPEG marker expected at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker == _JPEG_SOS:
            break
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2:
            raise Invalid(f"JPEG segment at byte {i} has length {length}")
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    raise Invalid("JPEG has no frame header (SOF) before its image data")


def check_dimensions(header: ImageHeader, max_side: int, max_pixels: int) -> None:
    if header.width > max_side or header.height > max_side:
        raise TooLarge(f"image of {header.width}x{header.height} exceeds {max_side} pixels a side")
    if header.width * header.height > max_pixels:
        raise TooLarge(f"image of {header.width}x{header.height} exceeds {max_pixels} pixels")


def decode_checked(data: bytes, max_side: int, max_pixels: int) -> ImageHeader:
    """Header first (cheap, bounded), then a full decode with OpenCV to prove the pixels are there.

    Returns the header; raises UnsupportedMediaType, TooLarge or Invalid.
    """
    header = read_header(data)
    check_dimensions(header, max_side, max_pixels)
    import cv2  # imported here: clients of the hub package need not load OpenCV
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise Invalid(f"{header.type.name} image does not decode")
    height, width = image.shape[:2]
    if (width, height) != (header.width, header.height):
        raise Invalid(f"decoded image is {width}x{height}, its header says "
                      f"{header.width}x{header.height}")
    return header
