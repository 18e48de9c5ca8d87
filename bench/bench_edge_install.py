"""Size of a device install: `pip install '.[edge]'` into a fresh venv; no torch may come along.

Prints JSON: megabytes installed, whether torch (or any other cloud package) was installed.
It installs from a copy of the committed files (what a clean clone has), so the build writes
nothing into the checkout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.wheel import committed_copy  # noqa: E402

CLOUD_ONLY = ("torch", "ultralytics", "prefect", "evidently", "dvc")


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true",
                        help="accepted for `make bench`: the output is one JSON line anyway")
    parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-install-") as tmp:
        source = committed_copy(Path(tmp) / "source")
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        start = time.perf_counter()
        subprocess.run([str(venv / "bin/pip"), "install", "--quiet", f"{source}[edge]"],
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
