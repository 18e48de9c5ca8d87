"""The wire contract: every record that crosses the network, defined once.

Devices produce these; the hub and the flows import them. Each record carries a stable id (its
idempotency key) so that a replayed upload is stored once.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
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

MAX_CLASSES = 1000  # class names one model may have
MAX_DROP_REASONS = 64
MAX_METRICS = 100

# Every value a record may hold can be stored and exported as it came: integers fit the 64-bit
# columns of the database and of Parquet, floats are finite (JSON has no NaN), strings hold no
# control characters (no NUL, which PostgreSQL text refuses; no terminal escapes), every list and
# map has a bound, and timestamps lie in a window that every clock and table type spans.
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
_PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]*$"  # no C0 or C1 control character, DEL included
_NO_NUL = r"^[^\x00]*$"  # free text (error messages) may span lines

# Names that become parts of keys and paths: no separators, no dots-only, no control characters.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Label = Annotated[str, StringConstraints(max_length=64, pattern=_PRINTABLE)]  # e.g. a class name
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def text(max_length: int, *, lines: bool = False) -> StringConstraints:
    """A bounded string: printable on one line, or (`lines`) anything but NUL."""
    return StringConstraints(max_length=max_length, pattern=_NO_NUL if lines else _PRINTABLE)


# Timestamps from device clocks: an RTC that reset reads 1970, nothing sane reads past 2200 (and
# pandas' nanosecond timestamps end in 2262).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _sane_time(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a time zone (UTC)")
    try:
        inside = EARLIEST <= value < LATEST
    except OverflowError:  # its UTC time is outside the calendar (year 1 with a + offset)
        inside = False
    if not inside:
        raise ValueError(f"timestamps must lie in [{EARLIEST:%Y-%m-%d}, {LATEST:%Y-%m-%d}) UTC")
    return value


Timestamp = Annotated[datetime, AfterValidator(_sane_time)]


def _spoken(version: int) -> int:
    if version != CONTRACT_VERSION:
        raise ValueError(f"contract version {version} is not spoken here (version "
                         f"{CONTRACT_VERSION} is)")
    return version


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Detection(_Record):
    """One box in normalised image coordinates (0..1, x1 < x2, y1 < y2)."""

    cls: Annotated[int, Field(ge=0, lt=MAX_CLASSES)]
    label: Label
    score: Unit
    x1: Unit
    y1: Unit
    x2: Unit
    y2: Unit


class FrameStats(_Record):
    """What the device saw in one frame, in a few numbers (one telemetry row)."""

    device_id: Name
    model_version: Name
    frame_id: Count  # monotonic per device, across restarts
    captured_at: Timestamp
    pre_ms: NonNegative
    infer_ms: NonNegative
    post_ms: NonNegative
    detections: Annotated[int, Field(ge=0, le=MAX_DETECTIONS)]
    class_counts: Annotated[  # the classes detected (not the zeros): at most one per box
        dict[Label, Annotated[int, Field(ge=0, le=MAX_DETECTIONS)]],
        Field(max_length=MAX_DETECTIONS)]
    conf_max: Unit | None = None  # None when nothing was detected
    conf_mean: Unit | None = None
    conf_min: Unit | None = None
    uncertain: Annotated[int, Field(ge=0, le=MAX_DETECTIONS)]  # boxes inside the uncertainty band
    box_area_mean: Unit | None = None  # box area as a share of the image
    box_area_min: Unit | None = None
    box_area_max: Unit | None = None
    box_aspect_mean: NonNegative | None = None  # width / height
    brightness: Unit  # mean luma, 0..1
    contrast: Unit  # luma standard deviation, 0..1
    sharpness: NonNegative  # variance of the Laplacian of the luma (0..255 scale)
    saturation: Unit  # mean HSV saturation, 0..1
    embedding: Annotated[list[Finite], Field(max_length=MAX_EMBEDDING_DIM)] | None = None

    @property
    def record_id(self) -> str:
        """The idempotency key: a frame of a device is stored once, however often it is sent."""
        return f"{self.device_id}/{self.frame_id}"


class TelemetryBatch(_Record):
    contract: Annotated[int, AfterValidator(_spoken)] = CONTRACT_VERSION
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
    frame_id: Count
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

    phase: Annotated[str, text(32)]  # idle, downloading, health_check...
    release_id: Name | None = None  # the release serving now
    version: Annotated[int, Field(ge=0, le=INT32_MAX)] | None = None
    target_release: Name | None = None  # the release the last update was about
    refusal: Annotated[str, text(32)] | None = None  # why it was refused
    detail: Annotated[str, text(500, lines=True)] | None = None  # or rolled back
    at: Timestamp | None = None  # when the last update ended


class DeviceStatus(_Record):
    """A device's heartbeat: what it runs and how its spool is doing."""

    device_id: Name
    sent_at: Timestamp
    model_version: Name
    release_version: Annotated[int, Field(ge=0, le=INT32_MAX)] = 0
    uptime_s: NonNegative
    frames_seen: Count
    spool_telemetry: Count  # records waiting to be uploaded
    spool_samples: Count
    spool_bytes: Count
    dropped: Annotated[dict[Label, Count], Field(max_length=MAX_DROP_REASONS)]
    last_error: Annotated[str, text(500, lines=True)] | None = None
    update: UpdateReport | None = None  # absent from devices without the updater


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class ModelFile(_Record):
    name: Name  # file name inside the release, e.g. model.onnx
    sha256: Sha256
    size: Annotated[int, Field(ge=1, le=INT64_MAX)]  # bytes


class InputSignature(_Record):
    """What the model expects, so a device can refuse a model it cannot feed."""

    imgsz: Annotated[int, Field(ge=32, le=4096)]
    classes: Annotated[list[Label], Field(min_length=1, max_length=MAX_CLASSES)]
    preprocessing: Annotated[str, text(200)] = (
        "letterbox pad 114, BGR->RGB, /255, NCHW float32")


class Lineage(_Record):
    """Where a release came from: anyone can say which data, labels and code produced it."""

    git_commit: Annotated[str, text(64)] = ""
    dataset_version: Annotated[str, text(200)] = ""  # DVC
    labelstudio_batches: Annotated[list[Annotated[str, text(100)]], Field(max_length=1000)] = []
    params_hash: Annotated[str, text(64)] = ""
    parent_release: Name | None = None


class ReleaseManifest(_Record):
    """A model release: what to run, how to check it, and where it came from."""

    release_id: Name
    version: Annotated[int, Field(ge=1, le=INT32_MAX)]  # monotonically increasing per fleet
    files: Annotated[list[ModelFile], Field(min_length=1, max_length=16)]
    input: InputSignature
    metrics: Annotated[dict[Annotated[str, text(100)], Finite], Field(max_length=MAX_METRICS)] = {}
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
