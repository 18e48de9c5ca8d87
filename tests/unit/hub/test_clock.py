"""Database time: exact integer microseconds, UTC, whatever zone a record was sent in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from hub.clock import from_us, to_us


def test_microseconds_are_exact_and_zone_independent() -> None:
    moment = datetime(2026, 3, 1, 12, 0, 0, 123457, tzinfo=UTC)
    assert from_us(to_us(moment)) == moment
    shifted = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert to_us(shifted) == to_us(moment)
    assert to_us(moment + timedelta(microseconds=1)) - to_us(moment) == 1


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        to_us(datetime(2026, 1, 1))
