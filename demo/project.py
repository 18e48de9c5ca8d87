"""The demo's data project: a git + DVC repository made from this checkout's pipeline, as a team
would keep it — `dvc.yaml`, `params.yaml` (at the demo's sizes), the code its stages run, a DVC
remote, the seed set rendered by `dvc repro seed_render`, and the seed model as the champion.

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

ROOT = Path(__file__).resolve().parent.parent
CODE = ("sim", "flows", "edge_runtime", "configs")
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


def demo_params(sizes: ProjectSizes) -> dict[str, Any]:
    """This checkout's params.yaml at the demo's sizes; the champion is `champion/`."""
    params: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["render"].update(scenarios=["baseline"], imgsz=sizes.imgsz,
                            train_frames=sizes.seed_train, val_frames=sizes.seed_val,
                            test_frames=sizes.seed_test)
    params["champion"] = {"weights": "champion/best.pt", "onnx": "champion/model.onnx"}
    params["finetune"]["epochs"] = sizes.epochs
    params["finetune"]["val"] = sizes.val_every_epoch
    params["prepare"]["group_frames"] = sizes.group_frames
    return params


def build_project(work: Path, champion: Path, sizes: ProjectSizes, env: Mapping[str, str],
                  extra_files: Mapping[str, str] | None = None) -> Path:
    """A fresh project in `work` with the champion's weights exported to ONNX and the seed set
    rendered; returns the champion's ONNX file. `extra_files`: more files (path -> text)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, work / name)
    for package in CODE:
        shutil.copytree(ROOT / package, work / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (work / "params.yaml").write_text(yaml.safe_dump(demo_params(sizes), sort_keys=False))
    (work / ".gitignore").write_text("/var/\n/champion/model.onnx\n")
    for path, text in (extra_files or {}).items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    (work / "champion").mkdir()
    shutil.copy(champion, work / "champion" / "best.pt")
    (work / "data" / "labelled").mkdir(parents=True)
    (work / "data" / "labelled" / ".gitkeep").write_text("")
    python = str(Path(dvc_executable()).parent / "python")
    _run([python, "-m", "flows.retrain.stages.export", "--weights", "champion/best.pt",
          "--out", "champion/model.onnx"], work, env)
    dvc = dvc_executable()
    _run(["git", "init", "-q", "-b", "main"], work, env)
    _run([dvc, "init", "-q"], work, env)
    _run([dvc, "remote", "add", "-d", "storage", str(work / "var" / "dvc-remote")], work, env)
    _run([dvc, "repro", "seed_render"], work, env)
    _run(["git", *AUTHOR, "add", "."], work, env)
    _run(["git", *AUTHOR, "commit", "-qm", "edgeloop demo: pipeline, seed set, champion"],
         work, env)
    _run([dvc, "push", "-q"], work, env)
    return work / "champion" / "model.onnx"
