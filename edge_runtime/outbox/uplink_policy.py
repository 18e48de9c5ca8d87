"""How the uplink is configured, how long it backs off, and what each hub answer means for the
rows it sent.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

from edge_runtime.contract import (
    MAX_BATCH_RECORDS,
    Name,
)

_NAME = TypeAdapter(Name)


class UplinkError(ValueError):
    """The uplink was configured or called wrongly."""


@dataclass(frozen=True)
class UplinkConfig:
    hub_url: str  # scheme, host and port of the hub, e.g. "https://hub.example:8443"
    device_id: str
    token: str = field(repr=False)  # sent as "Authorization: Bearer <token>"
    batch_size: int = 500  # telemetry records per POST
    samples_per_pass: int = 16  # frames per drain pass, so JPEGs never starve the statistics
    connect_timeout_s: float = 5.0
    timeout_s: float = 30.0  # for each read and write of a request
    backoff_base_s: float = 0.5  # first retry waits up to this long...
    backoff_cap_s: float = 60.0  # ...doubling per failure up to this
    jitter: bool = True  # full jitter: a uniform wait in [0, backoff], so a fleet does not stampede
    idle_poll_s: float = 1.0  # how often an idle uplink looks for new rows
    heartbeat_s: float = 30.0

    def __post_init__(self) -> None:
        url = urlsplit(self.hub_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise UplinkError(f"hub_url {self.hub_url!r} must be http(s)://host[:port]")
        try:
            _NAME.validate_python(self.device_id)
        except ValidationError as exc:
            raise UplinkError(f"device_id {self.device_id!r} is not a valid name") from exc
        if not self.token or any(c.isspace() for c in self.token):
            raise UplinkError("token must be non-empty and hold no whitespace")
        if not 1 <= self.batch_size <= MAX_BATCH_RECORDS:
            raise UplinkError(f"batch_size={self.batch_size} must be in 1..{MAX_BATCH_RECORDS}")
        self._check_positive("samples_per_pass", "connect_timeout_s", "timeout_s",
                             "backoff_base_s", "idle_poll_s", "heartbeat_s")
        if self.backoff_cap_s < self.backoff_base_s:
            raise UplinkError(f"backoff_cap_s={self.backoff_cap_s} is below "
                              f"backoff_base_s={self.backoff_base_s}")

    def _check_positive(self, *names: str) -> None:
        for name in names:
            if not getattr(self, name) > 0:
                raise UplinkError(f"{name}={getattr(self, name)} must be positive")


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None) -> float:
    """Seconds to wait before retry number `attempt` (0-based): exponential, capped, full jitter.

    With rng=None the delay is the ceiling itself, min(cap, base * 2**attempt).
    """
    if attempt < 0 or base <= 0 or cap < base:
        raise UplinkError(f"backoff_delay(attempt={attempt}, base={base}, cap={cap}): need "
                          "attempt >= 0 and 0 < base <= cap")
    ceiling = float(cap) if attempt >= 64 else min(float(cap), base * 2.0**attempt)
    return ceiling if rng is None else rng.uniform(0.0, ceiling)


class Verdict(enum.Enum):
    """What a hub answer means for the rows that were sent."""

    STORED = "stored"  # 2xx: delete them
    REJECTED = "rejected"  # the hub refused them as invalid: count, drop, move on
    TOO_LARGE = "too_large"  # 413: send fewer at a time
    UNAUTHORIZED = "unauthorized"  # 401/403: the token is wrong; keep them, back off
    RETRY = "retry"  # the hub or the network is in trouble: keep them, back off


# 4xx answers that say nothing about the records themselves: a wrong route, a timeout, rate limits.
_RETRY_4XX = frozenset({404, 405, 408, 425, 429})


def classify(status: int) -> Verdict:
    if 200 <= status < 300:
        return Verdict.STORED
    if status in (401, 403):
        return Verdict.UNAUTHORIZED
    if status == 413:
        return Verdict.TOO_LARGE
    if 400 <= status < 500 and status not in _RETRY_4XX:
        return Verdict.REJECTED
    return Verdict.RETRY
