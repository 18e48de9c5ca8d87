"""edgeloop as a team installs it: a wheel built from the committed files, installed
(non-editable) in a fresh venv. Its dependencies come from this environment's site-packages as a
plain path entry, so our own editable install is never seen there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import ROOT


@dataclass(frozen=True)
class InstalledWheel:
    wheel: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def edgeloop(self) -> str:
        return str(self.venv / "bin" / "edgeloop")

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """`base` with this venv's commands first on PATH (DVC's stages find its `edgeloop`),
        then this environment's (dvc, git)."""
        path = f"{self.venv / 'bin'}:{ROOT / '.venv' / 'bin'}:{base.get('PATH', '/usr/bin:/bin')}"
        return {**base, "PATH": path}


def committed_copy(target: Path) -> Path:
    """The checkout's committed files (as a clean clone has them), copied under `target`: a build
    there leaves no build/ or *.egg-info in the checkout."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                             capture_output=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def build_wheel(work: Path) -> Path:
    """The wheel of the committed files (as a clean clone has them), built without a network."""
    source = committed_copy(work / "source")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(work / "dist"), str(source)],
                   check=True, capture_output=True)
    (wheel,) = (work / "dist").glob("edgeloop-*.whl")
    return wheel


def install_wheel(wheel: Path, venv: Path) -> InstalledWheel:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                                "get_paths()['purelib'])"], check=True, capture_output=True,
                               text=True).stdout.strip())
    (site / "zz-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return InstalledWheel(wheel, venv)
