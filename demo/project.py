"""The demo's data project, made the way a team makes its own: the simulator's seed set is
rendered as a team's Ultralytics dataset would be (train, val, and test_baseline as its test
split), then `edgeloop init` makes the project from it and the seed model, and the demo sets the
params to its sizes. Nothing of edgeloop's code is copied into it: its stages run the installed
`edgeloop stage ...`.

Labelled increments are added to it by the collect flow; the retrain flow reproduces its
pipeline; the release flow signs what it built.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flows.dvc_dataset import dvc_executable
from sim.seed_dataset import render_seed_dataset

FLEET = "line-1"
AUTHOR = ("-c", "user.name=edgeloop demo", "-c", "user.email=demo@edgeloop.invalid")


class DemoProjectError(RuntimeError):
    """A step of building the project failed (the message quotes the tool's output)."""


@dataclass(frozen=True)
class ProjectSizes:
    imgsz: int = 320
    seed_train: int = 600  # seed frames the retrain replays (baseline)
    seed_val: int = 150
    seed_test: int = 200
    epochs: int = 10
    group_frames: int = 150
    val_every_epoch: bool = True  # False: the fine-tune validates after its last epoch only


def _run(cmd: list[str], cwd: Path, env: Mapping[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=dict(env), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise DemoProjectError(f"{' '.join(cmd[:3])} failed:\n{done.stderr[-2000:]}"
                               f"{done.stdout[-2000:]}")
    return done.stdout


def demo_params(sizes: ProjectSizes, params: dict[str, Any]) -> dict[str, Any]:
    """The params.yaml `edgeloop init` wrote, at the demo's sizes."""
    params["finetune"]["epochs"] = sizes.epochs
    params["finetune"]["val"] = sizes.val_every_epoch
    params["prepare"]["group_frames"] = sizes.group_frames
    return params


def build_project(work: Path, champion: Path, sizes: ProjectSizes, env: Mapping[str, str],
                  extra_files: Mapping[str, str] | None = None) -> Path:
    """A fresh project in `work` made by `edgeloop init` from the rendered seed set and the
    champion's weights (exported to ONNX by init); returns the champion's ONNX file.
    `extra_files`: more files (path -> text), e.g. the project's own configs/gate.yaml."""
    if work.exists():
        shutil.rmtree(work)
    dataset = render_seed_dataset(work.parent / "seed-dataset", sizes)
    edgeloop = str(Path(dvc_executable()).parent / "edgeloop")
    _run([edgeloop, "init", str(work), "--model", str(champion), "--data", str(dataset),
          "--fleet", FLEET], work.parent, env)
    params = yaml.safe_load((work / "params.yaml").read_text())
    (work / "params.yaml").write_text(yaml.safe_dump(demo_params(sizes, params),
                                                     sort_keys=False))
    for path, text in (extra_files or {}).items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    dvc = dvc_executable()
    _run([dvc, "remote", "add", "-d", "storage", str(work / "var" / "dvc-remote")], work, env)
    _run(["git", *AUTHOR, "add", "."], work, env)
    _run(["git", *AUTHOR, "commit", "-qm", "edgeloop demo: the demo's sizes"], work, env)
    _run([dvc, "push", "-q"], work, env)
    return work / "models" / "champion" / "model.onnx"
