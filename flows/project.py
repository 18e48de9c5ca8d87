"""`edgeloop init`: a team's data project (git + DVC) made from its model and its Ultralytics
dataset. The project depends on the installed package, never on copies of its code: its
`dvc.yaml` stages run `edgeloop stage ...` and list only the project's data and params (and the
edgeloop version, a param) as deps; no stage writes into the seed data.

The texts of the files are pure functions of what the model and the dataset say (`project_files`);
`create_project` does the copying, `git` and `dvc`.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from flows.dvc_dataset import author_args, dvc_executable
from flows.yolo_dataset import DatasetError, check_same_classes, read_dataset

SEED_DIR = "data/seed"  # the team's dataset, copied as it is (its own layout)
SEED_YAML = "data/seed.yaml"  # its data.yaml, verbatim; read with the root above
LABELLED_DIR = "data/labelled"
CHAMPION_DIR = "models/champion"


class ProjectError(ValueError):
    """The project cannot be made from these inputs (the message says which and why)."""


@dataclass(frozen=True)
class ModelFacts:
    """What the team's model decides for the whole project."""

    names: tuple[str, ...]
    imgsz: int
    task: str = "detect"


def stage(cmd: str, deps: Sequence[str], params: Sequence[str], *, outs: Sequence[str] = (),
          metrics: Sequence[str] = (), plots: Sequence[str] = ()) -> dict[str, object]:
    entry: dict[str, object] = {"cmd": cmd, "deps": list(deps),
                                "params": [*params, "edgeloop.version"]}
    if outs:
        entry["outs"] = list(outs)
    if metrics:
        entry["metrics"] = [{m: {"cache": False}} for m in metrics]
    if plots:
        entry["plots"] = [{p: {"cache": False}} for p in plots]
    return entry


def dvc_stages() -> dict[str, object]:
    """The retrain pipeline of a team's project: the repository's own stages, as commands."""
    prepared = "data/prepared"
    candidate = "models/candidate"
    return {"stages": {
        "prepare": stage(
            f"edgeloop stage prepare --seed-yaml {SEED_YAML} --seed-root {SEED_DIR} "
            f"--labelled {LABELLED_DIR} --out {prepared} --summary metrics/prepare.json",
            [SEED_YAML, SEED_DIR, LABELLED_DIR], ["prepare"], outs=[prepared],
            metrics=["metrics/prepare.json"]),
        "train": stage(
            "edgeloop stage train --section finetune --weights ${champion.weights} "
            f"--data {prepared}/data.yaml --out {candidate}",
            ["${champion.weights}", f"{prepared}/train", f"{prepared}/val",
             f"{prepared}/data.yaml"], ["finetune", "champion.weights"],
            outs=[f"{candidate}/best.pt"]),
        "export": stage(
            f"edgeloop stage export --weights {candidate}/best.pt --out-dir {candidate} "
            f"--calibration {prepared}/train/images --parity {prepared}/val/images "
            "--report metrics/export.json",
            [f"{candidate}/best.pt", f"{prepared}/train/images", f"{prepared}/val/images"],
            ["release_export"], outs=[f"{candidate}/model.onnx", f"{candidate}/model.int8.onnx"],
            metrics=["metrics/export.json"]),
        "evaluate": stage(
            "edgeloop stage evaluate --champion ${champion.onnx} "
            f"--fp32 {candidate}/model.onnx --int8 {candidate}/model.int8.onnx "
            f"--data {prepared} --out metrics/evaluate.json "
            "--plots metrics/plots/ap_per_class.json",
            ["${champion.onnx}", f"{candidate}/model.onnx", f"{candidate}/model.int8.onnx",
             f"{prepared}/golden", f"{prepared}/drift"], ["release_evaluate", "champion.onnx"],
            metrics=["metrics/evaluate.json"], plots=["metrics/plots/ap_per_class.json"]),
        "gate": stage(
            "edgeloop stage gate --evaluation metrics/evaluate.json --export metrics/export.json "
            "--out metrics/gate.json",
            ["metrics/evaluate.json", "metrics/export.json", "edgeloop.yaml"], [],
            metrics=["metrics/gate.json"]),
        "profile": stage(
            f"edgeloop stage profile --gate metrics/gate.json --images {prepared}/current/images "
            "--previous ${champion.onnx} "
            f"--out {candidate}/reference.parquet",
            ["metrics/gate.json", f"{candidate}/model.onnx", f"{candidate}/model.int8.onnx",
             "${champion.onnx}", f"{prepared}/current"], ["profile", "champion.onnx"],
            outs=[f"{candidate}/reference.parquet"]),
    }}


def params_text(model: ModelFacts, edgeloop_version: str) -> str:
    """params.yaml: the stages' parameters, at the model's input size, commented."""
    size = model.imgsz
    return f"""\
# Parameters of the retrain pipeline (dvc.yaml), grouped by the stage that reads them.
edgeloop:
  version: {edgeloop_version}   # the edgeloop these stages ran with: bump it after an upgrade

champion:                # the model in the field: a candidate must beat it and starts from it
  weights: {CHAMPION_DIR}/best.pt
  onnx: {CHAMPION_DIR}/model.onnx

prepare:
  replay_share: 0.8      # share of the training set that is old frames (against forgetting)
  val_share: 0.3         # share of each labelled increment held out, in whole groups
  group_frames: 150      # frame ids this close on one device are one group (5 s at 30 fps)
  golden_share: 0.2      # of val, as the old-domain regression set, when there is no test split
  seed: 0

finetune:                # Ultralytics fine-tune of the champion's weights
  imgsz: {size}
  epochs: 10
  batch: 16
  seed: 0
  patience: 100
  threads: 0             # 0 = every core
  cache: true
  augment: {{}}
  optimizer: AdamW       # a fixed, moderate rate: the replay share keeps the old classes
  lr0: 0.0003            # (bench/RESULTS.md, retrain_recipe: with replay 0.8, 97-99% of the
  warmup_epochs: 0       # drifted domain won back on two demo runs' labels, golden set within
  freeze: 0              # 0.5 points; 0.0002 with the backbone frozen: 91%) -- layers kept as
                         # the champion learnt them (10: its backbone)
  device: auto           # auto (cuda:0, else mps, else cpu), cpu, cuda:N, mps; AMP on CUDA

release_export:
  imgsz: {size}
  dynamic: true
  calibration_frames: 64 # training frames the int8 activation ranges are calibrated on
  parity_frames: 4       # validation frames ONNX is compared with PyTorch on

release_evaluate:
  imgsz: {size}
  threads: 0

profile:
  imgsz: {size}
"""


def edgeloop_yaml_text(model: ModelFacts, fleet: str) -> str:
    """edgeloop.yaml: every deployable's settings for this project, defaults commented out."""
    classes = ", ".join(model.names)
    return f"""\
# This project's edgeloop settings, one section per deployable. Each key here overrides the
# packaged default (shown commented out); EDGELOOP_* environment variables and command-line
# flags override this file. Tokens never live here: EDGELOOP_ADMIN_TOKEN,
# EDGELOOP_LABELSTUDIO_TOKEN, EDGELOOP_DEVICE_TOKEN.
hub:
  # hub_url: http://127.0.0.1:8700      # where the flows and admin commands find the hub

labelling:
  fleet: {fleet}                        # one Label Studio project per fleet
  classes: [{classes}]                  # the model's, in class-id order (do not reorder)
  # labelstudio:
  #   url: http://127.0.0.1:8080
  #   files_root: var/labelstudio/files  # the server's LOCAL_FILES_DOCUMENT_ROOT
  # selection: {{budget: 50}}             # frames sent to the annotators per round

release:
  # canary_channel: canary
  # stable_channel: stable
  # canary: {{min_frames: 500, min_devices: 1}}

drift:
  # window: {{frames: 2000, max_age_s: 86400}}
  # decision: {{family_alpha: 0.01}}

gate:
  # min_drift_gain_points: 2.0          # mAP50-95 points over the champion on the drift slice
  # max_golden_loss_points: 1.0         # ... lost on the golden (old-domain) set

sampling:
  # policies: {{uncertain: {{per_hour: 120}}, random: false}}

edge:
  # spool_mb: 512
"""


def project_files(model: ModelFacts, edgeloop_version: str, fleet: str) -> dict[str, str]:
    return {
        "dvc.yaml": yaml.safe_dump(dvc_stages(), sort_keys=False, width=100),
        "params.yaml": params_text(model, edgeloop_version),
        "edgeloop.yaml": edgeloop_yaml_text(model, fleet),
        ".gitignore": "/var/\n",
        f"{LABELLED_DIR}/.gitkeep": "",
        "metrics/.gitkeep": "",
    }


def _run(cwd: Path, *args: str) -> None:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ProjectError(f"{' '.join(args[:3])} failed in {cwd}: "
                           f"{(result.stderr or result.stdout).strip()[-500:]}")


def create_project(directory: Path, *, weights: Path, data_yaml: Path, onnx: Path | None,
                   model: ModelFacts, edgeloop_version: str, fleet: str,
                   export_onnx: Callable[[Path, Path, int], object] | None = None) -> list[str]:
    """Make the project in `directory` (empty or absent); returns the files it committed.
    `export_onnx(weights, out, imgsz)` makes the champion's ONNX file when `onnx` is None."""
    if model.task != "detect":
        raise ProjectError(f"{weights} is a {model.task} model: edgeloop runs detection models")
    if directory.exists() and any(p.name != "var" for p in directory.iterdir()):
        raise ProjectError(f"{directory} is not empty: give a new folder")
    dataset = read_dataset(data_yaml)
    check_same_classes(model.names, dataset.names, str(data_yaml))
    directory.mkdir(parents=True, exist_ok=True)
    seed = directory / SEED_DIR
    shutil.copytree(dataset.root, seed)
    shutil.copyfile(data_yaml, directory / SEED_YAML)
    try:
        read_dataset(directory / SEED_YAML, root=seed)  # the copy reads as the original
    except DatasetError as exc:
        raise ProjectError(f"the dataset does not read from its copy in {seed}: {exc} "
                           "(its splits must lie below its `path:`)") from None
    champion = directory / CHAMPION_DIR
    champion.mkdir(parents=True)
    shutil.copyfile(weights, champion / "best.pt")
    if onnx is not None:
        shutil.copyfile(onnx, champion / "model.onnx")
    elif export_onnx is not None:
        export_onnx(champion / "best.pt", champion / "model.onnx", model.imgsz)
    else:
        raise ProjectError("no ONNX file for the champion: give --onnx")
    for name, text in project_files(model, edgeloop_version, fleet).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text, encoding="utf-8")
    dvc = dvc_executable()
    _run(directory, "git", "init", "--quiet")
    _run(directory, dvc, "init", "--quiet")
    _run(directory, dvc, "config", "core.analytics", "false")
    _run(directory, dvc, "add", "--quiet", SEED_DIR, CHAMPION_DIR)
    _run(directory, "git", "add", "-A")
    message = (f"edgeloop init: {len(model.names)} classes, {model.imgsz} px, dataset "
               f"{data_yaml.name}")
    _run(directory, "git", *author_args(directory), "commit", "--quiet", "-m", message)
    listed = subprocess.run(["git", "ls-files"], cwd=directory, capture_output=True, text=True,
                            check=True).stdout.split()
    return listed
