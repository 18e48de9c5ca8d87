"""The hub's own request and answer types (the records themselves are the wire contract's).

Shared by the API and `hub.client`; imports nothing heavier than pydantic and the contract.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from edge_runtime.contract import DeviceStatus, Name, ReleaseManifest, SampleMeta

DEFAULT_CHANNEL = "stable"
# On the admin exports: stored rows left out because the contract no longer accepts them.
SKIPPED_HEADER = "Edgeloop-Skipped"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldError(_Model):
    loc: list[int | str]
    msg: str
    type: str | None = None


class Refusal(_Model):
    """What every refusal answers: a reason in words; a 422 names the offending fields too."""

    detail: str
    errors: list[FieldError] | None = None


class TelemetryStored(_Model):
    """Answer to a telemetry batch: every record is now stored, `stored` of them by this call."""

    device_id: str
    received: int
    stored: int  # new records
    duplicates: int  # records the hub already had (a replayed batch)


class SampleStored(_Model):
    record_id: str
    stored: bool  # False: the hub already had this frame, and kept the first copy
    content_type: str
    sha256: str
    size: int


class HeartbeatTaken(_Model):
    device_id: str
    applied: bool  # False when a newer heartbeat had already arrived


class DeviceCreate(_Model):
    device_id: Name
    channel: Name = DEFAULT_CHANNEL


class ChannelChange(_Model):
    channel: Name


class NewDeviceToken(_Model):
    """A device's token, shown once: the hub keeps only its hash."""

    device_id: str
    channel: str
    token: str = Field(repr=False)


class DeviceRecord(_Model):
    device_id: str
    channel: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_seen: datetime | None = None
    telemetry_stored: int = 0
    samples_stored: int = 0
    status: DeviceStatus | None = None  # the latest heartbeat
    # Why the stored heartbeat is not shown (it no longer passes the contract, e.g. one stored
    # before the contract was tightened); the device is listed all the same.
    status_error: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class StoredSample(_Model):
    record_id: str
    meta: SampleMeta
    content_type: str
    sha256: str
    size: int
    received_at: datetime


class Quarantined(_Model):
    """What `POST /v1/admin/devices/{id}/quarantine` moved out of the live tables, by kind."""

    device_id: str
    checked: dict[str, int]  # rows read: telemetry, sample, heartbeat
    quarantined: dict[str, int]  # of those, moved to the quarantine table


class ReleaseAssign(_Model):
    release_id: Name


class ChannelPromote(_Model):
    from_channel: Name


class ChannelEvent(_Model):
    release_id: str
    version: int
    action: str  # assign | promote
    assigned_at: datetime
    rolled_back_at: datetime | None = None


class ChannelState(_Model):
    channel: str
    release: ReleaseManifest | None  # what the channel's devices run now
    history: Annotated[list[ChannelEvent], Field(description="newest first")] = []


class ReleaseRecord(_Model):
    manifest: ReleaseManifest
    created_at: datetime
    channels: list[str] = []  # channels running it now
