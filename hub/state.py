"""What every request handler needs, built once from the settings: the database, the blob store
and the admin gate."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from hub.auth import AdminGate
from hub.blobs import BlobStore
from hub.db import Database
from hub.images import DecodeSlots
from hub.limits import SharedBudget
from hub.settings import HubSettings


@dataclass(frozen=True)
class Hub:
    """What every request handler needs, built once from the settings."""

    settings: HubSettings
    db: Database
    blobs: BlobStore
    admin: AdminGate
    decode_slots: DecodeSlots  # image decodes at once in this process
    telemetry_values: SharedBudget  # JSON values of telemetry being parsed or stored at once

    @classmethod
    def open(cls, settings: HubSettings) -> Hub:
        admin = AdminGate(settings.require_admin_token())
        db = Database(settings.db_url, settings.db_busy_timeout_s)
        try:
            db.create_schema()
            blobs = BlobStore(settings.blobs_url)
        except BaseException:
            db.dispose()
            raise
        limits = settings.limits
        return cls(settings, db, blobs, admin, DecodeSlots(limits.image_decode_slots),
                   SharedBudget(limits.telemetry_values_in_flight))


def hub_of(request: Request) -> Hub:
    return request.app.state.hub  # type: ignore[no-any-return]
