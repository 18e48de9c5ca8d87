"""Offline switches for the cloud-side tools: nothing downloads, nothing writes to $HOME.

Ultralytics, Prefect, DVC and matplotlib read these variables when they are imported, so
`use_offline_environment` must run before the first import of any of them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def offline_environment(var: Path) -> dict[str, str]:
    """The environment variables that keep every tool offline and inside `var`."""
    var = var.resolve()
    return {
        "YOLO_CONFIG_DIR": str(var / "ultralytics"),
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "0",
        "PREFECT_HOME": str(var / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # A flow run without a server starts a temporary one; on a loaded 2-core machine that took
        # longer than Prefect's default 20 s (seen in CI: "Timed out while attempting to connect").
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "DVC_NO_ANALYTICS": "1",
        "ITERATIVE_DO_NOT_TRACK": "1",
        "DO_NOT_TRACK": "1",
        "MPLCONFIGDIR": str(var / "matplotlib"),
    }


def use_offline_environment(var: Path) -> None:
    """Set the offline variables (keeping any the caller set) and put a font where Ultralytics
    looks, so its `check_font` never downloads one."""
    for key, value in offline_environment(var).items():
        os.environ.setdefault(key, value)
    font_dir = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    if all((font_dir / name).exists() for name in FONT_NAMES):
        return
    import matplotlib  # matplotlib ships DejaVuSans; it stands in for Arial

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    font_dir.mkdir(parents=True, exist_ok=True)
    for name in FONT_NAMES:
        shutil.copyfile(font, font_dir / name)
    Path(os.environ["MPLCONFIGDIR"]).mkdir(parents=True, exist_ok=True)
