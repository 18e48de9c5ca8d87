"""Device-provided text and numbers made safe for an operator's terminal: no escape code, line
break or bidi override a device sent reaches the screen as itself, and no number crashes a table.
"""

from __future__ import annotations

import math

MAX_BITS = 64  # an int64 or a uint64 counter fits; anything wider is shown as OVERFLOW_MARK
OVERFLOW_MARK = "<huge>"


def printable(text: str, max_chars: int | None = None) -> str:
    """`text` with every character that `str.isprintable` refuses (controls, C1, line breaks,
    bidi overrides, zero-width characters, ...) and the backslash written as a visible escape,
    so what a device sent can be read but not drawn; cut to `max_chars` (marked with ...)."""
    out = "".join(_escape(ch) for ch in text)
    if max_chars is not None and len(out) > max_chars:
        return out[: max(0, max_chars - 3)] + "..."
    return out


def printable_json(text: str) -> str:
    """JSON text with every non-printable character written as a JSON escape: the same JSON
    value, safe on a terminal (JSON's own structure is printable ASCII, so only strings change)."""
    return "".join(ch if ch.isprintable() else _json_escape(ch) for ch in text)


def count(value: int) -> str:
    """An integer in decimal, or OVERFLOW_MARK when it is wider than MAX_BITS (str() of a
    5000-digit int raises, and nothing that wide is a real counter)."""
    return OVERFLOW_MARK if value.bit_length() > MAX_BITS else str(value)


def megabytes(size: int | float) -> str:
    """Bytes as megabytes with one decimal; OVERFLOW_MARK for what has no such form."""
    try:
        value = size / 1e6
    except OverflowError:  # an int too large for a float
        return OVERFLOW_MARK
    if not math.isfinite(value) or abs(value) >= 2.0**MAX_BITS:
        return OVERFLOW_MARK
    return f"{value:.1f}"


def _escape(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # outside the BMP: a UTF-16 surrogate pair, as JSON spells it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
