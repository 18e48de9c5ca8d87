"""What a release upload must hold (exactly the files its manifest names, each once), and what
is left of one whose row could not be written."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_runtime.contract import InputSignature, ModelFile, ReleaseManifest
from hub.blobs import BlobStore
from hub.db import Database, releases
from hub.errors import Conflict, Invalid
from hub.releases import Upload, check_upload_names, create_release


def test_uploads_must_match_the_manifest_one_to_one() -> None:
    check_upload_names(["model.onnx", "labels.txt"], ["labels.txt", "model.onnx"])
    with pytest.raises(Invalid, match=r"missing \['labels.txt'\]"):
        check_upload_names(["model.onnx", "labels.txt"], ["model.onnx"])
    with pytest.raises(Invalid, match="not in the manifest"):
        check_upload_names(["model.onnx"], ["model.onnx", "../../etc/passwd"])
    with pytest.raises(Invalid, match="more than once"):
        check_upload_names(["model.onnx"], ["model.onnx", "model.onnx"])
    with pytest.raises(Invalid, match="lists"):
        check_upload_names(["model.onnx", "model.onnx"], ["model.onnx"])


class RivalWinsAfterTheUpload(BlobStore):
    """Blob storage during which another publisher commits a release under the same id."""

    def __init__(self, url: str, db: Database, rival: str) -> None:
        super().__init__(url)
        self.db, self.rival = db, rival

    def put_stream(self, key: str, chunks: Iterator[bytes]) -> None:
        super().put_stream(key, chunks)
        if self.rival:  # committed as the rival's own create_release would, once here
            rival, self.rival = self.rival, ""
            parsed = ReleaseManifest.model_validate_json(rival)
            with self.db.write() as conn:
                conn.execute(releases.insert().values(
                    release_id=parsed.release_id, version=parsed.version, created_us=0,
                    manifest=rival))


def release_text(release_id: str, version: int, files: dict[str, bytes]) -> str:
    return ReleaseManifest(
        release_id=release_id, version=version, created_at=datetime(2026, 1, 1, tzinfo=UTC),
        input=InputSignature(imgsz=320, classes=["bolt"]),
        files=[ModelFile(name=n, sha256=hashlib.sha256(d).hexdigest(), size=len(d))
               for n, d in files.items()]).model_dump_json()


def test_a_release_whose_row_loses_a_race_removes_only_its_own_new_blobs(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'hub.sqlite'}", 5.0)
    db.create_schema()
    shared, own = b"the same labels", b"a model only the loser uploaded"
    # The rival lists `shared` without uploading it: it relies on the loser's blob, as a
    # second upload of the same bytes would.
    rival = release_text("r1", 1, {"labels.txt": shared})
    blobs = RivalWinsAfterTheUpload(str(tmp_path / "blobs"), db, rival)
    files = {"labels.txt": shared, "model.onnx": own}
    with pytest.raises(Conflict, match="already exists"):
        create_release(db, blobs, release_text("r1", 2, files),
                       [Upload(n, io.BytesIO(d)) for n, d in files.items()])
    left = sorted(p.name for p in (tmp_path / "blobs" / "artefacts").iterdir())
    assert left == [hashlib.sha256(shared).hexdigest()]  # the rival's, kept; the loser's, gone
    db.dispose()
