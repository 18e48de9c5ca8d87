"""Offline switches for the cloud-side tools (nothing downloads, nothing writes to $HOME), set
only where the user set nothing.

`offline_switches` decides, from the user's environment and settings files, what to set:
- A variable the user exported, even empty, is never changed (export `YOLO_OFFLINE=0` to let
  Ultralytics go online, `DO_NOT_TRACK=` to let DVC and Evidently report).
- Prefect: PREFECT_HOME goes to `var/prefect` only when the user has no Prefect of their own:
  none of PREFECT_HOME, PREFECT_API_URL, PREFECT_PROFILE, PREFECT_PROFILES_PATH exported and no
  profiles file (`~/.prefect/profiles.toml`, which `prefect profile` and `prefect config set`
  write). Otherwise their profile and server hold. The other PREFECT_* switches are set unless
  the active profile sets them.
- Ultralytics: YOLO_CONFIG_DIR goes to `var/ultralytics` unless the user has a settings file in
  Ultralytics' own place (`~/.config/Ultralytics/settings.json` on Linux). Only in a folder
  edgeloop made its own (marked with OWN_MARK) does it put a font and switch integrations off.
- matplotlib: MPLCONFIGDIR goes to `var/matplotlib` unless the user has a `matplotlibrc`.
- DVC: its config files are never moved; its analytics switches are set as above.

Ultralytics, Prefect, DVC and matplotlib read these variables when they are imported, so
`use_offline_environment` must run before the first import of any of them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
OWN_MARK = ".edgeloop-offline"  # in an Ultralytics settings folder that edgeloop set up
PREFECT_OWN = ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH")
SWITCHES = {
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "0",
    "DVC_NO_ANALYTICS": "1",
    "ITERATIVE_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
}
PREFECT_SWITCHES = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # A flow run without a server starts a temporary one; on a loaded 2-core machine that took
    # longer than Prefect's default 20 s (seen in CI: "Timed out while attempting to connect").
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


@dataclass(frozen=True)
class UserSettings:
    """What the user keeps in their own settings files, as far as the switches care."""

    prefect_profile: Mapping[str, Any] | None = None  # the active profile; None: no profiles file
    ultralytics: bool = False  # an Ultralytics settings file in its default place
    matplotlib: bool = False  # a matplotlibrc in matplotlib's default config folder


def offline_switches(environ: Mapping[str, str], var: Path,
                     user: UserSettings | None = None) -> dict[str, str]:
    """The variables to set for a user with `environ` and `user`'s settings files, state under
    `var`: only those the user left unset and has no settings of their own for."""
    user = user or UserSettings()
    var = var.resolve()
    wanted = dict(SWITCHES)
    if not user.ultralytics:
        wanted["YOLO_CONFIG_DIR"] = str(var / "ultralytics")
    if not user.matplotlib:
        wanted["MPLCONFIGDIR"] = str(var / "matplotlib")
    if user.prefect_profile is None and not any(k in environ for k in PREFECT_OWN):
        wanted["PREFECT_HOME"] = str(var / "prefect")
    profile = user.prefect_profile or {}
    wanted.update({k: v for k, v in PREFECT_SWITCHES.items() if k not in profile})
    return {k: v for k, v in wanted.items() if k not in environ}


def offline_environment(var: Path) -> dict[str, str]:
    """Every switch, pinned under `var`: for edgeloop's own harness (tests, demo, benchmarks)
    and the deployments' flow runs, where no user's settings are in play."""
    return offline_switches({}, var)


def pin_offline_environment(var: Path) -> dict[str, str]:
    """`offline_environment(var)` with its folders made edgeloop's own (the Ultralytics font and
    mark, matplotlib's folder): for the harness's child processes, whose stages' own `var` may
    be another folder."""
    pinned = offline_environment(var)
    prepare_ultralytics_dir(Path(pinned["YOLO_CONFIG_DIR"]))
    Path(pinned["MPLCONFIGDIR"]).mkdir(parents=True, exist_ok=True)
    return pinned


def find_user_settings(environ: Mapping[str, str], home: Path) -> UserSettings:
    """The user's settings files for Prefect, Ultralytics and matplotlib, where each tool looks
    by default (the folders a user may have moved by an exported variable included)."""
    profiles = Path(environ.get("PREFECT_PROFILES_PATH")
                    or Path(environ.get("PREFECT_HOME") or home / ".prefect") / "profiles.toml")
    ultralytics = _config_home(environ, home) / "Ultralytics" / "settings.json"
    matplotlib = _matplotlib_dir(environ, home) / "matplotlibrc"
    return UserSettings(
        prefect_profile=_active_profile(profiles, environ) if profiles.is_file() else None,
        ultralytics=ultralytics.is_file(), matplotlib=matplotlib.is_file())


def use_offline_environment(var: Path) -> dict[str, str]:
    """Set the switches the user left to edgeloop (`offline_switches`) and, when the Ultralytics
    settings folder is edgeloop's (under `var`), put a font where Ultralytics looks, so its
    `check_font` never downloads one. Returns what it set."""
    applied = offline_switches(os.environ, var, find_user_settings(os.environ, Path.home()))
    os.environ.update(applied)
    # Ours when they are var's: set just now, or by the edgeloop process that started this one.
    if _is(os.environ.get("YOLO_CONFIG_DIR"), var / "ultralytics"):
        prepare_ultralytics_dir(var / "ultralytics")
    if _is(os.environ.get("MPLCONFIGDIR"), var / "matplotlib"):
        (var / "matplotlib").mkdir(parents=True, exist_ok=True)
    return applied


def _is(value: str | None, path: Path) -> bool:
    return bool(value) and Path(str(value)).resolve() == path.resolve()


def prepare_ultralytics_dir(config_dir: Path) -> None:
    """Make `config_dir` (a YOLO_CONFIG_DIR) edgeloop's own: fonts, and the mark that lets
    `ultralytics_yolo.quiet_settings` switch its integrations off."""
    font_dir = config_dir / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    (font_dir / OWN_MARK).touch()
    if all((font_dir / name).exists() for name in FONT_NAMES):
        return
    import matplotlib  # matplotlib ships DejaVuSans; it stands in for Arial

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in FONT_NAMES:
        shutil.copyfile(font, font_dir / name)


def _active_profile(path: Path, environ: Mapping[str, str]) -> Mapping[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}  # Prefect will say what is wrong with it; its settings are the user's anyway
    name = environ.get("PREFECT_PROFILE") or document.get("active") or "ephemeral"
    profile = document.get("profiles", {}).get(name, {})
    return profile if isinstance(profile, dict) else {}


def _config_home(environ: Mapping[str, str], home: Path) -> Path:
    """The folder Ultralytics keeps its settings under when YOLO_CONFIG_DIR is not set."""
    if sys.platform == "darwin":
        return home / "Library" / "Application Support"
    if sys.platform == "win32":
        return home / "AppData" / "Roaming"
    return Path(environ.get("XDG_CONFIG_HOME") or home / ".config")


def _matplotlib_dir(environ: Mapping[str, str], home: Path) -> Path:
    if sys.platform == "darwin" or sys.platform == "win32":
        return home / ".matplotlib"
    return Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "matplotlib"
