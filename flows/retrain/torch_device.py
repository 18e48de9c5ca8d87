"""Which torch device a training run uses: params.yaml's `device` (auto, cpu, cuda, cuda:N, mps)
against what the machine has, and whether it trains in mixed precision (AMP, on CUDA only)."""

from __future__ import annotations

import re

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
_CUDA = re.compile(r"cuda(?::(\d+))?")


class DeviceError(ValueError):
    """A device that is not one of auto, cpu, cuda, cuda:N, mps, or that this machine lacks."""


def check_device_name(requested: str) -> None:
    """Refuse a value that names no device (before anything heavy is imported)."""
    if requested not in ("auto", "cpu", "mps") and _CUDA.fullmatch(requested) is None:
        raise DeviceError(f"device {requested!r} is not one of {DEVICE_CHOICES} "
                          "(several GPUs at once are not supported)")


def resolve_device(requested: str, *, cuda_devices: int, mps: bool) -> str:
    """The torch device for `requested` on a machine with `cuda_devices` CUDA GPUs and (or not)
    Apple's MPS: `auto` is cuda:0 when there is a GPU, else mps, else cpu; `cuda` is cuda:0.
    A device the machine lacks is refused, never swapped for another."""
    check_device_name(requested)
    if requested == "auto":
        return "cuda:0" if cuda_devices else "mps" if mps else "cpu"
    if requested == "mps" and not mps:
        raise DeviceError("device 'mps' asked for, but this machine has no Apple MPS device")
    match = _CUDA.fullmatch(requested)
    if match is None:
        return requested
    index = int(match.group(1) or 0)
    if index >= cuda_devices:
        have = (f"{cuda_devices} CUDA device(s), cuda:0 to cuda:{cuda_devices - 1}"
                if cuda_devices else "no CUDA device (or a CPU-only torch)")
        raise DeviceError(f"device {requested!r} asked for, but this machine has {have}")
    return f"cuda:{index}"


def uses_amp(device: str) -> bool:
    """Mixed precision only on CUDA: Ultralytics supports it nowhere else."""
    return device.startswith("cuda")


def training_device(requested: str) -> str:
    """`resolve_device` against this machine's torch."""
    check_device_name(requested)  # a typo is refused before torch is imported
    import torch

    return resolve_device(requested, cuda_devices=torch.cuda.device_count(),
                          mps=torch.backends.mps.is_available())
