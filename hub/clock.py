"""Time as the database keeps it: integer microseconds since the epoch, UTC, on every dialect."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def now_us() -> int:
    return time.time_ns() // 1000


def to_us(moment: datetime) -> int:
    """Exact (no float rounding); refuses naive datetimes, whose zone would be a guess."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone")
    return (moment - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + us * _US
