"""What the hub acknowledges it stores losslessly and can export; what it cannot, it refuses with a
4xx naming the field. Hypothesis writes the records: each field of the wire contract's models
valid, or one of the values a hostile or broken device sends (non-finite floats, integers past
64 bits, strings that coerce, control characters, timestamps off the calendar, thousands of class
names). Against a real hub on SQLite and PostgreSQL, for telemetry, samples, heartbeats and
releases; after every request the fleet-wide exports still answer."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.contract import (
    MAX_DETECTIONS,
    Detection,
    DeviceStatus,
    FrameStats,
    InputSignature,
    ModelFile,
    ReleaseManifest,
    SampleMeta,
    TelemetryBatch,
    UpdateReport,
    stats_row,
)
from hub.db import devices, make_engine, samples, telemetry
from tests.support.hub import ADMIN_TOKEN, RunningHub, hub_settings, running_hub
from tests.support.records import T0, jpeg, meta, stats

pytestmark = pytest.mark.slow

DEVICE = "cam-1"
EXAMPLES = 40  # per record kind and database: about 10 s each, derandomized for CI
LOSSLESS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)


class Raw(str):
    """JSON text put into the document as it is (what json.dumps cannot write)."""


def dumps(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)  # NaN and Infinity as Python writes them: pydantic reads them


# -- documents: valid ones, then at most one field made hostile ----------------------------------

HOSTILE_VALUES: list[Any] = [
    # numbers and types
    math.nan, math.inf, -math.inf, 2**63, 2**64, -(2**63) - 1, Raw("1" * 5000), Raw("1e999"),
    True, "7039", "0.5", None, -1, 1.5, [1], {"v": 1},
    # strings
    "a\x00b", "\x1b[2J\x1b[H", "row\nfake row", "\x9b31m", "\u202eevil", "x" * 70, "x" * 600,
    Raw('"\\ud800"'),
    # timestamps
    "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "2026-01-01T00:00:00",
    "1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z", 1767225600, "yesterday",
    # sizes: thousands of class names, long lists, huge values inside
    {f"c{i}": 1 for i in range(MAX_DETECTIONS + 1)}, {f"c{i}": 0 for i in range(3000)},
    [0.5] * 70, [{"cls": 0}] * 301, {"x": Raw("9" * 5000)}, {"\x1b[2J": 1}]
HOSTILE = st.one_of(st.sampled_from(HOSTILE_VALUES), st.text(max_size=80))
TIMES = st.one_of(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2199, 12, 30),
                 timezones=st.just(UTC)).map(lambda t: t.isoformat()),
    st.sampled_from(["2026-03-01T10:00:00+05:30", "1970-01-01T00:00:00Z",
                     "2199-12-31T23:59:59.999999Z", "2026-06-01T00:00:00-23:59"]))
NAMES = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=64)
UNIT = st.floats(0.0, 1.0)
NON_NEGATIVE = st.one_of(st.floats(0.0, 1e300), st.integers(0, 10**6))
COUNT = st.one_of(st.integers(0, 1000), st.integers(0, 2**63 - 1), st.just(2**63 - 1))
SMALL = st.integers(0, MAX_DETECTIONS)


def optional(strategy: Any) -> Any:
    return st.one_of(st.none(), strategy)


def frame_stats(frame_id: int) -> Any:
    return st.fixed_dictionaries({
        "device_id": st.just(DEVICE), "model_version": NAMES, "frame_id": st.just(frame_id),
        "captured_at": TIMES, "pre_ms": NON_NEGATIVE, "infer_ms": NON_NEGATIVE,
        "post_ms": NON_NEGATIVE, "detections": SMALL,
        "class_counts": st.dictionaries(TEXT, SMALL, max_size=8), "conf_max": optional(UNIT),
        "conf_mean": optional(UNIT), "conf_min": optional(UNIT), "uncertain": SMALL,
        "box_area_mean": optional(UNIT), "box_area_min": optional(UNIT),
        "box_area_max": optional(UNIT), "box_aspect_mean": optional(NON_NEGATIVE),
        "brightness": UNIT, "contrast": UNIT, "sharpness": NON_NEGATIVE, "saturation": UNIT,
        "embedding": optional(st.lists(st.floats(-1e300, 1e300), max_size=64))})


def telemetry_batch(frame_id: int) -> Any:
    return st.fixed_dictionaries({
        "contract": st.just(1), "device_id": st.just(DEVICE), "sent_at": TIMES,
        "records": st.integers(1, 3).flatmap(  # each record its own frame, never seen before
            lambda n: st.tuples(*(frame_stats(frame_id + i) for i in range(n))).map(list))})


def sample_meta(frame_id: int) -> Any:
    detection = st.fixed_dictionaries({
        "cls": st.integers(0, 999), "label": TEXT, "score": UNIT, "x1": UNIT, "y1": UNIT,
        "x2": UNIT, "y2": UNIT})
    return st.fixed_dictionaries({
        "device_id": st.just(DEVICE), "model_version": NAMES, "frame_id": st.just(frame_id),
        "captured_at": TIMES, "policy": st.sampled_from(["uncertain", "empty", "random"]),
        "uncertainty": UNIT, "width": st.just(64), "height": st.just(48),
        "predictions": st.lists(detection, max_size=3)})


def device_status() -> Any:
    update = st.fixed_dictionaries({
        "phase": st.sampled_from(["idle", "health_check"]),
        "version": optional(st.integers(0, 2**31 - 1)), "refusal": optional(TEXT),
        "detail": optional(st.text(st.characters(blacklist_characters="\x00",
                                                 blacklist_categories=("Cs",)), max_size=200)),
        "at": optional(TIMES)})
    return st.fixed_dictionaries({
        "device_id": st.just(DEVICE), "sent_at": TIMES, "model_version": NAMES,
        "release_version": st.integers(0, 2**31 - 1), "uptime_s": NON_NEGATIVE,
        "frames_seen": COUNT, "spool_telemetry": COUNT, "spool_samples": COUNT,
        "spool_bytes": COUNT, "dropped": st.dictionaries(TEXT, COUNT, max_size=4),
        "last_error": optional(st.text(st.characters(blacklist_characters="\x00",
                                                     blacklist_categories=("Cs",)),
                                       max_size=300)),
        "update": optional(update)})


def release_manifest(version: int, release_id: str, model: bytes) -> Any:
    files = [{"name": "model.onnx", "sha256": hashlib.sha256(model).hexdigest(),
              "size": len(model)}]
    return st.fixed_dictionaries({
        "release_id": st.just(release_id), "version": st.just(version), "files": st.just(files),
        "input": st.fixed_dictionaries({"imgsz": st.integers(32, 4096),
                                        "classes": st.lists(TEXT, min_size=1, max_size=3)}),
        "metrics": st.dictionaries(st.text(max_size=20).filter(lambda k: "\x00" not in k),
                                   st.floats(allow_nan=False, allow_infinity=False), max_size=4),
        "lineage": st.fixed_dictionaries({"git_commit": TEXT, "dataset_version": TEXT}),
        "created_at": TIMES, "expires_at": optional(TIMES)})


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a document a value sits, containers included."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += leaves(item, (*path, index))
    return found


def hostile(data: st.DataObject, document: Any, fixed: tuple[str, ...] = ()) -> Any:
    """The document, or (mostly) with one value replaced by what a hostile device sends.
    Paths through `fixed` keys are kept (the ids that make each example its own record); of a
    list, only the first item is a place, so that a 64-long embedding does not outweigh every
    field of the record."""
    # Hypothesis starts from the simplest choice, the first: hostile.
    if not data.draw(st.sampled_from([True, False]), label="hostile"):
        return document
    places = [p for p in leaves(document) if not set(p) & set(fixed)
              and all(part == 0 for part in p if isinstance(part, int))]
    path = data.draw(st.sampled_from(places), label="where")
    target = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = data.draw(HOSTILE, label="what")
    return document


# -- the hub, and what "lossless" and "refused" mean ---------------------------------------------


OUTCOMES: Counter[str] = Counter()


@pytest.fixture
def fleet(db_url: str, tmp_path: Path) -> Iterator[tuple[RunningHub, httpx.Client, httpx.Client]]:
    """A hub with one device, shared by a test's examples; they must have been both stored and
    refused, or the test proved nothing."""
    OUTCOMES.clear()
    with running_hub(hub_settings(db_url, tmp_path)) as hub:
        token = hub.add_device(DEVICE)
        with hub.http(token) as device, hub.http(ADMIN_TOKEN) as admin:
            yield hub, device, admin
    if OUTCOMES:  # the quarantine test sends by hand
        assert min(OUTCOMES["stored"], OUTCOMES["refused"]) >= EXAMPLES // 10, OUTCOMES


def check_answer(response: httpx.Response) -> bool:
    """True when stored; else the refusal is a 4xx whose reason is a sentence (422: fields)."""
    assert response.status_code < 500, response.text[:500]
    OUTCOMES["stored" if response.status_code < 300 else "refused"] += 1
    if response.status_code < 300:
        return True
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"], body
    if response.status_code == 422:
        assert body.get("errors") or ":" in body["detail"], body
    return False


def check_exports(admin: httpx.Client) -> None:
    """The fleet-wide exports that the flows call answer, whatever was sent before."""
    for path in ("/v1/admin/telemetry", "/v1/admin/samples", "/v1/admin/devices",
                 "/v1/admin/releases"):
        response = admin.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers.get("Edgeloop-Skipped", "0") == "0", path


def exported_row(admin: httpx.Client, frame_id: int) -> dict[str, Any]:
    table = pq.read_table(io.BytesIO(admin.get("/v1/admin/telemetry",
                                               params={"device_id": DEVICE}).content))
    rows = [row for row in table.to_pylist() if row["frame_id"] == frame_id]
    assert len(rows) == 1, rows
    return rows[0]


def same(exported: Any, sent: Any) -> bool:
    if isinstance(sent, datetime):
        return bool(exported == sent)  # both aware: the same instant
    if isinstance(sent, float) and isinstance(exported, float):
        return exported == sent or (math.isnan(exported) and math.isnan(sent))
    if sent is None:
        return exported is None or (isinstance(exported, float) and math.isnan(exported))
    return bool(exported == sent)


FRAME_IDS = itertools.count(1)
Fleet = tuple[RunningHub, httpx.Client, httpx.Client]


def send_telemetry(fleet: Fleet, doc: dict[str, Any]) -> None:
    _, device, admin = fleet
    if check_answer(device.post("/v1/telemetry", content=dumps(doc),
                                headers={"Content-Type": "application/json"})):
        for record in doc["records"]:
            sent = FrameStats.model_validate_json(dumps(record))
            row = exported_row(admin, sent.frame_id)
            expected = stats_row(sent, tuple(sent.class_counts))
            expected["captured_at"] = sent.captured_at
            for column, value in expected.items():
                assert same(row.get(column), value), (column, row.get(column), value)


def send_sample(fleet: Fleet, doc: dict[str, Any]) -> None:
    _, device, admin = fleet
    image = jpeg(64, 48, seed=next(FRAME_IDS))
    response = device.post("/v1/samples", data={"meta": dumps(doc)},
                           files={"image": ("f.jpg", image, "image/jpeg")})
    if check_answer(response):
        sent = SampleMeta.model_validate_json(dumps(doc))
        listed = [s for s in admin.get("/v1/admin/samples", params={"limit": 10_000}).json()
                  if s["meta"]["frame_id"] == sent.frame_id]
        assert len(listed) == 1
        assert SampleMeta.model_validate(listed[0]["meta"]) == sent
        shown = admin.get(f"/v1/admin/samples/{DEVICE}/{sent.frame_id}/image")
        assert shown.content == image


def send_heartbeat(fleet: Fleet, doc: dict[str, Any]) -> None:
    _, device, admin = fleet
    response = device.post("/v1/heartbeat", content=dumps(doc),
                           headers={"Content-Type": "application/json"})
    if check_answer(response) and response.json()["applied"]:
        shown = admin.get("/v1/admin/devices").json()[0]["status"]
        assert DeviceStatus.model_validate(shown) == DeviceStatus.model_validate_json(dumps(doc))


def send_release(fleet: Fleet, doc: dict[str, Any]) -> None:
    hub, _, admin = fleet
    text, release_id = dumps(doc), doc["release_id"]
    before = blob_files(hub)
    response = admin.post("/v1/admin/releases", data={"manifest": text}, files=[
        ("files", ("model.onnx", model_bytes(release_id), "application/octet-stream"))])
    if check_answer(response):
        assert admin.get(f"/v1/admin/releases/{release_id}").text == text  # verbatim
        listed = [r["manifest"] for r in admin.get("/v1/admin/releases").json()
                  if r["manifest"]["release_id"] == release_id]
        assert [ReleaseManifest.model_validate(m) for m in listed] == [
            ReleaseManifest.model_validate_json(text)]
    else:
        assert blob_files(hub) == before  # a refused release leaves no artefact behind


def model_bytes(release_id: str) -> bytes:
    return f"model of {release_id}".encode()


# Versions only go up: above every integer among HOSTILE_VALUES that a version may take.
FIRST_VERSION = 1_800_000_000


def new_release(number: int) -> Any:
    return release_manifest(FIRST_VERSION + number, f"r{number}", model_bytes(f"r{number}"))


def fresh_telemetry() -> dict[str, Any]:
    frame_id = next(FRAME_IDS) * 1000
    record = stats(DEVICE, frame_id, counts={"bolt": 2}, embedding=[0.25, -1.5],
                   box_aspect_mean=None)
    return json.loads(TelemetryBatch(device_id=DEVICE, sent_at=T0, records=[record])
                      .model_dump_json())


def fresh_sample() -> dict[str, Any]:
    record = meta(DEVICE, next(FRAME_IDS)).model_copy(update={"predictions": [Detection(
        cls=1, label="bolt", score=0.5, x1=0.1, y1=0.1, x2=0.2, y2=0.3)]})
    return json.loads(record.model_dump_json())


def fresh_heartbeat() -> dict[str, Any]:
    return json.loads(DeviceStatus(
        device_id=DEVICE, sent_at=T0, model_version="m1", release_version=3, uptime_s=5.0,
        frames_seen=100, spool_telemetry=1, spool_samples=2, spool_bytes=3,
        dropped={"spool_full": 4}, last_error="upload failed",
        update=UpdateReport(phase="idle", release_id="r1", version=3, target_release="r2",
                            refusal="hash", detail="sha256 differs", at=T0)).model_dump_json())


def fresh_release() -> dict[str, Any]:
    number = next(FRAME_IDS)
    model = model_bytes(f"r{number}")
    return json.loads(ReleaseManifest(
        release_id=f"r{number}", version=FIRST_VERSION + number, created_at=T0,
        metrics={"map50": 0.5},
        files=[ModelFile(name="model.onnx", sha256=hashlib.sha256(model).hexdigest(),
                         size=len(model))],
        input=InputSignature(imgsz=320, classes=["bolt", "nut"])).model_dump_json())


@dataclass(frozen=True)
class Kind:
    send: Callable[[Fleet, dict[str, Any]], None]
    documents: Callable[[], st.SearchStrategy[dict[str, Any]]]  # valid, each its own record
    fresh: Callable[[], dict[str, Any]]  # one valid document, its own record
    fixed: tuple[str, ...] = ()  # keys a mutation keeps


KINDS = {
    "telemetry": Kind(send_telemetry, lambda: telemetry_batch(next(FRAME_IDS) * 1000),
                      fresh_telemetry),
    "sample": Kind(send_sample, lambda: sample_meta(next(FRAME_IDS)), fresh_sample,
                   ("width", "height")),
    "heartbeat": Kind(send_heartbeat, device_status, fresh_heartbeat),
    "release": Kind(send_release, lambda: new_release(next(FRAME_IDS)), fresh_release,
                    ("release_id", "files")),
}


@pytest.mark.parametrize("kind", KINDS)
@LOSSLESS
@given(data=st.data())
def test_what_is_acknowledged_reads_back_as_sent(fleet: Fleet, kind: str,
                                                 data: st.DataObject) -> None:
    """Hypothesis: valid documents, half of them with one value made hostile."""
    case = KINDS[kind]
    case.send(fleet, hostile(data, data.draw(case.documents()), case.fixed))
    check_exports(fleet[2])


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_keeps_or_refuses_every_hostile_value(fleet: Fleet, kind: str) -> None:
    """The sweep: every place in a valid document, every value in HOSTILE_VALUES."""
    case = KINDS[kind]
    places = [p for p in leaves(case.fresh()) if not set(p) & set(case.fixed)]
    for path in places:
        for value in HOSTILE_VALUES:
            doc = case.fresh()
            target = doc
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = value
            case.send(fleet, doc)
        check_exports(fleet[2])


def blob_files(hub: RunningHub) -> list[str]:
    return sorted(str(p.relative_to(hub.blobs_dir)) for p in hub.blobs_dir.rglob("*")
                  if p.is_file())


# -- rows stored before the contract was tightened -----------------------------------------------

POISON_TELEMETRY = {  # what the hub acknowledged before, and no export could read back
    "null in a list": {"embedding": [0.5, None]},
    "past 64 bits": {"detections": 1, "class_counts": {"bolt": 2**64}},
    "off the calendar": {"captured_at": "0001-01-01T00:00:00+23:59"},
}


def stored_before_the_fix(db_url: str) -> None:
    """Writes rows as the old hub stored them, straight into its tables."""
    base = json.loads(FrameStats(
        device_id=DEVICE, model_version="m1", frame_id=0, captured_at=datetime(2026, 1, 1,
                                                                                tzinfo=UTC),
        pre_ms=1.0, infer_ms=2.0, post_ms=0.5, detections=0, class_counts={}, uncertain=0,
        brightness=0.5, contrast=0.2, sharpness=10.0, saturation=0.3).model_dump_json())
    engine = make_engine(db_url, busy_timeout_s=5.0)
    with engine.begin() as conn:
        for frame_id, change in enumerate(POISON_TELEMETRY.values(), start=900_001):
            body = {**base, "frame_id": frame_id, **change}
            conn.execute(telemetry.insert().values(
                device_id=DEVICE, frame_id=frame_id, model_version="m1", captured_us=0,
                received_us=0, body=json.dumps(body)))
        conn.execute(samples.insert().values(
            device_id=DEVICE, frame_id=900_100, captured_us=0, received_us=0, uncertainty=0.5,
            blob_key="samples/cam-1/900100-x.jpg", content_type="image/jpeg", sha256="0" * 64,
            size=1, meta=json.dumps({"device_id": DEVICE, "frame_id": 2**64})))
        conn.execute(devices.update().where(devices.c.device_id == DEVICE).values(
            status=json.dumps({"device_id": DEVICE, "frames_seen": 10**30}),
            telemetry_stored=devices.c.telemetry_stored + len(POISON_TELEMETRY),
            samples_stored=devices.c.samples_stored + 1))
    engine.dispose()


def test_rows_the_contract_no_longer_accepts_are_skipped_counted_and_quarantined(
        db_url: str, fleet: tuple[RunningHub, httpx.Client, httpx.Client]) -> None:
    hub, device, admin = fleet
    healthy = {**json.loads(FrameStats(
        device_id=DEVICE, model_version="m1", frame_id=1, captured_at=datetime(2026, 1, 1,
                                                                                tzinfo=UTC),
        pre_ms=1.0, infer_ms=2.0, post_ms=0.5, detections=1, class_counts={"bolt": 1},
        uncertain=0, brightness=0.5, contrast=0.2, sharpness=10.0,
        saturation=0.3).model_dump_json())}
    sent = {"device_id": DEVICE, "sent_at": "2026-01-01T00:00:00Z", "records": [healthy]}
    assert device.post("/v1/telemetry", content=json.dumps(sent),
                       headers={"Content-Type": "application/json"}).status_code == 200
    stored_before_the_fix(db_url)

    for params in ({}, {"device_id": DEVICE}):  # the fleet's export and the device's
        export = admin.get("/v1/admin/telemetry", params=params)
        assert export.status_code == 200, export.text[:300]
        assert (export.headers["Edgeloop-Rows"], export.headers["Edgeloop-Skipped"]) == (
            "1", str(len(POISON_TELEMETRY)))
    listed = admin.get("/v1/admin/samples")
    assert (listed.status_code, listed.json(), listed.headers["Edgeloop-Skipped"]) == (
        200, [], "1")
    with hub.admin() as client:
        assert client.telemetry().attrs["skipped"] == len(POISON_TELEMETRY)
        moved = client.quarantine(DEVICE)
        again = client.quarantine(DEVICE)  # safe to repeat: nothing left to move
    assert moved.quarantined == {"telemetry": len(POISON_TELEMETRY), "sample": 1, "heartbeat": 1}
    assert again.quarantined == {"telemetry": 0, "sample": 0, "heartbeat": 0}
    assert again.checked == {"telemetry": 1, "sample": 0, "heartbeat": 0}
    check_exports(admin)
    shown = admin.get("/v1/admin/devices").json()[0]
    assert (shown["telemetry_stored"], shown["samples_stored"], shown["status"]) == (1, 0, None)
