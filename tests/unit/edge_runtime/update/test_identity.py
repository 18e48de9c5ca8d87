"""The device's name at the hub, stored by `edge provision --device-id` in its state folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.update.config import UpdaterError
from edge_runtime.update.steps import DEVICE_FILE, UpdateSteps, device_identity


def test_a_provisioned_name_is_read_back_and_none_when_none_was_given(tmp_path: Path) -> None:
    root, model = tmp_path / "1.root.json", tmp_path / "model.onnx"
    root.write_text("{}")
    model.write_bytes(b"onnx")
    UpdateSteps.provision(tmp_path / "named", root, model, device_id="cam-7")
    UpdateSteps.provision(tmp_path / "plain", root, model)
    assert device_identity(tmp_path / "named") == "cam-7"
    assert device_identity(tmp_path / "plain") is None


@pytest.mark.parametrize("text", ["{not json", '{"device_id": ""}', "[1]"])
def test_a_damaged_identity_file_is_a_named_error(tmp_path: Path, text: str) -> None:
    (tmp_path / DEVICE_FILE).write_text(text)
    with pytest.raises(UpdaterError, match=DEVICE_FILE):
        device_identity(tmp_path)
