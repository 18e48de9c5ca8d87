"""The device API (bearer device token): telemetry, samples, heartbeat, assignment, artefacts,
and the release flow's signed TUF metadata and targets.

Matches `edge_runtime.outbox.uplink`'s wire format. Bodies are read by hand, not by FastAPI, so that
limits apply while they stream and the contract validates each batch once, straight from JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from edge_runtime.contract import (
    ASSIGNMENT_PATH,
    HEARTBEAT_PATH,
    RELEASES_PATH,
    SAMPLES_PATH,
    TELEMETRY_PATH,
    TUF_METADATA_PATH,
    TUF_TARGETS_PATH,
    DeviceStatus,
)
from hub import registry, releases, samples, telemetry, tuf_store
from hub.auth import bearer_token
from hub.blobs import blob_chunks
from hub.errors import Invalid, NotFound, UnsupportedMediaType, invalid
from hub.limits import VALUE_BYTES, check_json_values, decode_body
from hub.models import HeartbeatTaken, SampleStored, TelemetryStored
from hub.registry import DeviceIdentity
from hub.state import Hub, hub_of

router = APIRouter(tags=["device"])
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # the contract's Name, for path parameters
PathName = Annotated[str, Path(pattern=NAME_PATTERN)]
NO_ASSIGNMENT_HEADER = "Edgeloop-Reason"
# What each refusal means, and what edge_runtime.outbox.uplink does about it.
REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or unknown token: the device keeps its records, backs off"},
    403: {"description": "revoked device, or a write as another device: kept, backs off"},
    404: {"description": "no such release or file, or a release never on the device's channel"},
    413: {"description": "body, decompressed body or image over its limit: the device splits"},
    415: {"description": "unsupported Content-Type, Content-Encoding or image type: dropped"},
    422: {"description": "schema-invalid records, the offending fields named: dropped"},
    503: {"description": "database or blob storage busy or down: kept, retried"},
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: REFUSALS[code] for code in codes}


def body_doc(model: str, media_type: str = "application/json") -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        media_type: {"schema": {"$ref": f"#/components/schemas/{model}"}}}}}


def multipart_doc(fields: dict[str, str], files: dict[str, str]) -> dict[str, Any]:
    properties: dict[str, Any] = {n: {"type": "string", "description": d}
                                  for n, d in fields.items()}
    properties |= {n: {"type": "array", "items": {"type": "string", "format": "binary"},
                       "description": d} for n, d in files.items()}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": [*fields, *files], "properties": properties}}}}}


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code, media_type="application/json")


async def authenticated_device(hub: Hub, request: Request) -> DeviceIdentity:
    token = bearer_token(request.headers.get("authorization"))
    return await run_in_threadpool(registry.authenticate, hub.db, token)


def require_media_type(request: Request, expected: str) -> None:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != expected:
        raise UnsupportedMediaType(f"Content-Type must be {expected}, "
                                   f"not {content_type[:60]!r}")


@router.post(TELEMETRY_PATH, response_model=TelemetryStored,
             openapi_extra=body_doc("TelemetryBatch"),
             responses=refusals(401, 403, 413, 415, 422, 503))
async def post_telemetry(request: Request) -> Response:
    """A TelemetryBatch as JSON, gzip-compressed or not. Replays are stored once."""
    hub = hub_of(request)
    device = await authenticated_device(hub, request)
    require_media_type(request, "application/json")
    body = await request.body()  # capped by BodyLimit while it streams in
    encoding = request.headers.get("content-encoding")
    limits = hub.settings.limits

    def inflate() -> tuple[bytes, int]:
        # Bounded before the parser builds its tree: bytes once inflated, then JSON values.
        data = decode_body(body, encoding, limits.telemetry_json_bytes)
        return data, check_json_values(data, limits.telemetry_json_values, "telemetry batch")

    # Parse memory, process-wide, in units of what one JSON value costs: while inflating, the
    # most a body can grow to (the output and zlib's working copy); then its values and bytes.
    async with hub.telemetry_values.hold(2 * limits.telemetry_json_bytes // VALUE_BYTES) as share:
        data, values = await run_in_threadpool(inflate)
        await share.shrink(values + len(data) // VALUE_BYTES)
        stored = await run_in_threadpool(telemetry.ingest_telemetry, hub.db, device, data)
    return json_response(stored)


@router.post(SAMPLES_PATH, response_model=SampleStored,
             openapi_extra=multipart_doc({"meta": "SampleMeta JSON"},
                                         {"image": "JPEG or PNG, <device_id>-<frame_id>.jpg"}),
             responses=refusals(401, 403, 413, 415, 422, 503))
async def post_sample(request: Request) -> Response:
    """multipart/form-data: text field `meta` (SampleMeta JSON) and file field `image`."""
    hub = hub_of(request)
    device = await authenticated_device(hub, request)
    require_media_type(request, "multipart/form-data")
    limits = hub.settings.limits
    async with request.form(max_files=1, max_fields=1,
                            max_part_size=limits.json_body_bytes) as form:
        meta_field, image = form.get("meta"), form.get("image")
        if not isinstance(meta_field, str):
            raise Invalid("the text field 'meta' (SampleMeta JSON) is missing")
        if not isinstance(image, UploadFile):
            raise Invalid("the file field 'image' is missing")
        meta = samples.parse_meta(meta_field)
        data = await image.read()
    stored = await run_in_threadpool(samples.ingest_sample, hub.db, hub.blobs, device, meta,
                                     data, limits, hub.decode_slots)
    return json_response(stored)


@router.post(HEARTBEAT_PATH, response_model=HeartbeatTaken, openapi_extra=body_doc("DeviceStatus"),
             responses=refusals(401, 403, 413, 415, 422, 503))
async def post_heartbeat(request: Request) -> Response:
    """The device's DeviceStatus: what it runs, its spool depth and drop counters."""
    hub = hub_of(request)
    device = await authenticated_device(hub, request)
    require_media_type(request, "application/json")
    try:
        status = DeviceStatus.model_validate_json(await request.body(), strict=True)
    except ValidationError as exc:
        raise invalid(exc, "device status") from None
    taken = await run_in_threadpool(registry.record_heartbeat, hub.db, device, status)
    return json_response(taken)


@router.get(ASSIGNMENT_PATH, responses={
    200: {"description": "the ReleaseManifest this device's channel runs",
          "content": {"application/json": {"schema": {
              "$ref": "#/components/schemas/ReleaseManifest"}}}},
    204: {"description": f"no release is assigned (see the {NO_ASSIGNMENT_HEADER} header)"},
    **refusals(401, 403)})
async def get_assignment(request: Request) -> Response:
    hub = hub_of(request)
    device = await authenticated_device(hub, request)
    text = await run_in_threadpool(releases.assigned_manifest, hub.db, device.channel)
    if text is None:
        return Response(status_code=204, headers={
            NO_ASSIGNMENT_HEADER: f"no release is assigned to channel {device.channel}"})
    # Verbatim as published: a signature over the manifest's bytes still verifies.
    return Response(text, media_type="application/json")


@router.get(RELEASES_PATH + "/{release_id}/model", response_class=StreamingResponse,
            responses=refusals(401, 403, 404, 503))
async def get_model(request: Request, release_id: PathName) -> StreamingResponse:
    """The release's model file (its first .onnx file); device or admin token."""
    return await _artefact(request, release_id, None)


@router.get(RELEASES_PATH + "/{release_id}/files/{name}", response_class=StreamingResponse,
            responses=refusals(401, 403, 404, 503))
async def get_file(request: Request, release_id: PathName, name: PathName) -> StreamingResponse:
    """One file of a release, by its name in the manifest; device or admin token."""
    return await _artefact(request, release_id, name)


@router.get(TUF_METADATA_PATH + "/{name}", responses={
    200: {"description": "the signed TUF metadata file, verbatim as the release flow signed it",
          "content": {"application/json": {}}},
    **refusals(401, 403, 404, 503)})
async def get_tuf_metadata(request: Request, name: str) -> Response:
    """root.json, <N>.root.json, timestamp.json, snapshot.json or targets.json (the metadata
    base URL of tuf.ngclient's Updater); 404 when not published, e.g. the next root version."""
    hub, _ = await authenticated_reader(request)  # signed and small: every device reads it
    data = await run_in_threadpool(tuf_store.get_metadata, hub.blobs, name)
    return Response(data, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get(TUF_TARGETS_PATH + "/{release_id}/{name}", response_class=StreamingResponse,
            responses=refusals(401, 403, 404, 503))
async def get_tuf_target(request: Request, release_id: PathName,
                         name: PathName) -> StreamingResponse:
    """The TUF target `<release_id>/<name>` (the target base URL of tuf.ngclient's Updater):
    the bytes of the release's file, as uploaded with the release."""
    return await _artefact(request, release_id, name)


async def authenticated_reader(request: Request) -> tuple[Hub, DeviceIdentity | None]:
    """The hub and the calling device (None for the admin), once the caller showed the admin
    token or a live device token."""
    hub = hub_of(request)
    token = bearer_token(request.headers.get("authorization"))
    if hub.admin.is_admin(token):
        return hub, None
    return hub, await run_in_threadpool(registry.authenticate, hub.db, token)


async def _artefact(request: Request, release_id: str, name: str | None) -> StreamingResponse:
    """A release's file, to the admin, or to a device whose channel ever ran the release (a 404
    otherwise, as for a release that does not exist: other channels' releases stay unnamed)."""
    hub, device = await authenticated_reader(request)
    if device is not None and not await run_in_threadpool(
            releases.ever_on_channel, hub.db, device.channel, release_id):
        raise NotFound(f"no release {release_id!r}")
    file = await run_in_threadpool(releases.artefact, hub.db, release_id, name)
    # Opened before the answer starts: a missing blob is a 503, not a response cut short.
    source = await run_in_threadpool(hub.blobs.open, releases.artefact_key(file))
    return StreamingResponse(blob_chunks(source), media_type="application/octet-stream",
                             headers={"Content-Length": str(file.size),
                                      "ETag": f'"{file.sha256}"',
                                      "Content-Disposition": f'attachment; filename="{file.name}"'})
