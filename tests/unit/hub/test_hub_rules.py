"""Pure rules of the hub: what an upload must hold, and how a refusal reads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge_runtime.contract import TelemetryBatch
from hub.errors import Invalid, invalid
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


def test_a_refusal_names_the_first_offending_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        TelemetryBatch.model_validate({"device_id": "../x", "sent_at": "2026-01-01T00:00:00",
                                       "records": []})
    refusal = invalid(caught.value, "telemetry batch")
    assert refusal.status == 422
    assert refusal.detail.startswith("invalid telemetry batch: device_id: ")
    assert "sent_at" in refusal.detail and "records" in refusal.detail
    assert [e["loc"] for e in refusal.extra["errors"]] == [["device_id"], ["sent_at"],
                                                           ["records"]]
