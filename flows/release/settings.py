"""The release flow's settings (`configs/release.yaml`): channels, expiries, canary thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

from configs import default_path
from configs.loader import SettingsError, build, layered
from flows.release.canary import CanaryConfig
from flows.release.tuf_metadata import ReleaseRepositoryError, RoleExpiry

DEFAULT_RELEASE_CONFIG = default_path("release.yaml")


class ReleaseConfigError(SettingsError):
    """The release settings are unreadable or holds an unknown key or a bad value."""


@dataclass(frozen=True)
class ReleaseConfig:
    canary_channel: str = "canary"
    stable_channel: str = "stable"
    manifest_expiry_days: float = 180.0
    watch_poll_s: float = 30.0
    watch_timeout_s: float = 86400.0
    tuf_expiry: RoleExpiry = field(default_factory=RoleExpiry)
    canary: CanaryConfig = field(default_factory=CanaryConfig)

    def __post_init__(self) -> None:
        if self.canary_channel == self.stable_channel:
            raise ReleaseConfigError(f"canary_channel and stable_channel are both "
                                     f"{self.canary_channel!r}")
        for name in ("manifest_expiry_days", "watch_poll_s", "watch_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ReleaseConfigError(f"release {name} must be a positive number, "
                                         f"got {value!r}")


def load_release_config(config: Path | None = None, *,
                        project: Path | None = None) -> ReleaseConfig:
    """Defaults < packaged `release.yaml` < the project's `configs/release.yaml` and
    `edgeloop.yaml` (`release:`) < the file `config` (`--config`)."""
    merged = layered("release", project=project, config=config, error=ReleaseConfigError)
    if "tuf_expiry_days" in merged.data:  # the file says days; the settings hold timedeltas
        merged.data["tuf_expiry"] = merged.data.pop("tuf_expiry_days")
    return build(ReleaseConfig, merged, error=ReleaseConfigError,
                 convert={"tuf_expiry": _role_expiry})


def _role_expiry(days: Any) -> RoleExpiry:
    if not isinstance(days, dict):
        raise ReleaseConfigError(f"tuf_expiry_days must map a role to days, got {days!r}")
    known = {f.name for f in fields(RoleExpiry)}
    unknown = sorted(set(days) - known)
    if unknown:
        named = ", ".join(f"tuf_expiry_days.{r}" for r in unknown)
        raise ReleaseConfigError(f"unknown settings {named} "
                                 f"(known: {', '.join(sorted(known))})")
    try:
        return RoleExpiry(**{role: timedelta(days=float(d)) for role, d in days.items()})
    except (ReleaseRepositoryError, TypeError, ValueError) as exc:
        raise ReleaseConfigError(f"tuf_expiry_days: {exc}") from None
