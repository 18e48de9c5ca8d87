"""The training device: params.yaml's `device` against what a machine has (no torch here)."""

from __future__ import annotations

import pytest

from flows.retrain.torch_device import DeviceError, resolve_device, uses_amp

NOTHING = {"cuda_devices": 0, "mps": False}
ONE_GPU = {"cuda_devices": 1, "mps": False}
MAC = {"cuda_devices": 0, "mps": True}


@pytest.mark.parametrize(("machine", "device"), [
    (ONE_GPU, "cuda:0"), ({"cuda_devices": 4, "mps": False}, "cuda:0"), (MAC, "mps"),
    (NOTHING, "cpu")])
def test_auto_takes_the_first_gpu_else_mps_else_the_cpu(machine, device) -> None:
    assert resolve_device("auto", **machine) == device


@pytest.mark.parametrize(("requested", "device"), [
    ("cpu", "cpu"), ("cuda", "cuda:0"), ("cuda:0", "cuda:0"), ("cuda:1", "cuda:1")])
def test_a_device_the_machine_has_is_used_as_asked(requested, device) -> None:
    assert resolve_device(requested, cuda_devices=2, mps=False) == device


def test_the_cpu_is_there_on_every_machine() -> None:
    assert resolve_device("cpu", **NOTHING) == "cpu"


@pytest.mark.parametrize("requested", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_refused_not_swapped_for_the_cpu(requested) -> None:
    with pytest.raises(DeviceError, match="has no CUDA device"):
        resolve_device(requested, **MAC)


def test_a_gpu_index_beyond_the_machines_is_refused_naming_what_it_has() -> None:
    with pytest.raises(DeviceError, match=r"'cuda:2'.*2 CUDA device\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2", cuda_devices=2, mps=False)


def test_mps_without_apple_silicon_is_refused() -> None:
    with pytest.raises(DeviceError, match="no Apple MPS"):
        resolve_device("mps", **ONE_GPU)


@pytest.mark.parametrize("requested", ["gpu", "0", "0,1", "cuda:0,1", "CUDA", "cuda:", "", "tpu"])
def test_a_name_that_is_no_device_is_refused_with_the_choices(requested) -> None:
    with pytest.raises(DeviceError, match="auto, cpu, cuda, cuda:N or mps"):
        resolve_device(requested, **ONE_GPU)


@pytest.mark.parametrize(("device", "amp"), [
    ("cuda:0", True), ("cuda:3", True), ("cpu", False), ("mps", False)])
def test_mixed_precision_only_on_cuda(device, amp) -> None:
    assert uses_amp(device) is amp


def test_train_settings_refuse_an_unknown_device_before_training() -> None:
    from flows.retrain.ultralytics_yolo import TrainSettings

    assert TrainSettings().device == "auto"
    with pytest.raises(DeviceError, match="'gpu0'"):
        TrainSettings(device="gpu0")
