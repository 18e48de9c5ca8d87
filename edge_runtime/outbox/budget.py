"""The spool's disk budget, its persistent counters and stats, and its error."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

MIN_SPOOL_BYTES = 256 * 1024  # an empty spool with its WAL needs about 100 KB
MAX_SAMPLE_SHARE = 0.25  # a JPEG bigger than this share of max_bytes is refused, not spooled
WAL_SHARE = 1 / 16  # the WAL is checkpointed when it reaches this share of max_bytes...
WAL_MAX_BYTES = 4 * 1024 * 1024  # ...or this size, whichever is smaller


class SpoolError(ValueError):
    """The spool was misused: a bad argument, a closed spool, a schema it cannot read."""


class SpoolCounter(enum.StrEnum):
    """Persistent counters kept inside the spool (they survive restarts)."""

    NEXT_FRAME_ID = "next_frame_id"
    DROPPED_SAMPLES = "dropped_samples"  # by the disk budget
    DROPPED_TELEMETRY = "dropped_telemetry"  # by the disk budget
    DROPPED_UNREADABLE = "dropped_unreadable"  # stored rows the current contract cannot parse
    DROPPED_QUEUE_FULL = "dropped_queue_full"  # SpoolWriter's queue was full
    DROPPED_QUEUE_FULL_SAMPLES = "dropped_queue_full_samples"
    REJECTED_TELEMETRY = "rejected_telemetry"  # the hub refused them as invalid (4xx)
    REJECTED_SAMPLES = "rejected_samples"
    # Corrupt spool files moved aside (their records are lost to the hub); the "dropped" prefix
    # puts it in the heartbeat's `dropped` map.
    QUARANTINED = "dropped_spool_quarantined"


@dataclass(frozen=True)
class SpoolBudget:
    """How much disk the spool may use, and how it gives space back."""

    max_bytes: int = 512 * 1024 * 1024  # bytes on disk for the spool, database + WAL
    trim_to: float = 0.9  # a full spool is trimmed to this share of max_bytes, so trims are rare

    def __post_init__(self) -> None:
        if self.max_bytes < MIN_SPOOL_BYTES:
            raise SpoolError(f"spool budget max_bytes={self.max_bytes} is below the minimum "
                             f"{MIN_SPOOL_BYTES}")
        if not 0.0 < self.trim_to <= 1.0:
            raise SpoolError(f"spool budget trim_to={self.trim_to} must be in (0, 1]")

    @property
    def max_sample_bytes(self) -> int:
        return int(self.max_bytes * MAX_SAMPLE_SHARE)

    @property
    def wal_bytes(self) -> int:
        return min(WAL_MAX_BYTES, int(self.max_bytes * WAL_SHARE))


@dataclass(frozen=True)
class SpoolStats:
    pending_telemetry: int
    pending_samples: int
    bytes: int  # on disk: database + WAL + shared-memory index
    dropped_samples: int  # by the disk budget, since this spool file was created
    dropped_telemetry: int
    quarantined: int  # corrupt spool files moved aside before this one was started
    counters: dict[str, int] = field(default_factory=dict)  # every persistent counter
