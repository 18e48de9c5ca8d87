"""How a refusal reads: a validation error becomes a 422 naming the offending fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge_runtime.contract import TelemetryBatch
from hub.errors import invalid


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
