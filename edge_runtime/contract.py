"""The wire contract: every record that crosses the network, defined once.

Devices produce these; the hub and the flows import them. Each record carries a stable id (its
idempotency key) so that a replayed upload is stored once.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

CONTRACT_VERSION = 1

# The hub's HTTP API, as both ends address it.
TELEMETRY_PATH = "/v1/telemetry"
SAMPLES_PATH = "/v1/samples"
HEARTBEAT_PATH = "/v1/heartbeat"
ASSIGNMENT_PATH = "/v1/assignment"
RELEASES_PATH = "/v1/releases"  # /{release_id}/model, /{release_id}/files/{name}
TUF_METADATA_PATH = "/v1/tuf/metadata"  # /{name}
TUF_TARGETS_PATH = "/v1/tuf/targets"  # /{release_id}/{name}
ADMIN_PREFIX = "/v1/admin"

# What a release carries, as the publisher writes it and the device reads it.
MODEL_FILE = "model.onnx"  # the one file every release must carry, whatever the artefact
TARGET_MANIFEST_FIELD = "edgeloop_manifest"  # the release's manifest in each TUF target's custom
MAX_BATCH_RECORDS = 5000
MAX_EMBEDDING_DIM = 64
MAX_DETECTIONS = 300

# Names that become parts of keys and paths: no separators, no dots-only, no control characters.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a time zone (UTC)")
    return value


Timestamp = Annotated[datetime, AfterValidator(_aware)]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Detection(_Record):
    """One box in normalised image coordinates (0..1, x1 < x2, y1 < y2)."""

    cls: Annotated[int, Field(ge=0, le=999)]
    label: Annotated[str, StringConstraints(max_length=64)]
    score: Unit
    x1: Unit
    y1: Unit
    x2: Unit
    y2: Unit


class FrameStats(_Record):
    """What the device saw in one frame, in a few numbers (one telemetry row)."""

    device_id: Name
    model_version: Name
    frame_id: Annotated[int, Field(ge=0)]  # monotonic per device, across restarts
    captured_at: Timestamp
    pre_ms: NonNegative
    infer_ms: NonNegative
    post_ms: NonNegative
    detections: Annotated[int, Field(ge=0, le=MAX_DETECTIONS)]
    class_counts: dict[Annotated[str, StringConstraints(max_length=64)],
                       Annotated[int, Field(ge=0)]]
    conf_max: Unit | None = None  # None when nothing was detected
    conf_mean: Unit | None = None
    conf_min: Unit | None = None
    uncertain: Annotated[int, Field(ge=0)]  # detections scored inside the uncertainty band
    box_area_mean: Unit | None = None  # box area as a share of the image
    box_area_min: Unit | None = None
    box_area_max: Unit | None = None
    box_aspect_mean: NonNegative | None = None  # width / height
    brightness: Unit  # mean luma, 0..1
    contrast: Unit  # luma standard deviation, 0..1
    sharpness: NonNegative  # variance of the Laplacian of the luma (0..255 scale)
    saturation: Unit  # mean HSV saturation, 0..1
    embedding: Annotated[list[float], Field(max_length=MAX_EMBEDDING_DIM)] | None = None

    @property
    def record_id(self) -> str:
        """The idempotency key: a frame of a device is stored once, however often it is sent."""
        return f"{self.device_id}/{self.frame_id}"


class TelemetryBatch(_Record):
    contract: Annotated[int, Field(ge=1)] = CONTRACT_VERSION
    device_id: Name
    sent_at: Timestamp
    records: Annotated[list[FrameStats], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]

    @model_validator(mode="after")
    def _one_device(self) -> TelemetryBatch:
        strangers = {r.device_id for r in self.records} - {self.device_id}
        if strangers:
            raise ValueError(f"batch of {self.device_id} holds records of {sorted(strangers)}")
        return self


class SamplePolicy(enum.StrEnum):
    """Why a frame was kept for labelling."""

    UNCERTAIN = "uncertain"
    EMPTY = "empty"
    RARE_CLASS = "rare_class"
    RANDOM = "random"


class SampleMeta(_Record):
    """A kept frame's metadata; the image travels beside it."""

    device_id: Name
    model_version: Name
    frame_id: Annotated[int, Field(ge=0)]
    captured_at: Timestamp
    policy: SamplePolicy
    uncertainty: Unit  # 1 - |2 * score - 1| of the least certain detection; 1 when empty
    width: Annotated[int, Field(ge=1, le=16384)]
    height: Annotated[int, Field(ge=1, le=16384)]
    predictions: Annotated[list[Detection], Field(max_length=MAX_DETECTIONS)]

    @property
    def record_id(self) -> str:
        return f"{self.device_id}/{self.frame_id}"


class UpdateReport(_Record):
    """Where the device's model updater stands, and how its last update ended."""

    phase: Annotated[str, StringConstraints(max_length=32)]  # idle, downloading, health_check...
    release_id: Name | None = None  # the release serving now
    version: Annotated[int, Field(ge=0)] | None = None
    target_release: Name | None = None  # the release the last update was about
    refusal: Annotated[str, StringConstraints(max_length=32)] | None = None  # why it was refused
    detail: Annotated[str, StringConstraints(max_length=500)] | None = None  # or rolled back
    at: Timestamp | None = None  # when the last update ended


class DeviceStatus(_Record):
    """A device's heartbeat: what it runs and how its spool is doing."""

    device_id: Name
    sent_at: Timestamp
    model_version: Name
    release_version: Annotated[int, Field(ge=0)] = 0
    uptime_s: NonNegative
    frames_seen: Annotated[int, Field(ge=0)]
    spool_telemetry: Annotated[int, Field(ge=0)]  # records waiting to be uploaded
    spool_samples: Annotated[int, Field(ge=0)]
    spool_bytes: Annotated[int, Field(ge=0)]
    dropped: dict[Annotated[str, StringConstraints(max_length=64)], Annotated[int, Field(ge=0)]]
    last_error: Annotated[str, StringConstraints(max_length=500)] | None = None
    update: UpdateReport | None = None  # absent from devices without the updater


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class ModelFile(_Record):
    name: Name  # file name inside the release, e.g. model.onnx
    sha256: Sha256
    size: Annotated[int, Field(ge=1)]  # bytes


class InputSignature(_Record):
    """What the model expects, so a device can refuse a model it cannot feed."""

    imgsz: Annotated[int, Field(ge=32, le=4096)]
    classes: Annotated[list[Annotated[str, StringConstraints(max_length=64)]],
                       Field(min_length=1, max_length=1000)]
    preprocessing: Annotated[str, StringConstraints(max_length=200)] = (
        "letterbox pad 114, BGR->RGB, /255, NCHW float32")


class Lineage(_Record):
    """Where a release came from: anyone can say which data, labels and code produced it."""

    git_commit: Annotated[str, StringConstraints(max_length=64)] = ""
    dataset_version: Annotated[str, StringConstraints(max_length=200)] = ""  # DVC
    labelstudio_batches: list[Annotated[str, StringConstraints(max_length=100)]] = []
    params_hash: Annotated[str, StringConstraints(max_length=64)] = ""
    parent_release: Name | None = None


class ReleaseManifest(_Record):
    """A model release: what to run, how to check it, and where it came from."""

    release_id: Name
    version: Annotated[int, Field(ge=1)]  # monotonically increasing per fleet
    files: Annotated[list[ModelFile], Field(min_length=1, max_length=16)]
    input: InputSignature
    metrics: dict[Annotated[str, StringConstraints(max_length=100)], float] = {}
    lineage: Lineage = Lineage()
    created_at: Timestamp
    expires_at: Timestamp | None = None


def stats_row(stats: FrameStats, names: tuple[str, ...]) -> dict[str, object]:
    """The telemetry table's row (Parquet, Evidently): one `count_<class>` column per model
    class, one `emb_<i>` column per embedding dimension, everything else as in `FrameStats`."""
    row = stats.model_dump(exclude={"class_counts", "embedding"})
    for name in names:
        row[f"count_{name}"] = stats.class_counts.get(name, 0)
    for i, value in enumerate(stats.embedding or ()):
        row[f"emb_{i}"] = value
    return row
