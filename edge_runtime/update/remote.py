"""What the updater asks the hub: its assignment (plain HTTP with the device token), and through TUF
the verified metadata, a release's signed manifest and files, and their download.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Targets
from tuf.ngclient import Updater as TufUpdater

from edge_runtime.contract import (
    ASSIGNMENT_PATH,
    TARGET_MANIFEST_FIELD,
    TUF_METADATA_PATH,
    TUF_TARGETS_PATH,
    ReleaseManifest,
)
from edge_runtime.update.config import UpdaterConfig, UpdaterError
from edge_runtime.update.fetch import FETCH_CHUNK, TokenFetcher, refusal_of
from edge_runtime.update.policy import (
    MODEL_FILE,
    Phase,
    Refusal,
    ReleaseUnavailable,
    SignedFile,
    VerificationFailed,
)

METADATA_PATH = TUF_METADATA_PATH + "/"
TARGETS_PATH = TUF_TARGETS_PATH + "/"
TRUSTED_ROOT = "trusted_root.json"


def hub_client(config: UpdaterConfig, transport: httpx.BaseTransport | None) -> httpx.Client:
    """An HTTP client for the hub that sends the device token."""
    timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
    return httpx.Client(base_url=config.hub_url, timeout=timeout,
                        transport=transport,
                        headers={"Authorization": f"Bearer {config.token}"})


def fetch_assignment(client: httpx.Client) -> str | None:
    """The release id the hub assigns (see `Updater.poll_assignment`), or None."""
    try:
        response = client.get(ASSIGNMENT_PATH)
    except httpx.HTTPError as error:
        raise ReleaseUnavailable(f"{ASSIGNMENT_PATH}: {type(error).__name__}: {error}"
                                 ) from error
    if response.status_code == 204:
        return None
    if response.status_code != 200:
        raise ReleaseUnavailable(f"{ASSIGNMENT_PATH}: HTTP {response.status_code}: "
                                 f"{response.text[:200]}")
    try:
        return ReleaseManifest.model_validate_json(response.content).release_id
    except ValidationError as error:
        raise ReleaseUnavailable(f"{ASSIGNMENT_PATH}: not a release manifest: "
                                 f"{str(error).splitlines()[0]}") from error


def open_tuf(client: httpx.Client, hub_url: str, tuf_dir: Path, download_dir: Path,
             pause: Callable[[Phase], None]) -> TufUpdater:
    """TUF's client over the hub, from the trusted root and the metadata verified so far."""
    metadata_dir = tuf_dir / "metadata"
    metadata_dir.mkdir(parents=True, exist_ok=True)
    try:
        bootstrap = (tuf_dir / TRUSTED_ROOT).read_bytes()
    except FileNotFoundError as error:
        raise UpdaterError(f"no trusted root in {tuf_dir}: provision the device"
                           ) from error
    base = hub_url.rstrip("/")

    def on_chunk(url: str, received: int) -> None:
        if url.startswith(base + TARGETS_PATH) and received <= FETCH_CHUNK:
            pause(Phase.DOWNLOADING)

    return TufUpdater(str(metadata_dir), base + METADATA_PATH,
                      target_dir=str(download_dir), target_base_url=base + TARGETS_PATH,
                      fetcher=TokenFetcher(client, on_chunk), bootstrap=bootstrap)


def signed_release(tuf: TufUpdater, tuf_dir: Path, release_id: str
                   ) -> tuple[ReleaseManifest, dict[str, SignedFile]]:
    """The release's manifest and signed files, from freshly verified TUF metadata."""
    try:
        tuf.refresh()
        info = tuf.get_targetinfo(f"{release_id}/{MODEL_FILE}")
    except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as error:
        raise refusal_of(error, "signed metadata") from error
    if info is None:
        raise VerificationFailed(f"{release_id}/{MODEL_FILE} is not a signed target",
                                 Refusal.NOT_A_TARGET)
    manifest = manifest_of(info.custom, release_id)
    # TUF persists targets.json only once verified: it lists every signed file.
    targets = Metadata[Targets].from_file(str(tuf_dir / "metadata" / "targets.json"))
    signed: dict[str, SignedFile] = {}
    for path, target in targets.signed.targets.items():
        folder, _, name = path.partition("/")
        if folder != release_id:
            continue
        if manifest_of(target.custom, release_id) != manifest:
            raise VerificationFailed(f"{path} is signed with another manifest",
                                     Refusal.MANIFEST)
        signed[name] = SignedFile(name, target.hashes.get("sha256", ""), target.length)
    return manifest, signed


def download_release(tuf: TufUpdater, download_dir: Path, manifest: ReleaseManifest
                     ) -> dict[str, Path]:
    """The release's files, each checked against its signed hash and length as it arrives."""
    folder = download_dir / manifest.release_id
    shutil.rmtree(download_dir, ignore_errors=True)
    folder.mkdir(parents=True)
    files: dict[str, Path] = {}
    for entry in manifest.files:
        path = f"{manifest.release_id}/{entry.name}"
        try:
            info = tuf.get_targetinfo(path)
            if info is None:
                raise VerificationFailed(f"{path} is not a signed target",
                                         Refusal.MISSING_FILE)
            files[entry.name] = Path(tuf.download_target(info, str(folder / entry.name)))
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as error:
            raise refusal_of(error, path) from error
    return files


def manifest_of(custom: Mapping[str, Any] | None, release_id: str) -> ReleaseManifest:
    try:
        raw = (custom or {})[TARGET_MANIFEST_FIELD]
        manifest = (ReleaseManifest.model_validate_json(raw) if isinstance(raw, str | bytes)
                    else ReleaseManifest.model_validate(raw))
    except (KeyError, TypeError, ValidationError) as error:
        raise VerificationFailed(f"target of {release_id} carries no valid manifest: "
                                 f"{str(error).splitlines()[0]}", Refusal.MANIFEST) from error
    if manifest.release_id != release_id:
        raise VerificationFailed(f"the manifest of {release_id} names release "
                                 f"{manifest.release_id}", Refusal.MANIFEST)
    return manifest
