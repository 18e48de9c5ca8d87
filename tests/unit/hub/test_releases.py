"""What a release upload must hold: exactly the files its manifest names, each once."""

from __future__ import annotations

import pytest

from hub.errors import Invalid
from hub.releases import check_upload_names


def test_uploads_must_match_the_manifest_one_to_one() -> None:
    check_upload_names(["model.onnx", "labels.txt"], ["labels.txt", "model.onnx"])
    with pytest.raises(Invalid, match=r"missing \['labels.txt'\]"):
        check_upload_names(["model.onnx", "labels.txt"], ["model.onnx"])
    with pytest.raises(Invalid, match="not in the manifest"):
        check_upload_names(["model.onnx"], ["model.onnx", "../../etc/passwd"])
    with pytest.raises(Invalid, match="more than once"):
        check_upload_names(["model.onnx"], ["model.onnx", "model.onnx"])
    with pytest.raises(Invalid, match="lists"):
        check_upload_names(["model.onnx", "model.onnx"], ["model.onnx"])
