"""A release's reference profile: the telemetry its own edge pipeline produces on the release's
validation images, stored with the release as the artefact `reference.parquet`.

Publishing (a release made by the release flow): build the profile with `build_reference` (or
`edgeloop edge replay --model model.onnx --source VAL_DIR --out reference.parquet`), list it in the
manifest's `files` with `reference_file(path)` beside the model, and upload both:
`HubClient.create_release(manifest, {"model.onnx": model, "reference.parquet": reference})`.

The drift check looks a device's reference up by the `model_version` its telemetry carries (the
model's `edgeloop_version` metadata, else the first 12 hex digits of the model file's sha256).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from edge_runtime.contract import ModelFile, ReleaseManifest

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

    from hub.client import HubClient

REFERENCE_FILE = "reference.parquet"


class ReferenceNotFoundError(LookupError):
    """No reference profile is stored for a model version."""

    def __init__(self, model_version: str, where: str) -> None:
        super().__init__(f"no {REFERENCE_FILE} for model version {model_version} in {where}")
        self.model_version = model_version


def build_reference(model: Path, images: Path, out: Path, *, threads: int = 0) -> Path:
    """Replays an image folder through the device pipeline of `model`; writes the Parquet."""
    from edge_runtime.detector import Detector
    from edge_runtime.replay import replay_rows, write_parquet
    from edge_runtime.sources import open_source

    detector = Detector(model, threads=threads)
    rows = replay_rows(detector, open_source(str(images)), device_id="reference")
    write_parquet(rows, out)
    return out


def reference_file(path: Path) -> ModelFile:
    """The manifest entry for a reference profile file."""
    data = path.read_bytes()
    return ModelFile(name=REFERENCE_FILE, sha256=hashlib.sha256(data).hexdigest(),
                     size=len(data))


def model_versions(manifest: ReleaseManifest) -> set[str]:
    """The `model_version`s a device running this release reports."""
    versions = {manifest.release_id}
    versions.update(f.sha256[:12] for f in manifest.files if f.name.endswith(".onnx"))
    return versions


class ReferenceSource(Protocol):
    def __call__(self, model_version: str) -> pd.DataFrame: ...


class FolderReferences:
    """References as `<folder>/<model_version>.parquet` (tests, offline runs)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, model_version: str) -> pd.DataFrame:
        import pandas as pd

        path = self.folder / f"{model_version}.parquet"
        if not path.is_file():
            raise ReferenceNotFoundError(model_version, str(self.folder))
        return pd.read_parquet(path)


class HubReferences:
    """References stored as release artefacts in the hub, cached on disk by content hash."""

    def __init__(self, client: HubClient, cache: Path) -> None:
        self.client = client
        self.cache = cache
        self._releases: list[ReleaseManifest] | None = None

    def __call__(self, model_version: str) -> pd.DataFrame:
        import pandas as pd

        if self._releases is None:  # one listing per flow run
            self._releases = [r.manifest for r in self.client.releases()]
        for manifest in sorted(self._releases, key=lambda m: -m.version):
            entry = next((f for f in manifest.files if f.name == REFERENCE_FILE), None)
            if entry is None or model_version not in model_versions(manifest):
                continue
            path = self.cache / f"{entry.sha256}.parquet"
            if not path.is_file():
                data = self.client.download(manifest.release_id, REFERENCE_FILE)
                if hashlib.sha256(data).hexdigest() != entry.sha256:
                    raise ValueError(f"{REFERENCE_FILE} of release {manifest.release_id} does "
                                     "not match its manifest's sha256")
                self.cache.mkdir(parents=True, exist_ok=True)
                # Devices are checked in parallel threads: each writes its own temporary file.
                handle, tmp = tempfile.mkstemp(dir=self.cache, prefix=f".{entry.sha256}-")
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(tmp, path)
            return pd.read_parquet(io.BytesIO(path.read_bytes()))
        raise ReferenceNotFoundError(model_version, f"the hub's releases at {self.client.base_url}")
