"""The hub's settings, read once through the layered loader (`configs.loader`) and passed down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from configs.loader import SettingsError as LoaderError
from configs.loader import build, layered

KIB = 1024
MIB = 1024 * KIB
MIN_ADMIN_TOKEN_CHARS = 16  # a guessable admin token would hand out the whole fleet


class SettingsError(LoaderError):
    """A setting has a value the hub cannot run with."""


@dataclass(frozen=True)
class HubLimits:
    """What one request may carry (anything over is refused with 413 before it is read whole),
    and how long a connection may idle: a request's head over `head_bytes` is answered 400, a
    body that stalls for `body_idle_s` 408, an idle keep-alive connection closed after
    `keep_alive_s`."""

    telemetry_body_bytes: int = 16 * MIB  # as sent (gzip or plain JSON)
    telemetry_json_bytes: int = 32 * MIB  # after gunzip: 5000 records with 64-d embeddings fit
    sample_image_bytes: int = 16 * MIB
    image_side_px: int = 16384  # the contract's own bound on SampleMeta.width/height
    image_pixels: int = 40_000_000  # an 8K frame is 33 MP; decoding more is an attack
    # What one decode may allocate (hub.images.ImageHeader.decoded_bytes). An 8-bit RGB 8K
    # frame is 7680x4320x3 = 95 MiB, and as BGRA (palette PNG) 127 MiB: both fit. A 16-bit RGBA
    # PNG near the pixel cap (40 MP x 8 bytes = 305 MiB) does not, nor does a progressive 8K JPEG
    # (95 MiB of pixels + 95 MiB of buffered coefficients). OpenCV holds a second working copy
    # while it converts (measured: peak about 2x), so one decode costs up to 256 MiB.
    image_decoded_bytes: int = 128 * MIB
    # Decodes at once per hub process; more wait. Decoding is CPU-bound on a few cores, so more
    # would add memory, not throughput: the peak is slots x 2 x image_decoded_bytes.
    image_decode_slots: int = 2
    # JSON values (hub.limits.count_json_values) one telemetry body may hold. Parsing costs up to
    # about 110 bytes a counted value for the tree (measured: 29 MiB of [] took 1.45 GB, a
    # limit-sized body of the worst shape 56 MiB) and ~200 with the records built (5000 records
    # of 24 values: 23 MiB), so a cap on bytes alone does not bound memory. 5000 records of 24
    # fields and a 64-d embedding are 440k values and fit; a bigger batch is answered 413 and
    # the device splits it.
    telemetry_json_values: int = 524_288
    # JSON values being parsed or stored at once per process, over all telemetry requests; a
    # request waits for its share (its values, plus its inflated bytes at hub.limits.VALUE_BYTES
    # a value; while it inflates, the most it could inflate to). 500-record batches (12k values
    # each) never wait in practice. Peak: this x VALUE_BYTES (220 MiB), plus the bodies as sent.
    telemetry_values_in_flight: int = 2 * 524_288
    json_body_bytes: int = 256 * 1024  # heartbeats and admin requests
    release_body_bytes: int = 2048 * MIB  # manifest and all artefacts of one release
    query_rows: int = 500_000  # telemetry rows one query may return (about 1 GB at the peak)
    head_bytes: int = 16 * KIB  # request line and headers: a device sends about 300 bytes
    body_idle_s: float = 30.0  # longest wait for the next piece of a body: then 408
    keep_alive_s: int = 5  # an idle connection is closed after this (uvicorn's own default)

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise SettingsError(f"limit {f.name}={getattr(self, f.name)} must be positive")


@dataclass(frozen=True)
class HubSettings:
    host: str = "127.0.0.1"
    port: int = 8700
    db_url: str = "sqlite:///var/hub/hub.sqlite"
    blobs_url: str = "var/hub/blobs"  # a folder, or any fsspec URL (s3://bucket/prefix, ...)
    admin_token: str | None = field(default=None, repr=False)
    hub_url: str = "http://127.0.0.1:8700"  # where the CLI's admin commands find a hub
    access_log: bool = False  # one line per request is noise at fleet rates
    db_busy_timeout_s: float = 5.0  # then the request is answered 503 and the device retries
    workers: int = 1  # hub processes sharing the port (each takes about one core under load)
    limits: HubLimits = HubLimits()

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port={self.port} must be in 0..65535")
        if not 1 <= self.workers <= 64:
            raise SettingsError(f"workers={self.workers} must be in 1..64")
        if self.db_busy_timeout_s <= 0:
            raise SettingsError(f"db_busy_timeout_s={self.db_busy_timeout_s} must be positive")
        if self.admin_token is not None and (
            len(self.admin_token) < MIN_ADMIN_TOKEN_CHARS
            or any(c.isspace() for c in self.admin_token)
        ):
            raise SettingsError(f"the admin token must be at least {MIN_ADMIN_TOKEN_CHARS} "
                                "characters without whitespace")

    def require_admin_token(self) -> str:
        if self.admin_token is None:
            raise SettingsError("no admin token: set EDGELOOP_ADMIN_TOKEN or pass --admin-token")
        return self.admin_token


# environment variable -> setting (parsed to the setting's type by the loader)
ENVIRONMENT: dict[str, str] = {
    "EDGELOOP_HUB_HOST": "host",
    "EDGELOOP_HUB_PORT": "port",
    "EDGELOOP_HUB_DB": "db_url",
    "EDGELOOP_HUB_BLOBS": "blobs_url",
    "EDGELOOP_ADMIN_TOKEN": "admin_token",
    "EDGELOOP_HUB_URL": "hub_url",
    "EDGELOOP_HUB_ACCESS_LOG": "access_log",
    "EDGELOOP_HUB_DB_BUSY_TIMEOUT_S": "db_busy_timeout_s",
    "EDGELOOP_HUB_WORKERS": "workers",
    "EDGELOOP_HUB_HEAD_BYTES": "limits.head_bytes",
    "EDGELOOP_HUB_BODY_IDLE_S": "limits.body_idle_s",
    "EDGELOOP_HUB_KEEP_ALIVE_S": "limits.keep_alive_s",
}


def load_settings(environ: Mapping[str, str], *, project: Path | None = None,
                  config: Path | None = None, **flags: Any) -> HubSettings:
    """Defaults < packaged `hub.yaml` < the project's `configs/hub.yaml` and `edgeloop.yaml`
    (`hub:`) < `config` < the environment < flags that were given (not None)."""
    known = {f.name for f in fields(HubSettings)}
    unknown = set(flags) - known
    if unknown:
        raise SettingsError(f"unknown hub settings: {sorted(unknown)}")
    merged = layered("hub", project=project, config=config, environ=environ, env=ENVIRONMENT,
                     flags=flags, error=SettingsError)
    return build(HubSettings, merged, error=SettingsError)
