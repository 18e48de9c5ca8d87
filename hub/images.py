"""Image checks for uploaded frames: the type from magic bytes, the size and decoded cost from the
header, the file's completeness from its structure, then a real decode, so that neither a
decompression bomb nor a truncated file costs pixel memory or gets stored."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import re
import struct
import threading
from dataclasses import dataclass

from hub.errors import Invalid, TooLarge, UnsupportedMediaType

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # length 0, type, CRC: the last 12 bytes of a PNG
# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Arithmetic coding can spend less than a bit a block, so no size proves such a file complete.
_JPEG_ARITHMETIC = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # no length field follows
_JPEG_SOS = 0xDA  # entropy-coded data follows; the frame header must have come before
_JPEG_EOI = 0xD9
# The end of a scan: a marker that is neither a stuffed 0x00 nor a restart (RST0-7).
_JPEG_SCAN_END = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")
JPEG_BLOCK_BYTES = 128  # libjpeg keeps 64 two-byte coefficients a block for multi-scan files
# OpenCV's IMREAD_UNCHANGED: palette and grey+alpha come out as BGRA, RGB+tRNS too (so 4).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}
_PNG_MAX_CHUNKS_BEFORE_IDAT = 1024  # libpng's own cap on unknown chunks is 1000


class ImageType(enum.StrEnum):
    JPEG = "image/jpeg"
    PNG = "image/png"

    @property
    def extension(self) -> str:
        return "jpg" if self is ImageType.JPEG else "png"


@dataclass(frozen=True)
class ImageHeader:
    """What the header promises: the size, and what a decode of it will allocate."""

    type: ImageType
    width: int
    height: int
    channels: int  # as OpenCV's IMREAD_UNCHANGED returns them
    sample_bytes: int  # 1, or 2 for 16-bit PNG and 12/16-bit JPEG
    blocks: int = 0  # JPEG: 8x8 blocks over all components (each costs at least a bit)
    buffered: bool = False  # JPEG: the decoder holds every block's coefficients at once

    @property
    def decoded_bytes(self) -> int:
        """Bytes a decode allocates for the frame (and the coefficients libjpeg buffers)."""
        pixels = self.width * self.height * self.channels * self.sample_bytes
        return pixels + (self.blocks * JPEG_BLOCK_BYTES if self.buffered else 0)


def sniff(data: bytes) -> ImageType:
    if data.startswith(JPEG_MAGIC):
        return ImageType.JPEG
    if data.startswith(PNG_MAGIC):
        return ImageType.PNG
    raise UnsupportedMediaType(f"image is neither JPEG nor PNG (starts with {data[:8]!r})")


def read_header(data: bytes) -> ImageHeader:
    """Type, dimensions and decoded cost from the file header alone; Invalid when it is broken."""
    kind = sniff(data)
    header = _png_header(data) if kind is ImageType.PNG else _jpeg_header(data)
    if header.width < 1 or header.height < 1:
        raise Invalid(f"{kind.name} header declares an empty image "
                      f"({header.width}x{header.height})")
    return header


def _png_header(data: bytes) -> ImageHeader:
    # The IHDR chunk must come first: length 13, type, width, height, bit depth, colour type.
    if len(data) < 26 or data[12:16] != b"IHDR":
        raise Invalid("PNG has no IHDR chunk where it must be")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if colour not in _PNG_CHANNELS:
        raise Invalid(f"PNG colour type {colour} does not exist")
    channels = _PNG_CHANNELS[colour]
    if colour == 2 and png_has_transparency(data):
        channels = 4
    return ImageHeader(ImageType.PNG, width, height, channels, 2 if depth > 8 else 1)


def _jpeg_header(data: bytes) -> ImageHeader:
    i = 2
    frame: ImageHeader | None = None
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
            if frame is None:
                break
            # One scan short of every component: libjpeg buffers the whole image, as it does
            # for progressive files.
            if i + 4 < len(data) and data[i + 4] < frame.channels:
                return dataclasses.replace(frame, buffered=True)
            return frame
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2:
            raise Invalid(f"JPEG segment at byte {i} has length {length}")
        if marker in _JPEG_SOF:
            if marker in _JPEG_ARITHMETIC:
                raise UnsupportedMediaType(f"arithmetic-coded JPEG (SOF{marker - 0xC0}) is not "
                                           "accepted: its completeness cannot be checked")
            frame = _jpeg_frame(data, i, marker)
            if frame is None:
                break
        i += 2 + length
    if frame is not None:
        return frame
    raise Invalid("JPEG has no frame header (SOF) before its image data")


def _jpeg_frame(data: bytes, i: int, marker: int) -> ImageHeader | None:
    """The frame header at byte i (precision, size, components and their sampling factors)."""
    if i + 10 > len(data):
        return None
    precision, height, width, count = struct.unpack(">BHHB", data[i + 4 : i + 10])
    factors = data[i + 10 : i + 10 + 3 * count]
    if count < 1 or len(factors) < 3 * count:
        raise Invalid(f"JPEG frame header declares {count} components it does not carry")
    sampling = [(factors[3 * c + 1] >> 4, factors[3 * c + 1] & 0x0F) for c in range(count)]
    if any(h < 1 or v < 1 for h, v in sampling):
        raise Invalid("JPEG frame header has a zero sampling factor")
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    blocks = sum(math.ceil(math.ceil(width * h / h_max) / 8)
                 * math.ceil(math.ceil(height * v / v_max) / 8) for h, v in sampling)
    return ImageHeader(ImageType.JPEG, width, height, count, 2 if precision > 8 else 1,
                       blocks, marker in _JPEG_PROGRESSIVE)



def check_dimensions(header: ImageHeader, max_side: int, max_pixels: int) -> None:
    if header.width > max_side or header.height > max_side:
        raise TooLarge(f"image of {header.width}x{header.height} exceeds {max_side} pixels a side")
    if header.width * header.height > max_pixels:
        raise TooLarge(f"image of {header.width}x{header.height} exceeds {max_pixels} pixels")


def check_decoded_bytes(header: ImageHeader, limit: int) -> None:
    """Refuses a frame whose decode would allocate more than `limit` bytes (image_decoded_bytes)."""
    if header.decoded_bytes > limit:
        raise TooLarge(f"image of {header.width}x{header.height}, {header.channels} channels of "
                       f"{8 * header.sample_bytes} bits, decodes to {header.decoded_bytes} bytes: "
                       f"over the image_decoded_bytes limit of {limit}")


def check_complete(header: ImageHeader, data: bytes) -> None:
    """Invalid unless the file ends as a whole one does: a decoder would fill in what is missing."""
    if header.type is ImageType.PNG:
        if not data.endswith(PNG_IEND):
            raise Invalid("PNG is truncated: it does not end with an IEND chunk")
        return
    scanned, end = _jpeg_scan_bytes(data)
    if end != _JPEG_EOI:
        raise Invalid("JPEG is truncated: no EOI marker after its scan data")
    least = math.ceil(header.blocks / 8)
    if scanned < least:
        raise Invalid(f"JPEG is truncated or corrupt: {scanned} bytes of scan data cannot encode "
                      f"its {header.blocks} blocks (at least {least} bytes)")


def _jpeg_scan_bytes(data: bytes) -> tuple[int, int | None]:
    """Bytes of entropy-coded data over all scans, and the marker after the last (None: none)."""
    i, scanned = 2, 0
    while i + 2 <= len(data):
        if data[i] != 0xFF:
            raise Invalid(f"JPEG marker expected at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == _JPEG_EOI:
            return scanned, marker
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if i + 4 > len(data):
            break
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2:
            raise Invalid(f"JPEG segment at byte {i} has length {length}")
        i += 2 + length
        if marker == _JPEG_SOS:
            found = _JPEG_SCAN_END.search(data, i)
            if found is None:
                return scanned + max(0, len(data) - i), None
            # The fill bytes before the marker are not scan data.
            marker_at = found.end() - 2
            scanned += marker_at - i
            i = marker_at
    return scanned, None


def png_has_transparency(data: bytes) -> bool:
    """Whether a tRNS chunk precedes the first IDAT (OpenCV then adds an alpha channel)."""
    i = 8
    for _ in range(_PNG_MAX_CHUNKS_BEFORE_IDAT):
        if i + 8 > len(data):
            return False
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        if kind == b"IDAT":
            return False
        if kind == b"tRNS":
            return True
        i += 12 + length
    raise Invalid(f"PNG has more than {_PNG_MAX_CHUNKS_BEFORE_IDAT} chunks before its image data")


class DecodeSlots:
    """At most `count` decodes at once in this process: peak pixel memory is count x budget.

    A thread waits here for a free slot; decoding is CPU-bound, so more at once on a few cores
    would only add memory, not throughput.
    """

    def __init__(self, count: int) -> None:
        self._slots = threading.BoundedSemaphore(count)
        self.count = count

    def __enter__(self) -> DecodeSlots:
        self._slots.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self._slots.release()


def decode_checked(data: bytes, max_side: int, max_pixels: int, *,
                   max_decoded_bytes: int | None = None,
                   slots: DecodeSlots | None = None) -> ImageHeader:
    """Header first (cheap, bounded), its decoded cost and the file's completeness, then a full
    decode with OpenCV (in a decode slot) to prove the pixels are there.

    Returns the header; raises UnsupportedMediaType, TooLarge or Invalid.
    """
    header = read_header(data)
    check_dimensions(header, max_side, max_pixels)
    if max_decoded_bytes is not None:
        check_decoded_bytes(header, max_decoded_bytes)
    check_complete(header, data)
    with slots or contextlib.nullcontext():
        size = _decoded_size(data)
    if size is None:
        raise Invalid(f"{header.type.name} image does not decode")
    if size != (header.width, header.height):
        raise Invalid(f"decoded image is {size[0]}x{size[1]}, its header says "
                      f"{header.width}x{header.height}")
    return header


def _decoded_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a full OpenCV decode; its pixels are freed before this returns."""
    import cv2  # imported here: clients of the hub package need not load OpenCV
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    return int(image.shape[1]), int(image.shape[0])
