"""Size of a device install: `pip install '.[edge]'` into a fresh venv; no torch may come along.

Prints JSON: megabytes installed, whether torch (or any other cloud package) was installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOUD_ONLY = ("torch", "ultralytics", "prefect", "evidently", "dvc")


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="edge-install-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        start = time.perf_counter()
        subprocess.run([str(venv / "bin/pip"), "install", "--quiet", f"{ROOT}[edge]"],
                       check=True)
        seconds = time.perf_counter() - start
        site = next((venv / "lib").glob("python*/site-packages"))
        pip_mb = sum(folder_mb(p) for p in site.glob("pip*"))
        names = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
        print(json.dumps({
            "bench": "edge_install",
            "install_mb": round(folder_mb(venv) - pip_mb, 1),
            "cloud_packages_installed": sorted(n for n in names if n in CLOUD_ONLY),
            "packages": len(names),
            "seconds": round(seconds, 1),
        }))


if __name__ == "__main__":
    main()
