"""The seed model (YOLO11n trained by the seed pipeline on the simulator, committed as a test
fixture), exported to ONNX by the real export stage."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import FIXTURES, ROOT, VAR_TEST


def export_seed_model(work: Path) -> Path:
    """Exports the seed weights to `work/model.onnx` with a dynamic input size; `best.pt` sits
    beside it."""
    shutil.copy(FIXTURES / "seed_best.pt", work / "best.pt")
    (work / "params.yaml").write_text("export: {imgsz: 320, dynamic: true}\n")
    subprocess.run([sys.executable, "-m", "flows.retrain.stages.export", "--params",
                    str(work / "params.yaml"), "--weights", str(work / "best.pt"),
                    "--out", str(work / "model.onnx"), "--var", str(VAR_TEST)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    return work / "model.onnx"
