from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from edge_runtime.contract import FrameStats, SampleMeta, SamplePolicy, TelemetryBatch

WHEN = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def stats(**overrides) -> dict:
    fields = dict(device_id="cam-1", model_version="v1", frame_id=3, captured_at=WHEN,
                  pre_ms=1.0, infer_ms=5.0, post_ms=0.3, detections=0, class_counts={},
                  uncertain=0, brightness=0.5, contrast=0.1, sharpness=12.0, saturation=0.05)
    return fields | overrides


def test_record_id_is_device_and_frame():
    assert FrameStats(**stats()).record_id == "cam-1/3"


@pytest.mark.parametrize("device", ["../etc", "a/b", "", ".hidden", "x" * 65, "nul\x00", "é"])
def test_device_ids_that_could_escape_a_path_are_refused(device):
    with pytest.raises(ValidationError, match="device_id"):
        FrameStats(**stats(device_id=device))


def test_naive_timestamps_are_refused():
    with pytest.raises(ValidationError, match="time zone"):
        FrameStats(**stats(captured_at=datetime(2026, 1, 1)))


def test_out_of_range_values_are_refused():
    with pytest.raises(ValidationError, match="brightness"):
        FrameStats(**stats(brightness=1.5))
    with pytest.raises(ValidationError, match="infer_ms"):
        FrameStats(**stats(infer_ms=float("nan")))
    with pytest.raises(ValidationError, match="unknown"):
        FrameStats(**stats(unknown=1))


def test_a_batch_cannot_carry_another_devices_records():
    with pytest.raises(ValidationError, match="records of"):
        TelemetryBatch(device_id="cam-2", sent_at=WHEN, records=[FrameStats(**stats())])


def test_batch_roundtrips_through_json():
    batch = TelemetryBatch(device_id="cam-1", sent_at=WHEN, records=[FrameStats(**stats())])
    assert TelemetryBatch.model_validate_json(batch.model_dump_json()) == batch


def test_sample_meta_names_its_policy():
    meta = SampleMeta(device_id="cam-1", model_version="v1", frame_id=9, captured_at=WHEN,
                      policy="uncertain", uncertainty=0.8, width=320, height=240,
                      predictions=[])
    assert meta.policy is SamplePolicy.UNCERTAIN and meta.record_id == "cam-1/9"
