"""What the updater is configured with, and what it answers: its status and a staged release."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from edge_runtime.contract import (
    ReleaseManifest,
)
from edge_runtime.update.policy import (
    DeviceInput,
    HealthBudget,
    Phase,
    Refusal,
    SmokeBudget,
)
from edge_runtime.update.slots import (
    Slot,
)


class UpdaterError(ValueError):
    """The updater was configured or provisioned wrongly."""


@dataclass(frozen=True)
class UpdaterConfig:
    hub_url: str  # scheme, host and port, e.g. "https://hub.example:8443"
    token: str = field(repr=False)  # sent as "Authorization: Bearer <token>"
    state_dir: Path
    device: DeviceInput  # what this device feeds its model
    smoke: SmokeBudget = field(default_factory=SmokeBudget)
    health: HealthBudget = field(default_factory=HealthBudget)
    max_release_bytes: int = 256 * 2**20  # refused before any byte is downloaded
    connect_timeout_s: float = 5.0
    timeout_s: float = 30.0
    threads: int = 0  # ONNX Runtime intra-op threads of the models the updater opens
    conf: float = 0.25  # the detector's thresholds for the models it opens
    iou: float = 0.7

    def __post_init__(self) -> None:
        if not self.hub_url.startswith(("http://", "https://")):
            raise UpdaterError(f"hub_url {self.hub_url!r} must be http(s)://host[:port]")
        if not self.token or any(c.isspace() for c in self.token):
            raise UpdaterError("token must be non-empty and hold no whitespace")
        if self.max_release_bytes < 1 or self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise UpdaterError("max_release_bytes and the timeouts must be positive")


@dataclass(frozen=True)
class UpdateStatus:
    """What the heartbeat reports about updates."""

    phase: Phase
    release_id: str  # the release serving now
    version: int
    trial: bool  # the serving model is still on its health check
    target: str | None = None  # the release the last update was about
    refusal: Refusal | None = None  # why the last update was refused or undone
    detail: str | None = None
    at: datetime | None = None

    def heartbeat_error(self) -> str | None:
        """A one-line reason for DeviceStatus.last_error (until the contract has its fields)."""
        if self.refusal is None:
            return None
        return f"update {self.target}: {self.refusal.value}: {self.detail}"[:500]


@dataclass(frozen=True)
class Staged:
    """A release verified, smoke-tested and complete in the inactive slot."""

    manifest: ReleaseManifest
    slot: Slot
