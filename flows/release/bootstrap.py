"""Release 1 of a fleet (`edgeloop release bootstrap`): the team's champion as it runs in the
field, with its reference telemetry profile (the golden images replayed through the device's own
pipeline), signed into a new TUF repository, whose root the devices are provisioned with, and
assigned to every channel. Later releases come from the retrain's gate (`edgeloop flows release`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from edge_runtime.contract import MODEL_FILE, Lineage, ReleaseManifest
from edge_runtime.detector import Detector
from edge_runtime.replay import replay_rows, write_parquet
from edge_runtime.sources import image_frames
from flows.dvc_dataset import dvc_md5
from flows.project import SEED_DIR, SEED_YAML
from flows.release.candidate import ReleaseError, git_head, input_signature, params_hash
from flows.release.publish import build_manifest, publish
from flows.release.tuf import ReleaseRepository
from flows.yolo_dataset import DatasetError, add_labelled_objects, golden_split, read_dataset
from hub.client import HubClient

REFERENCE_FILE = "reference.parquet"
MAX_REFERENCE_FRAMES = 2000  # enough for every drift test's power; more only takes longer


@dataclass(frozen=True)
class Bootstrapped:
    manifest: ReleaseManifest
    trusted_root: Path  # the TUF root every device is provisioned with
    reference_frames: int


def project_params(project: Path) -> dict[str, Any]:
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8")) or {}
    if not isinstance(params, dict):
        raise ReleaseError(f"{project / 'params.yaml'} must be a mapping")
    return params


def champion_onnx(project: Path, params: Mapping[str, Any]) -> Path:
    """The champion's ONNX file, as params.yaml names it."""
    champion = params.get("champion")
    if not isinstance(champion, dict) or "onnx" not in champion:
        raise ReleaseError(f"{project / 'params.yaml'} names no champion (champion.onnx)")
    return project / str(champion["onnx"])


def seed_version(project: Path) -> str:
    """The seed dataset's DVC version (`data/seed@<md5>`), or "" outside a DVC project."""
    tracked = project / f"{SEED_DIR}.dvc"
    return f"{SEED_DIR}@{dvc_md5(tracked)[0]}" if tracked.is_file() else ""


def reference_images(project: Path, params: Mapping[str, Any]) -> tuple[Path, ...]:
    """The old-domain images the champion's reference is replayed on: the golden slice of the
    team's dataset (its test split, or the fixed share of val the retrain holds out)."""
    share = float((params.get("prepare") or {}).get("golden_share", 0.2))
    try:
        dataset = read_dataset(project / SEED_YAML, root=project / SEED_DIR)
        return golden_split(dataset, share)[1]
    except DatasetError as exc:
        raise ReleaseError(f"no reference images: {exc} (give --images)") from None


def bootstrap(client: HubClient, new_repository: Callable[[], ReleaseRepository], *,
              project: Path, onnx: Path, images: Sequence[Path], channels: Sequence[str],
              expires_in: timedelta, work: Path,
              progress: Callable[[int], None] | None = None) -> Bootstrapped:
    """Publish `onnx` as release 1 with its reference profile, into the TUF repository
    `new_repository` creates; refused, before any key is made, when the hub has releases."""
    if client.releases():
        raise ReleaseError("the hub already has releases: a fleet is bootstrapped once; "
                           "publish candidates with `edgeloop flows release`")
    if not images:
        raise ReleaseError("no images to replay for the reference profile")
    repo = new_repository()
    reference = work / REFERENCE_FILE
    replayed = images[:MAX_REFERENCE_FRAMES]
    rows = replay_rows(Detector(onnx, threads=0), image_frames(replayed), progress=progress)
    add_labelled_objects(rows, replayed)
    write_parquet(rows, reference)
    files = {MODEL_FILE: onnx, REFERENCE_FILE: reference}
    manifest = build_manifest(
        files, version=1, signature=input_signature(onnx), metrics={},
        lineage=Lineage(git_commit=git_head(project), dataset_version=seed_version(project),
                        params_hash=params_hash(project / "params.yaml")),
        expires_in=expires_in)
    publish(client, repo, manifest, files, list(channels))
    return Bootstrapped(manifest, repo.metadata_dir / "1.root.json", len(rows))
