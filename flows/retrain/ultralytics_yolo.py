"""The one module that talks to Ultralytics: train, export to ONNX, validate.

It returns our own types and paths; nothing else in edgeloop imports `ultralytics`. Call
`flows.offline.use_offline_environment` before using it, so that nothing is downloaded.
Training runs on params.yaml's `device` (`flows.retrain.torch_device`); export and evaluation
run on the CPU, as the ONNX files they make and score run on devices.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.offline import OWN_MARK
from flows.retrain.torch_device import check_device_name, training_device, uses_amp


@dataclass(frozen=True)
class TrainSettings:
    model: str = "yolo11n.yaml"  # an architecture YAML (trained from scratch) or a .pt to fine-tune
    imgsz: int = 320
    epochs: int = 20
    batch: int = 16
    seed: int = 0
    patience: int = 100
    threads: int = 0  # torch CPU threads; 0 = one per core (Ultralytics would leave one idle)
    cache: bool = True  # keep decoded images in RAM
    augment: Mapping[str, Any] = field(default_factory=dict)  # Ultralytics augmentation args
    # Fine-tuning: None leaves Ultralytics' default (optimizer "auto" picks AdamW or SGD and a
    # learning rate from the run's length; warm-up 3 epochs; nothing frozen).
    optimizer: str = "auto"
    lr0: float | None = None
    warmup_epochs: float | None = None
    freeze: int | None = None  # layers of the backbone kept fixed (10 = the whole backbone)
    # Validate after every epoch (best.pt = the best epoch); False: only after the last one
    # (best.pt = the last epoch), which saves a validation pass per epoch on short fine-tunes.
    val: bool = True
    # auto: the first CUDA GPU, else Apple's MPS, else the CPU; AMP (fp16) on CUDA only.
    device: str = "auto"

    def __post_init__(self) -> None:
        check_device_name(self.device)
        for name in ("imgsz", "epochs", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"train {name} must be >= 1, got {getattr(self, name)}")
        if self.imgsz % 32:
            raise ValueError(f"train imgsz must be a multiple of 32, got {self.imgsz}")

    def tuning(self) -> dict[str, Any]:
        """The fine-tuning arguments that are set, as Ultralytics' train() takes them."""
        values = {"lr0": self.lr0, "warmup_epochs": self.warmup_epochs, "freeze": self.freeze}
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class DetectionMetrics:
    map50: float
    map50_95: float
    ap50_per_class: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"map50": self.map50, "map50_95": self.map50_95,
                "ap50_per_class": self.ap50_per_class}


# Every integration and prompt that could reach the network is switched off.
QUIET_SETTINGS = {"sync": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False,
                  "raytune": False, "tensorboard": False, "wandb": False, "vscode_msg": False,
                  "openvino_msg": False}


def quiet_settings(**paths: str) -> None:
    """Write the offline settings (and optional datasets_dir/runs_dir/weights_dir) to the
    Ultralytics settings file, only the keys this version knows, only when they differ; only
    in a settings folder edgeloop set up (a user's own settings are theirs: flows.offline)."""
    from ultralytics import settings
    from ultralytics.utils import USER_CONFIG_DIR

    if not (Path(USER_CONFIG_DIR) / OWN_MARK).is_file():
        return

    wanted = {k: v for k, v in {**QUIET_SETTINGS, **paths}.items() if k in settings}
    if any(settings.get(k) != v for k, v in wanted.items()):
        settings.update(wanted)


def _use_all_cores(threads: int) -> None:
    """Ultralytics keeps one core free for data loading; on a small CPU box that halves speed."""
    from ultralytics.utils import torch_utils

    torch_utils.NUM_THREADS = threads or os.cpu_count() or 1


AMP_CHECK_WEIGHTS = "yolo26n.pt"  # what Ultralytics' AMP self-test runs, from its weights dir


@contextmanager
def _amp_check_offline() -> Iterator[None]:
    """Ultralytics tests AMP on CUDA by running a pretrained model it downloads when missing.
    Offline (YOLO_OFFLINE, or no DNS) and without those weights, that is a download attempt
    (curl retries for minutes behind a firewall that drops packets) ending where this ends at
    once: AMP stays on, as Ultralytics decides after a failed download (its list of GPUs with
    broken fp16, GTX 16xx and the like, is then not consulted: set `device: cpu` or train online
    there). Online, or with the weights on disk, its own check runs."""
    from ultralytics import utils
    from ultralytics.engine import trainer

    original = trainer.check_amp

    def check(model: Any) -> bool:
        if utils.is_online() or (Path(utils.WEIGHTS_DIR) / AMP_CHECK_WEIGHTS).is_file():
            return bool(original(model))
        utils.LOGGER.warning("AMP: check skipped offline (no %s to test with); AMP on",
                             AMP_CHECK_WEIGHTS)
        return True

    trainer.check_amp = check
    try:
        yield
    finally:
        trainer.check_amp = original


def train(data_yaml: Path, out_dir: Path, settings: TrainSettings, work_dir: Path) -> Path:
    """Train on `data_yaml` and copy the best weights to `out_dir/best.pt`; returns that path."""
    from ultralytics import YOLO

    if not data_yaml.is_file():
        raise FileNotFoundError(f"dataset spec {data_yaml} does not exist")
    quiet_settings()
    _use_all_cores(settings.threads)
    device = training_device(settings.device)
    model = YOLO(settings.model, task="detect")
    with _amp_check_offline():
        model.train(
            data=str(data_yaml.resolve()),
            imgsz=settings.imgsz,
            epochs=settings.epochs,
            batch=settings.batch,
            seed=settings.seed,
            deterministic=True,
            patience=settings.patience,
            cache="ram" if settings.cache else False,
            device=device,
            amp=uses_amp(device),
            plots=False,
            project=str(work_dir.resolve()),
            name="train",
            exist_ok=True,
            verbose=False,
            optimizer=settings.optimizer,
            val=settings.val,
            **settings.tuning(),
            **dict(settings.augment),
        )
    if model.trainer is None:
        raise RuntimeError("Ultralytics returned from training without a trainer")
    best = Path(model.trainer.best)
    if not best.is_file():
        raise RuntimeError(f"training finished without best weights at {best}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "best.pt"
    shutil.copyfile(best, target)
    return target


def model_facts(weights: Path) -> tuple[tuple[str, ...], int, str]:
    """(class names in id order, training input size, task) of an Ultralytics checkpoint."""
    from ultralytics import YOLO

    quiet_settings()
    model = YOLO(str(weights))
    names = model.names
    ordered = tuple(str(names[i]) for i in sorted(names)) if isinstance(names, dict) \
        else tuple(str(n) for n in names)
    args = getattr(model.model, "args", None) or {}
    imgsz = args.get("imgsz", 640) if isinstance(args, dict) else 640
    return ordered, int(max(imgsz) if isinstance(imgsz, list | tuple) else imgsz), str(model.task)


def export_onnx(weights: Path, out_path: Path, imgsz: int, dynamic: bool = True,
                quiet: bool = False) -> Path:
    """Export `weights` to ONNX (opset and graph cleanup as Ultralytics does) at `out_path`;
    `quiet`: without Ultralytics' progress lines (a command that reports in one line)."""
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    quiet_settings()
    level = LOGGER.level
    if quiet:
        LOGGER.setLevel(logging.WARNING)
    # On the CPU whatever the training device: the graph is the same, the file ships to CPUs, and
    # the parity check (onnx_export.torch_parity) compares it with the weights run on the CPU,
    # within tolerances measured there (a GPU's TF32 convolutions differ by more).
    try:
        exported = YOLO(str(weights), task="detect").export(
            format="onnx", imgsz=imgsz, dynamic=dynamic, simplify=True, device="cpu",
            verbose=False)
    finally:
        LOGGER.setLevel(level)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(exported), out_path)
    return out_path


def evaluate(model_path: Path, data_yaml: Path, imgsz: int, work_dir: Path,
             split: str = "val") -> DetectionMetrics:
    """mAP50, mAP50-95 and per-class AP50 of a .pt or .onnx model on one dataset split."""
    from ultralytics import YOLO

    quiet_settings()
    _use_all_cores(0)
    model = YOLO(str(model_path), task="detect")
    # On the CPU: what is scored is the ONNX file, run by ONNX Runtime as devices run it; on CUDA
    # Ultralytics would ask for onnxruntime-gpu (an auto-install, refused offline).
    result = model.val(
        data=str(data_yaml.resolve()),
        split=split,
        imgsz=imgsz,
        batch=1 if model_path.suffix == ".onnx" else 16,
        conf=0.001,
        iou=0.7,
        device="cpu",
        plots=False,
        project=str(work_dir.resolve()),
        name="val",
        exist_ok=True,
        verbose=False,
    )
    names = result.names
    per_class = {names[int(c)]: float(ap) for c, ap in
                 zip(result.box.ap_class_index, result.box.ap50, strict=True)}
    return DetectionMetrics(
        map50=float(result.box.map50),
        map50_95=float(result.box.map),
        ap50_per_class=per_class,
    )
