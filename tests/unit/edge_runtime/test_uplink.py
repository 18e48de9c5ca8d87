"""The uplink's pure decisions: how long to back off, what a hub status means, valid config."""

from __future__ import annotations

import random

import pytest

from edge_runtime.outbox.uplink_policy import (
    UplinkConfig,
    UplinkError,
    Verdict,
    backoff_delay,
    classify,
)


def test_backoff_without_jitter_doubles_from_base_up_to_cap() -> None:
    delays = [backoff_delay(attempt, base=0.5, cap=60.0, rng=None) for attempt in range(10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_backoff_with_full_jitter_stays_within_zero_and_the_ceiling() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        ceiling = min(60.0, 0.5 * 2**attempt)
        samples = [backoff_delay(attempt, 0.5, 60.0, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in samples)
        assert max(samples) > 0.8 * ceiling  # spread over the whole range, not clustered at 0


def test_backoff_survives_huge_attempt_counts() -> None:
    assert backoff_delay(10_000, 0.5, 60.0, None) == 60.0


@pytest.mark.parametrize(("attempt", "base", "cap"), [(-1, 0.5, 60), (0, 0.0, 60), (0, 2.0, 1.0)])
def test_backoff_refuses_nonsense_arguments(attempt: int, base: float, cap: float) -> None:
    with pytest.raises(UplinkError):
        backoff_delay(attempt, base, cap, None)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.STORED), (201, Verdict.STORED), (204, Verdict.STORED),
        (400, Verdict.REJECTED), (409, Verdict.REJECTED), (422, Verdict.REJECTED),
        (401, Verdict.UNAUTHORIZED), (403, Verdict.UNAUTHORIZED),
        (413, Verdict.TOO_LARGE),
        (404, Verdict.RETRY), (408, Verdict.RETRY), (429, Verdict.RETRY),
        (500, Verdict.RETRY), (502, Verdict.RETRY), (503, Verdict.RETRY),
        (302, Verdict.RETRY),
    ],
)
def test_hub_status_decides_the_fate_of_the_rows(status: int, verdict: Verdict) -> None:
    assert classify(status) is verdict


@pytest.mark.parametrize(
    "bad",
    [
        {"hub_url": "hub.local:8000"},
        {"hub_url": "ftp://hub"},
        {"device_id": "cam/1"},
        {"token": ""},
        {"token": "two words"},
        {"batch_size": 0},
        {"batch_size": 100_000},
        {"timeout_s": 0},
        {"backoff_cap_s": 0.1},
    ],
)
def test_half_built_config_is_refused(bad: dict) -> None:
    fields = {"hub_url": "http://127.0.0.1:8000", "device_id": "cam-1", "token": "t0k"} | bad
    with pytest.raises(UplinkError):
        UplinkConfig(**fields)


def test_config_repr_hides_the_token() -> None:
    config = UplinkConfig(hub_url="http://127.0.0.1:8000", device_id="cam-1", token="s3cret")
    assert "s3cret" not in repr(config)
