"""The release flow's settings (`configs/release.yaml`): channels, expiries, canary thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from configs import default_path
from flows.release.canary import CanaryConfig, CanaryConfigError
from flows.release.tuf_metadata import ReleaseRepositoryError, RoleExpiry

DEFAULT_RELEASE_CONFIG = default_path("release.yaml")


class ReleaseConfigError(ValueError):
    """configs/release.yaml is unreadable or holds an unknown key or a bad value."""


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


def load_release_config(path: Path = DEFAULT_RELEASE_CONFIG) -> ReleaseConfig:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ReleaseConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise ReleaseConfigError(f"{path}: expected a mapping of settings")
    known = {f.name for f in fields(ReleaseConfig)} - {"tuf_expiry"} | {"tuf_expiry_days"}
    _refuse_unknown(path, "", document, known)
    values: dict[str, Any] = {k: v for k, v in document.items()
                              if k not in ("canary", "tuf_expiry_days")}
    try:
        canary = document.get("canary") or {}
        _refuse_unknown(path, "canary.", canary, {f.name for f in fields(CanaryConfig)})
        values["canary"] = CanaryConfig(**canary)
        days = document.get("tuf_expiry_days") or {}
        _refuse_unknown(path, "tuf_expiry_days.", days, {f.name for f in fields(RoleExpiry)})
        values["tuf_expiry"] = RoleExpiry(**{role: timedelta(days=float(d))
                                             for role, d in days.items()})
        return ReleaseConfig(**values)
    except (CanaryConfigError, ReleaseRepositoryError, TypeError, ValueError) as exc:
        raise ReleaseConfigError(f"{path}: {exc}") from None


def _refuse_unknown(path: Path, prefix: str, section: Any, known: set[str]) -> None:
    if not isinstance(section, dict):
        raise ReleaseConfigError(f"{path}: {prefix.rstrip('.') or 'the file'} must be a mapping")
    unknown = set(section) - known
    if unknown:
        named = ", ".join(prefix + k for k in sorted(unknown))
        raise ReleaseConfigError(f"{path}: unknown keys {named} "
                                 f"(known: {', '.join(sorted(known))})")
