"""The device's release verifier, fuzzed: a release signed by a real `ReleaseRepository` is served
with bytes flipped, inserted or deleted anywhere in one of the metadata files the device fetches
(a rotated root, timestamp, snapshot, targets) or in the model target. The updater must refuse
it, or, where the change did not alter anything signed (whitespace in the JSON, say), verify
exactly the signed content and bytes. Whatever it does, it never stages or activates the release.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from tuf.api.metadata import Metadata
from tuf.api.serialization import DeserializationError

from edge_runtime.contract import MODEL_FILE
from edge_runtime.update.policy import Phase, UpdateRefused
from edge_runtime.update.updater import Updater
from flows.release.tuf import ReleaseRepository
from tests.support.updater import RepoServer, manifest_for, updater_config

pytestmark = pytest.mark.slow

RELEASE = "r2"
# What a device fetches from the hub to verify release r2 (trusting 1.root.json at install).
SERVED = ("2.root.json", "timestamp.json", "snapshot.json", "targets.json",
          f"targets/{RELEASE}/{MODEL_FILE}")
EXAMPLES = 200


class PassedVerification(Exception):
    """Raised by the updater's VERIFYING checkpoint: the release verified and is downloaded."""

    def __init__(self, model: bytes) -> None:
        super().__init__("verified")
        self.model = model


@dataclass
class SignedRelease:
    repo: ReleaseRepository
    server: RepoServer
    trusted_root: Path
    first_model: Path
    work: Path

    def path(self, served: str) -> Path:
        if served.startswith("targets/"):
            return self.repo.targets_dir / served.removeprefix("targets/")
        return self.repo.metadata_dir / served

    def try_update(self) -> bytes | UpdateRefused:
        """A freshly provisioned device (no cached metadata) asked to take release r2: the
        model bytes it verified, or why it refused."""
        state = Path(tempfile.mkdtemp(dir=self.work))
        try:
            Updater.provision(state, self.trusted_root, self.first_model, release_id="r1",
                              version=1)

            def checkpoint(phase: Phase) -> None:
                if phase is Phase.VERIFYING:
                    raise PassedVerification((state / "download" / RELEASE / MODEL_FILE)
                                             .read_bytes())

            updater = Updater(updater_config(state, self.server.url), checkpoint=checkpoint)
            try:
                updater.prepare(RELEASE)
            except UpdateRefused as refused:
                return refused
            except PassedVerification as passed:
                return passed.model
            finally:
                pointer = updater.slots.pointer()
                assert (pointer.content.release_id, pointer.trial) == ("r1", False)
                assert updater.slots.content(pointer.slot.other) is None
            raise AssertionError("prepare() returned without verifying or refusing")
        finally:
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def signed_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedRelease]:
    work = tmp_path_factory.mktemp("verifier-fuzz")
    repo = ReleaseRepository.create(work / "repo", work / "keys")
    trusted_root = work / "trusted_root.json"
    shutil.copy(repo.metadata_dir / "1.root.json", trusted_root)
    models = {}
    for release_id in ("r1", RELEASE):
        models[release_id] = work / f"{release_id}.onnx"
        models[release_id].write_bytes(f"model of {release_id} ".encode() * 200)
    repo.add_release(manifest_for("r1", 1, {MODEL_FILE: models["r1"]}), {MODEL_FILE: models["r1"]})
    repo.rotate_key("root")  # the device walks 1.root.json -> 2.root.json
    repo.add_release(manifest_for(RELEASE, 2, {MODEL_FILE: models[RELEASE]}),
                     {MODEL_FILE: models[RELEASE]})
    with RepoServer(repo) as server:
        yield SignedRelease(repo, server, trusted_root, models["r1"], work)


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, str, int, bytes, int]:
    """(file, kind, offset, inserted or xor bytes, deleted length); never a no-op."""
    served = draw(st.sampled_from(SERVED))
    kind = draw(st.sampled_from(["flip", "insert", "delete"]))
    offset = draw(st.integers(0, 1 << 20))  # taken modulo the file's length
    if kind == "flip":
        xor = draw(st.lists(st.integers(1, 255), min_size=1, max_size=4).map(bytes))
        return served, kind, offset, xor, 0
    if kind == "insert":
        return served, kind, offset, draw(st.binary(min_size=1, max_size=16)), 0
    return served, kind, offset, b"", draw(st.integers(1, 64))


def mutate(data: bytes, kind: str, offset: int, payload: bytes, length: int) -> bytes:
    at = offset % len(data)
    if kind == "flip":
        flipped = bytes(a ^ b for a, b in zip(data[at : at + len(payload)], payload, strict=False))
        return data[:at] + flipped + data[at + len(flipped) :]
    if kind == "insert":
        return data[:at] + payload + data[at:]
    return data[:at] + data[at + length :]


def signed_part(data: bytes) -> object:
    """What the signatures cover, or None when the bytes are not TUF metadata at all."""
    try:
        return Metadata.from_bytes(data).signed.to_dict()
    except (DeserializationError, ValueError, KeyError, TypeError):
        return None


def test_the_untouched_release_verifies(signed_release: SignedRelease) -> None:
    model = signed_release.path(f"targets/{RELEASE}/{MODEL_FILE}").read_bytes()
    assert signed_release.try_update() == model


@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutation=mutations())
# Whitespace between JSON tokens is not signed: these must verify, as the originals do.
@example(mutation=("snapshot.json", "insert", 1, b"\n  ", 0))
@example(mutation=("targets.json", "insert", 1, b" ", 0))
def test_a_mutated_release_is_never_accepted(signed_release: SignedRelease,
                                            mutation: tuple[str, str, int, bytes, int]) -> None:
    served, kind, offset, payload, length = mutation
    path = signed_release.path(served)
    original = path.read_bytes()
    mutated = mutate(original, kind, offset, payload, length)
    if mutated == original:  # e.g. deleting a byte from a run of equal bytes shifts nothing
        return
    path.write_bytes(mutated)
    try:
        outcome = signed_release.try_update()
    finally:
        path.write_bytes(original)
    if isinstance(outcome, UpdateRefused):
        event(f"refused: {outcome.refusal.value}")
        return
    event("verified: the change left the signed content as it was")
    # It verified: only a change that leaves the signed content and the model's bytes as they
    # were may do that (JSON whitespace, the case of a signature's hex digits, unknown fields).
    assert not served.startswith("targets/"), f"a changed model verified: {mutation!r}"
    assert outcome == signed_release.path(f"targets/{RELEASE}/{MODEL_FILE}").read_bytes()
    before, after = signed_part(original), signed_part(mutated)
    assert before is not None and after == before, (
        f"{served} verified with other signed content: {mutation!r}\n"
        f"{json.dumps(after, default=str)[:500]}")
