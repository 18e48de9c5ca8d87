"""Blob keys are the hub's own; a local store writes whole files or nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.blobs import BlobKeyError, BlobStore, check_key


@pytest.mark.parametrize("key", [
    "samples/cam-1/7-abcdef.jpg", "artefacts/" + "a" * 64, "samples/cam.1/0-x.png",
])
def test_keys_the_hub_generates_are_accepted(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("key", [
    "../etc/passwd", "samples/../../etc", "samples/..", "samples/.", "/abs/path", "samples//x",
    "samples/a\x00b", "samples/a b", "samples/é", "samples\\..\\x", "Samples/x", "samples",
    "samples/.hidden",
])
def test_anything_else_is_refused(key: str) -> None:
    with pytest.raises(BlobKeyError):
        check_key(key)


def test_local_store_round_trips_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    store.put("samples/cam-1/1-a.jpg", b"jpeg bytes")
    store.put_stream("artefacts/abc", iter([b"one ", b"two"]))
    assert store.read("samples/cam-1/1-a.jpg") == b"jpeg bytes"
    assert (store.read("artefacts/abc"), store.size("artefacts/abc")) == (b"one two", 7)
    assert store.exists("artefacts/abc") and not store.exists("artefacts/abd")
    store.delete("artefacts/abc")
    assert not store.exists("artefacts/abc")
    files = [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert files == ["1-a.jpg"]


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))

    def failing() -> Iterator[bytes]:
        yield b"half"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.put_stream("samples/cam-1/1-a.jpg", failing())
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []


def test_a_url_store_goes_through_fsspec() -> None:
    store = BlobStore("memory://hub-unit-test")
    store.put("samples/cam-1/1-a.jpg", b"x")
    assert store.read("samples/cam-1/1-a.jpg") == b"x"
    assert not store.local
