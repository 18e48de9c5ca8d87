"""The admin API (admin bearer token): devices, fleet telemetry and samples, releases, channels,
and the signed TUF metadata the release flow publishes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from edge_runtime.contract import ADMIN_PREFIX, INT64_MAX
from hub import quarantine, registry, releases, samples, telemetry, tuf_store
from hub.api_device import (
    NAME_PATTERN,
    PathName,
    json_response,
    multipart_doc,
    refusals,
    require_media_type,
)
from hub.blobs import blob_chunks
from hub.errors import Invalid
from hub.models import (
    SKIPPED_HEADER,
    ChannelChange,
    ChannelPromote,
    ChannelState,
    DeviceCreate,
    DeviceRecord,
    NewDeviceToken,
    Quarantined,
    ReleaseAssign,
    ReleaseRecord,
    StoredSample,
)
from hub.state import hub_of


def require_admin(request: Request) -> None:
    hub_of(request).admin.check(request.headers.get("authorization"))


router = APIRouter(prefix=ADMIN_PREFIX, tags=["admin"], dependencies=[Depends(require_admin)],
                   responses={401: {"description": "the admin token is missing or wrong"}})
Since = Annotated[datetime | None, Query(description="inclusive, ISO 8601 with a zone")]
Until = Annotated[datetime | None, Query(description="exclusive, ISO 8601 with a zone")]
# A device id, as the contract spells it: no NUL or other bytes that PostgreSQL text refuses.
DeviceFilter = Annotated[str | None, Query(pattern=NAME_PATTERN)]
MAX_SAMPLES_LISTED = 10_000


def _aware(*moments: datetime | None) -> None:
    for moment in moments:
        if moment is not None and moment.tzinfo is None:
            raise Invalid(f"time {moment.isoformat()} needs a zone (e.g. +00:00 or Z)")


def _list_response(kind: type[BaseModel], items: Sequence[BaseModel]) -> Response:
    adapter: TypeAdapter[Any] = TypeAdapter(list[kind])  # type: ignore[valid-type]
    return Response(adapter.dump_json(list(items)), media_type="application/json")


# -- devices -------------------------------------------------------------------------------------


@router.get("/devices", response_model=list[DeviceRecord])
async def list_devices(request: Request) -> Response:
    found = await run_in_threadpool(registry.list_devices, hub_of(request).db)
    return _list_response(DeviceRecord, found)


@router.post("/devices", status_code=201, response_model=NewDeviceToken,
             responses={409: {"description": "the device exists"}})
async def add_device(request: Request, new: DeviceCreate) -> Response:
    """Registers a device; the answer holds its token, which the hub never shows again."""
    token = await run_in_threadpool(registry.add_device, hub_of(request).db, new.device_id,
                                    new.channel)
    return json_response(token, 201)


@router.post("/devices/{device_id}/revoke", response_model=DeviceRecord)
async def revoke_device(request: Request, device_id: PathName) -> Response:
    return json_response(await run_in_threadpool(registry.revoke_device, hub_of(request).db,
                                                 device_id))


@router.post("/devices/{device_id}/token", response_model=NewDeviceToken)
async def rotate_token(request: Request, device_id: PathName) -> Response:
    """A new token for the device (the old one stops working); also lifts a revocation."""
    return json_response(await run_in_threadpool(registry.rotate_token, hub_of(request).db,
                                                 device_id))


@router.post("/devices/{device_id}/quarantine", response_model=Quarantined)
async def quarantine_device(request: Request, device_id: PathName) -> Response:
    """Moves the device's stored rows that the contract no longer accepts (telemetry, samples,
    its heartbeat) into the quarantine table, as they were, with the reason; the exports left
    them out already (`Edgeloop-Skipped`). Safe to repeat."""
    return json_response(await run_in_threadpool(quarantine.quarantine_device,
                                                 hub_of(request).db, device_id))


@router.put("/devices/{device_id}/channel", response_model=DeviceRecord)
async def set_channel(request: Request, device_id: PathName, change: ChannelChange) -> Response:
    return json_response(await run_in_threadpool(registry.set_channel, hub_of(request).db,
                                                 device_id, change.channel))


# -- fleet data ----------------------------------------------------------------------------------


@router.get("/telemetry", response_class=Response, responses={200: {
    "description": "Parquet: one row per record, flattened like edge_runtime.telemetry.stats_row",
    "content": {telemetry.PARQUET_MEDIA_TYPE: {}}}})
async def query_telemetry(
    request: Request, since: Since = None, until: Until = None,
    device_id: DeviceFilter = None,
    classes: Annotated[str | None, Query(description="comma-separated count_<class> columns; "
                                         "default: every class seen")] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    _aware(since, until)
    hub = hub_of(request)
    cap = min(limit or hub.settings.limits.query_rows, hub.settings.limits.query_rows)
    # Each class once: a repeated name would make two columns of one name, which Parquet refuses.
    names = None if classes is None else tuple(dict.fromkeys(c for c in classes.split(",") if c))
    table = await run_in_threadpool(
        lambda: telemetry.query_telemetry(hub.db, since=since, until=until, device_id=device_id,
                                          classes=names, limit=cap))
    return Response(table.parquet, media_type=telemetry.PARQUET_MEDIA_TYPE,
                    headers={"Edgeloop-Rows": str(table.rows),
                             "Edgeloop-Truncated": "true" if table.truncated else "false",
                             SKIPPED_HEADER: str(table.skipped),
                             "Edgeloop-Classes-Left-Out": str(table.classes_left_out)})


@router.get("/samples", response_model=list[StoredSample])
async def list_samples(
    request: Request, since: Since = None, until: Until = None,
    device_id: DeviceFilter = None,
    limit: Annotated[int, Query(ge=1, le=MAX_SAMPLES_LISTED)] = 1000,
) -> Response:
    _aware(since, until)
    db = hub_of(request).db
    found, skipped = await run_in_threadpool(
        lambda: samples.list_samples(db, since=since, until=until, device_id=device_id,
                                     limit=limit))
    response = _list_response(StoredSample, found)
    response.headers[SKIPPED_HEADER] = str(skipped)
    return response


@router.get("/samples/{device_id}/{frame_id}/image", response_class=StreamingResponse)
async def sample_image(request: Request, device_id: PathName,
                       frame_id: Annotated[int, Path(ge=0, le=INT64_MAX)]) -> StreamingResponse:
    hub = hub_of(request)
    key, content_type, size = await run_in_threadpool(samples.sample_image, hub.db, device_id,
                                                      frame_id)
    source = await run_in_threadpool(hub.blobs.open, key)
    return StreamingResponse(blob_chunks(source), media_type=content_type,
                             headers={"Content-Length": str(size)})


# -- releases and channels -----------------------------------------------------------------------


@router.post("/releases", status_code=201, openapi_extra=multipart_doc(
                 {"manifest": "ReleaseManifest JSON"}, {"files": "one per manifest file"}),
             responses={409: {"description": "the id exists or the version does not go up"},
                        **refusals(413, 415, 422)})
async def create_release(request: Request) -> Response:
    """multipart/form-data: text field `manifest` (ReleaseManifest JSON) and one file field
    `files` per artefact, named as in the manifest; each is checked against its sha256 and size."""
    require_media_type(request, "multipart/form-data")
    hub = hub_of(request)
    async with request.form(max_files=16, max_fields=1,
                            max_part_size=hub.settings.limits.json_body_bytes) as form:
        manifest = form.get("manifest")
        if not isinstance(manifest, str):
            raise Invalid("the text field 'manifest' (ReleaseManifest JSON) is missing")
        uploads = [releases.Upload(str(f.filename or ""), f.file)
                   for f in form.getlist("files") if isinstance(f, UploadFile)]
        created = await run_in_threadpool(releases.create_release, hub.db, hub.blobs, manifest,
                                          uploads)
    return Response(created.model_dump_json(), 201, media_type="application/json")


@router.get("/releases", response_model=list[ReleaseRecord])
async def list_releases(request: Request) -> Response:
    found = await run_in_threadpool(releases.list_releases, hub_of(request).db)
    return _list_response(ReleaseRecord, found)


@router.get("/releases/{release_id}")
async def get_release(request: Request, release_id: PathName) -> Response:
    """The manifest, verbatim as it was published."""
    text = await run_in_threadpool(releases.manifest_text, hub_of(request).db, release_id)
    return Response(text, media_type="application/json")


@router.put("/tuf/metadata/{name}", response_model=tuf_store.TufMetadataStored,
            responses={409: {"description": "the version goes backwards, or is served already "
                                            "with other content"},
                       422: {"description": "not a TUF metadata file name the hub serves, or "
                                            "not TUF metadata of that role and version"},
                       **refusals(413, 415)})
async def put_tuf_metadata(request: Request, name: str) -> Response:
    """A signed TUF metadata file (JSON, as the release flow wrote it), served verbatim to
    devices from `GET /v1/tuf/metadata/{name}`. Upload new root versions first, then targets,
    snapshot and timestamp."""
    require_media_type(request, "application/json")
    hub = hub_of(request)
    body = await request.body()  # capped by BodyLimit while it streams in
    stored = await run_in_threadpool(tuf_store.put_metadata, hub.db, hub.blobs, name, body)
    return json_response(stored)


@router.get("/channels", response_model=list[ChannelState])
async def list_channels(request: Request) -> Response:
    found = await run_in_threadpool(releases.list_channels, hub_of(request).db)
    return _list_response(ChannelState, found)


@router.get("/channels/{channel}", response_model=ChannelState)
async def get_channel(request: Request, channel: PathName) -> Response:
    return json_response(await run_in_threadpool(releases.channel_state, hub_of(request).db,
                                                 channel))


@router.put("/channels/{channel}", response_model=ChannelState)
async def assign_channel(request: Request, channel: PathName, body: ReleaseAssign) -> Response:
    return json_response(await run_in_threadpool(releases.assign, hub_of(request).db, channel,
                                                 body.release_id))


@router.post("/channels/{channel}/promote", response_model=ChannelState,
             responses={409: {"description": "`from_channel` runs no release"}})
async def promote_channel(request: Request, channel: PathName, body: ChannelPromote) -> Response:
    """The channel takes the release that `from_channel` runs now (canary -> stable)."""
    return json_response(await run_in_threadpool(releases.promote, hub_of(request).db, channel,
                                                 body.from_channel))


@router.post("/channels/{channel}/rollback", response_model=ChannelState,
             responses={409: {"description": "nothing earlier to roll back to"}})
async def rollback_channel(request: Request, channel: PathName) -> Response:
    return json_response(await run_in_threadpool(releases.rollback, hub_of(request).db, channel))
