"""For the updater tests: a signed release repository served over HTTP, and models to ship.

The server serves a `flows.release.tuf.ReleaseRepository` from disk as the hub will (metadata
at /v1/tuf/metadata/, files at /v1/tuf/targets/, device bearer token), so a test tampers with
what a device receives by editing the repository's files. `resign` re-signs metadata the way
an attacker (or a stale repository) would, with a chosen key.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from onnx import helper, numpy_helper
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Targets, Timestamp

from edge_runtime.contract import MODEL_FILE, InputSignature, ModelFile, ReleaseManifest
from edge_runtime.update.config import UpdaterConfig
from edge_runtime.update.policy import DeviceInput, HealthBudget, SmokeBudget
from edge_runtime.update.updater import Updater
from flows.release.tuf import ReleaseRepository
from sim.stream import stream

TOKEN = "device-token-7"
CLASSES = ("nut", "washer", "bolt")
DEVICE = DeviceInput(CLASSES, 320)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# -- models -----------------------------------------------------------------------------------


def model_variant(seed: Path, out: Path, tag: str) -> Path:
    """The seed model with its own `edgeloop_version`: same behaviour, another hash."""
    model = onnx.load(str(seed))
    props = {p.key: p.value for p in model.metadata_props}
    props["edgeloop_version"] = tag
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(out))
    return out


def scaled_model(seed: Path, out: Path, tag: str, class_scale: float) -> Path:
    """The seed model with its class scores multiplied (0: finds nothing; NaN: NaN outputs)."""
    model = onnx.load(str(seed))
    graph = model.graph
    output = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{output}_raw" if o == output else o for o in node.output]
    nc = len(CLASSES)
    scale = np.array([1.0] * 4 + [class_scale] * nc, np.float32).reshape(1, 4 + nc, 1)
    graph.initializer.append(numpy_helper.from_array(scale, "edgeloop_class_scale"))
    graph.node.append(helper.make_node("Mul", [f"{output}_raw", "edgeloop_class_scale"],
                                       [output], name="edgeloop_scale"))
    props = {p.key: p.value for p in model.metadata_props} | {"edgeloop_version": tag}
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(out))
    return out


def manifest_for(release_id: str, version: int, files: dict[str, Path], *,
                 classes: tuple[str, ...] = CLASSES, imgsz: int = 320) -> ReleaseManifest:
    return ReleaseManifest(
        release_id=release_id, version=version, created_at=T0,
        input=InputSignature(imgsz=imgsz, classes=list(classes)),
        files=[ModelFile(name=name, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                         size=path.stat().st_size) for name, path in files.items()],
        metrics={"map50": 0.9})


def live_frames(count: int, seed: int = 3) -> list[np.ndarray]:
    return [frame.image for frame in stream("baseline", seed=seed, width=320, frames=count)]


def updater_config(state_dir: Path, hub_url: str, **overrides: Any) -> UpdaterConfig:
    fields: dict[str, Any] = {
        "hub_url": hub_url, "token": TOKEN, "state_dir": state_dir, "device": DEVICE,
        "smoke": SmokeBudget(frames=2), "health": HealthBudget(frames=4), "threads": 1,
    } | overrides
    return UpdaterConfig(**fields)


# -- signing as someone else ------------------------------------------------------------------


def role_signer(repo: ReleaseRepository, role: str) -> CryptoSigner:
    """The repository's current signer of `role`, read from its keys folder."""
    root = Metadata[Root].from_file(str(repo.metadata_dir / "root.json")).signed
    return pem_signer(repo.keys_dir / f"{root.roles[role].keyids[0]}.pem")


def pem_signer(pem: Path) -> CryptoSigner:
    """A signer of a private key file (its public key, and so its key id, derived from it)."""
    return CryptoSigner(load_pem_private_key(pem.read_bytes(), None))  # type: ignore[arg-type]


def resign(repo: ReleaseRepository, *, edit_targets: Callable[[Targets], object] | None = None,
           targets_signer: CryptoSigner | None = None,
           edit_timestamp: Callable[[Timestamp], None] | None = None) -> None:
    """A new targets -> snapshot -> timestamp chain, the targets signed by `targets_signer`
    (default: the repository's own key), after the edits."""
    md_dir = repo.metadata_dir
    targets = Metadata[Targets].from_file(str(md_dir / "targets.json"))
    if edit_targets is not None:
        edit_targets(targets.signed)
    targets.signed.version += 1
    targets.sign(targets_signer or role_signer(repo, "targets"), append=False)
    (md_dir / "targets.json").write_bytes(targets.to_bytes())
    snapshot = Metadata[Snapshot].from_file(str(md_dir / "snapshot.json"))
    snapshot.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
    snapshot.signed.version += 1
    snapshot.sign(role_signer(repo, "snapshot"), append=False)
    (md_dir / "snapshot.json").write_bytes(snapshot.to_bytes())
    timestamp = Metadata[Timestamp].from_file(str(md_dir / "timestamp.json"))
    timestamp.signed.snapshot_meta = MetaFile(version=snapshot.signed.version)
    timestamp.signed.version += 1
    if edit_timestamp is not None:
        edit_timestamp(timestamp.signed)
    timestamp.sign(role_signer(repo, "timestamp"), append=False)
    (md_dir / "timestamp.json").write_bytes(timestamp.to_bytes())


# -- the hub's TUF routes ---------------------------------------------------------------------


class RepoServer:
    """Serves a repository's metadata and targets folders over HTTP on 127.0.0.1."""

    def __init__(self, repo: ReleaseRepository, token: str = TOKEN) -> None:
        self.repo, self.token = repo, token
        self.requests: list[str] = []
        self.assignment: ReleaseManifest | None = None  # what GET /v1/assignment answers
        handler = self._handler()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> RepoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _resolve(self, url_path: str) -> Path | None:
        for prefix, folder in (("/v1/tuf/metadata/", self.repo.metadata_dir),
                               ("/v1/tuf/targets/", self.repo.targets_dir)):
            if url_path.startswith(prefix):
                path = (folder / url_path[len(prefix):]).resolve()
                return path if folder.resolve() in path.parents and path.is_file() else None
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    self.send_error(HTTPStatus.UNAUTHORIZED)
                    return
                if self.path == "/v1/assignment":
                    if server.assignment is None:
                        self.send_response(HTTPStatus.NO_CONTENT)
                        self.end_headers()
                        return
                    data = server.assignment.model_dump_json().encode()
                else:
                    path = server._resolve(self.path)
                    if path is None:
                        self.send_error(HTTPStatus.NOT_FOUND)
                        return
                    data = path.read_bytes()
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler



# -- a device and its repository ----------------------------------------------------------------


@dataclass
class Rig:
    """A release repository served over HTTP and a device provisioned with release r1."""

    repo: ReleaseRepository
    server: RepoServer
    state_dir: Path
    trusted_root: Path
    models: dict[str, Path]

    def publish(self, release_id: str, version: int, model: str, **input_fields: Any
                ) -> ReleaseManifest:
        files = {MODEL_FILE: self.models[model]}
        manifest = manifest_for(release_id, version, files, **input_fields)
        self.repo.add_release(manifest, files)
        return manifest

    def config(self, **overrides: Any) -> UpdaterConfig:
        return updater_config(self.state_dir, self.server.url, **overrides)


@contextmanager
def rig(tmp_path: Path, models: dict[str, Path]) -> Iterator[Rig]:
    repo = ReleaseRepository.create(tmp_path / "repo", tmp_path / "keys")
    trusted_root = tmp_path / "trusted_root.json"
    shutil.copy(repo.metadata_dir / "1.root.json", trusted_root)
    state_dir = tmp_path / "device"
    with RepoServer(repo) as server:
        built = Rig(repo, server, state_dir, trusted_root, models)
        built.publish("r1", 1, "r1")
        Updater.provision(state_dir, trusted_root, models["r1"], release_id="r1", version=1)
        yield built


def build_models(seed: Path, folder: Path) -> dict[str, Path]:
    """r1..r3 behave as the seed model; `blind` finds nothing; `nan` outputs NaN."""
    folder.mkdir(parents=True, exist_ok=True)
    models = {tag: model_variant(seed, folder / f"{tag}.onnx", tag) for tag in ("r1", "r2", "r3")}
    models["blind"] = scaled_model(seed, folder / "blind.onnx", "blind", 0.0)
    models["nan"] = scaled_model(seed, folder / "nan.onnx", "nan", float("nan"))
    return models
