"""A small typed client of the hub, for the flows, the CLI and the tests; returns contract types.

Needs only httpx and pydantic (pandas for `telemetry`); never imports the server side.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from edge_runtime.contract import (
    ADMIN_PREFIX,
    ASSIGNMENT_PATH,
    HEARTBEAT_PATH,
    RELEASES_PATH,
    SAMPLES_PATH,
    TELEMETRY_PATH,
    TUF_METADATA_PATH,
    TUF_TARGETS_PATH,
    DeviceStatus,
    ReleaseManifest,
    SampleMeta,
    TelemetryBatch,
)
from hub.models import (
    SKIPPED_HEADER,
    ChannelState,
    DeviceRecord,
    HeartbeatTaken,
    NewDeviceToken,
    Quarantined,
    ReleaseRecord,
    SampleStored,
    StoredSample,
    TelemetryStored,
)
from hub.tuf_store import TufMetadataStored

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

DEFAULT_TIMEOUT_S = 30.0
M = TypeVar("M", bound=BaseModel)


TELEMETRY_PAGE_ROWS = 5000  # rows a telemetry window is read in per request


class TelemetryPagingError(ValueError):
    """A telemetry window cannot be paged: more rows than a page share one capture time."""


class HubRequestError(ValueError):
    """The hub refused a request (or could not be reached); `status` 0 means no answer."""

    def __init__(self, status: int, detail: str, method: str = "", path: str = "") -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {detail}" if status
                         else f"{method} {path}: {detail}")
        self.status = status
        self.detail = detail


class HubClient:
    def __init__(self, base_url: str, *, admin_token: str | None = None,
                 device_token: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._admin_token = admin_token
        self._device_token = device_token
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s,
                                  transport=transport, trust_env=False,
                                  headers={"User-Agent": "edgeloop-hub-client"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, token: str | None,
                 **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise HubRequestError(0, f"{type(exc).__name__}: {exc}", method, path) from exc
        if response.status_code >= 400:
            raise HubRequestError(response.status_code, _reason(response), method, path)
        return response

    def _admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._admin_token is None:
            raise HubRequestError(0, "this client has no admin token", method, path)
        return self._request(method, f"{ADMIN_PREFIX}{path}", token=self._admin_token, **kwargs)

    def _device(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._device_token is None:
            raise HubRequestError(0, "this client has no device token", method, path)
        return self._request(method, path, token=self._device_token, **kwargs)

    # -- ops -----------------------------------------------------------------------------------

    def health(self) -> dict[str, str]:
        return self._request("GET", "/healthz", token=None).json()  # type: ignore[no-any-return]

    # -- device side (edge_runtime.outbox.uplink is the production sender) ---------------------

    def post_telemetry(self, batch: TelemetryBatch, *, compress: bool = True) -> TelemetryStored:
        body = batch.model_dump_json().encode()
        headers = {"Content-Type": "application/json"}
        if compress:
            body, headers["Content-Encoding"] = gzip.compress(body, 6), "gzip"
        response = self._device("POST", TELEMETRY_PATH, content=body, headers=headers)
        return TelemetryStored.model_validate_json(response.content)

    def post_sample(self, meta: SampleMeta, image: bytes,
                    filename: str | None = None) -> SampleStored:
        name = filename or f"{meta.device_id}-{meta.frame_id}.jpg"
        response = self._device("POST", SAMPLES_PATH, data={"meta": meta.model_dump_json()},
                                files={"image": (name, image, "image/jpeg")})
        return SampleStored.model_validate_json(response.content)

    def heartbeat(self, status: DeviceStatus) -> HeartbeatTaken:
        response = self._device("POST", HEARTBEAT_PATH, content=status.model_dump_json(),
                                headers={"Content-Type": "application/json"})
        return HeartbeatTaken.model_validate_json(response.content)

    def assignment(self) -> ReleaseManifest | None:
        """The release this device's channel runs, or None when none is assigned."""
        response = self._device("GET", ASSIGNMENT_PATH)
        if response.status_code == 204:
            return None
        return ReleaseManifest.model_validate_json(response.content)

    def download(self, release_id: str, name: str | None = None) -> bytes:
        """A release file's bytes (with name None: the release's model), by either token."""
        path = f"{RELEASES_PATH}/{release_id}/" + ("model" if name is None else f"files/{name}")
        return self._request("GET", path, token=self._reader()).content

    # -- admin: devices ------------------------------------------------------------------------

    def add_device(self, device_id: str, channel: str = "stable") -> NewDeviceToken:
        response = self._admin("POST", "/devices",
                               json={"device_id": device_id, "channel": channel})
        return NewDeviceToken.model_validate_json(response.content)

    def devices(self) -> list[DeviceRecord]:
        return _list(DeviceRecord, self._admin("GET", "/devices"))

    def revoke_device(self, device_id: str) -> DeviceRecord:
        response = self._admin("POST", f"/devices/{device_id}/revoke")
        return DeviceRecord.model_validate_json(response.content)

    def rotate_token(self, device_id: str) -> NewDeviceToken:
        response = self._admin("POST", f"/devices/{device_id}/token")
        return NewDeviceToken.model_validate_json(response.content)

    def set_device_channel(self, device_id: str, channel: str) -> DeviceRecord:
        response = self._admin("PUT", f"/devices/{device_id}/channel", json={"channel": channel})
        return DeviceRecord.model_validate_json(response.content)

    # -- admin: fleet data ---------------------------------------------------------------------

    def telemetry(self, since: datetime | None = None, until: datetime | None = None, *,
                  device_id: str | None = None, classes: Iterable[str] | None = None,
                  limit: int | None = None) -> pd.DataFrame:
        """Records captured in [since, until) as a DataFrame (stats_row columns, count_<class>).

        `frame.attrs["truncated"]` says whether the hub's row limit cut the result short;
        `frame.attrs["skipped"]`, how many stored rows the contract no longer accepts (left out).
        """
        import pandas as pd

        params = _params(since=since, until=until, device_id=device_id, limit=limit,
                         classes=None if classes is None else ",".join(classes))
        response = self._admin("GET", "/telemetry", params=params)
        frame = pd.read_parquet(io.BytesIO(response.content))
        frame.attrs["truncated"] = response.headers.get("Edgeloop-Truncated") == "true"
        frame.attrs["skipped"] = int(response.headers.get(SKIPPED_HEADER, "0"))
        return frame

    def telemetry_window(self, since: datetime, until: datetime | None = None, *,
                         device_id: str | None = None, classes: Iterable[str] | None = None,
                         page_rows: int = TELEMETRY_PAGE_ROWS) -> pd.DataFrame:
        """Every record captured in [since, until), however many: `telemetry` page after page
        (the hub answers oldest first up to its row limit), each record once, count_<class>
        columns 0 where a page had none. The drift check and the canary read through this."""
        import pandas as pd

        pages, start = [], since
        while True:
            page = self.telemetry(start, until, device_id=device_id, classes=classes,
                                  limit=page_rows)
            pages.append(page)
            if not page.attrs.get("truncated") or page.empty:
                break
            last = page["captured_at"].iloc[-1].to_pydatetime()
            if last <= start:  # more than a page of rows share one timestamp: cannot page on
                raise TelemetryPagingError(f"over {page_rows} records captured at {last}"
                                           + (f" by device {device_id}" if device_id else ""))
            start = last  # [last, ...) again: the rows at `last` come twice, dropped below
        pages = [p for p in pages if not p.empty] or pages[:1]  # empty pages have no dtypes
        frame = pd.concat(pages, ignore_index=True)
        frame = frame.drop_duplicates(subset=["device_id", "frame_id"], keep="first")
        counts = [c for c in frame.columns if c.startswith("count_")]
        frame[counts] = frame[counts].fillna(0).astype("int64")
        return frame.reset_index(drop=True)

    def quarantine(self, device_id: str) -> Quarantined:
        """Moves the device's stored rows that the contract no longer accepts aside."""
        response = self._admin("POST", f"/devices/{device_id}/quarantine")
        return Quarantined.model_validate_json(response.content)

    def samples(self, since: datetime | None = None, until: datetime | None = None, *,
                device_id: str | None = None, limit: int = 1000) -> list[StoredSample]:
        params = _params(since=since, until=until, device_id=device_id, limit=limit)
        return _list(StoredSample, self._admin("GET", "/samples", params=params))

    def sample_image(self, record_id: str) -> bytes:
        """The image of a stored sample, by its record id (`device_id/frame_id`)."""
        device_id, _, frame_id = record_id.partition("/")
        return self._admin("GET", f"/samples/{device_id}/{frame_id}/image").content

    # -- admin: releases and channels ----------------------------------------------------------

    def create_release(self, manifest: ReleaseManifest | str,
                       files: Mapping[str, Path | bytes]) -> ReleaseManifest:
        """Publishes a release: the manifest (model or its exact JSON text) and its files."""
        text = manifest if isinstance(manifest, str) else manifest.model_dump_json()
        parts = [("files", (name, data if isinstance(data, bytes) else Path(data).read_bytes(),
                            "application/octet-stream")) for name, data in files.items()]
        response = self._admin("POST", "/releases", data={"manifest": text}, files=parts)
        return ReleaseManifest.model_validate_json(response.content)

    def releases(self) -> list[ReleaseRecord]:
        return _list(ReleaseRecord, self._admin("GET", "/releases"))

    def release(self, release_id: str) -> ReleaseManifest:
        return ReleaseManifest.model_validate_json(
            self._admin("GET", f"/releases/{release_id}").content)

    def channels(self) -> list[ChannelState]:
        return _list(ChannelState, self._admin("GET", "/channels"))

    def channel(self, channel: str) -> ChannelState:
        return ChannelState.model_validate_json(self._admin("GET", f"/channels/{channel}").content)

    def assign(self, channel: str, release_id: str) -> ChannelState:
        response = self._admin("PUT", f"/channels/{channel}", json={"release_id": release_id})
        return ChannelState.model_validate_json(response.content)

    def promote(self, channel: str, from_channel: str) -> ChannelState:
        response = self._admin("POST", f"/channels/{channel}/promote",
                               json={"from_channel": from_channel})
        return ChannelState.model_validate_json(response.content)

    def rollback(self, channel: str) -> ChannelState:
        return ChannelState.model_validate_json(
            self._admin("POST", f"/channels/{channel}/rollback").content)

    # -- TUF: signed metadata (the release flow signs, the hub serves, devices verify) ---------

    def put_tuf_metadata(self, name: str, data: bytes) -> TufMetadataStored:
        """Uploads one signed metadata file (root.json, <N>.root.json, targets.json, ...)."""
        response = self._admin("PUT", f"/tuf/metadata/{name}", content=data,
                               headers={"Content-Type": "application/json"})
        return TufMetadataStored.model_validate_json(response.content)

    def publish_tuf_metadata(self, files: Iterable[Path]) -> list[TufMetadataStored]:
        """Uploads metadata files in the order given (root chain, targets, snapshot, timestamp:
        a device never sees a timestamp naming a snapshot the hub does not have yet)."""
        return [self.put_tuf_metadata(path.name, path.read_bytes()) for path in files]

    def tuf_metadata(self, name: str) -> bytes | None:
        """A served metadata file's bytes (device or admin token); None when not published."""
        try:
            return self._request("GET", f"{TUF_METADATA_PATH}/{name}", token=self._reader()).content
        except HubRequestError as exc:
            if exc.status == 404:
                return None
            raise

    def tuf_target(self, target_path: str) -> bytes:
        """A TUF target's bytes, `<release_id>/<name>` (device or admin token)."""
        path = f"{TUF_TARGETS_PATH}/{target_path}"
        return self._request("GET", path, token=self._reader()).content

    def _reader(self) -> str | None:
        return self._device_token or self._admin_token


def _list(kind: type[M], response: httpx.Response) -> list[M]:
    return TypeAdapter(list[kind]).validate_json(response.content)  # type: ignore[valid-type]


def _params(**values: Any) -> dict[str, str]:
    return {k: v.isoformat() if isinstance(v, datetime) else str(v)
            for k, v in values.items() if v is not None}


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail if detail is not None else response.text[:300] or response.reason_phrase)
