"""The device's model updater: fetch a release through TUF, check it, stage, swap, judge, undo.

The decisions live in `edge_runtime.update.policy` and the slot files in
`edge_runtime.update.slots`; the fetcher, the model cache and the smoke test in their own modules.
This module does the network (TUF over the hub with the device token), runs models and moves
files. Inference keeps serving the current model until `activate()` hands over a new Detector.

State under `UpdaterConfig.state_dir`: the slots (see `edge_runtime.update.slots`), `tuf/` (the
trusted root provisioned at install and TUF's verified metadata: keep it on persistent storage,
it is the rollback protection), `download/` (scratch, emptied on every start) and
`ort-cache/<sha256>/` (ONNX Runtime's optimised copy of a model, keyed by the hash of the model
it came from).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import numpy as np
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
from edge_runtime.detector import Detector
from edge_runtime.update.cache import open_detector, prune_cache
from edge_runtime.update.fetch import FETCH_CHUNK, TokenFetcher, refusal_of
from edge_runtime.update.policy import (
    MODEL_FILE,
    DeviceInput,
    Event,
    Health,
    HealthBudget,
    HealthCheckFailed,
    HealthVerdict,
    LiveFrame,
    Phase,
    Refusal,
    ReleaseUnavailable,
    SignedFile,
    SmokeBudget,
    UpdateRefused,
    VerificationFailed,
    check_release,
    check_release_size,
    detection_rate,
    judge_health,
    judge_smoke,
    next_phase,
)
from edge_runtime.update.slots import (
    FileDigest,
    Pointer,
    Recovery,
    Slot,
    SlotContent,
    SlotStore,
    sha256_file,
    write_atomic,
)
from edge_runtime.update.smoke import run_frame, smoke_test

log = logging.getLogger(__name__)

METADATA_PATH = TUF_METADATA_PATH + "/"
TARGETS_PATH = TUF_TARGETS_PATH + "/"
TRUSTED_ROOT = "trusted_root.json"
# Refusals that belong to the model itself: the same release is not tried again.
_BLOCKING = frozenset({Refusal.SMOKE_TEST, Refusal.HEALTH_CHECK, Refusal.INPUT_MISMATCH})


class UpdaterError(ValueError):
    """The updater was configured or provisioned wrongly."""


@dataclass(frozen=True)
class UpdaterConfig:
    hub_url: str  # scheme, host and port, e.g. "https://hub.example:8443"
    token: str = field(repr=False)  # sent as "Authorization: Bearer <token>"
    state_dir: Path
    device: DeviceInput  # what this device feeds its model
    smoke: SmokeBudget = field(default_factory=SmokeBudget)
    health: HealthBudget = field(default_factory=HealthBudget)
    max_release_bytes: int = 256 * 2**20  # refused before any byte is downloaded
    connect_timeout_s: float = 5.0
    timeout_s: float = 30.0
    threads: int = 0  # ONNX Runtime intra-op threads of the models the updater opens

    def __post_init__(self) -> None:
        if not self.hub_url.startswith(("http://", "https://")):
            raise UpdaterError(f"hub_url {self.hub_url!r} must be http(s)://host[:port]")
        if not self.token or any(c.isspace() for c in self.token):
            raise UpdaterError("token must be non-empty and hold no whitespace")
        if self.max_release_bytes < 1 or self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise UpdaterError("max_release_bytes and the timeouts must be positive")


@dataclass(frozen=True)
class UpdateStatus:
    """What the heartbeat reports about updates."""

    phase: Phase
    release_id: str  # the release serving now
    version: int
    trial: bool  # the serving model is still on its health check
    target: str | None = None  # the release the last update was about
    refusal: Refusal | None = None  # why the last update was refused or undone
    detail: str | None = None
    at: datetime | None = None

    def heartbeat_error(self) -> str | None:
        """A one-line reason for DeviceStatus.last_error (until the contract has its fields)."""
        if self.refusal is None:
            return None
        return f"update {self.target}: {self.refusal.value}: {self.detail}"[:500]


@dataclass(frozen=True)
class Staged:
    """A release verified, smoke-tested and complete in the inactive slot."""

    manifest: ReleaseManifest
    slot: Slot


# -- the updater ------------------------------------------------------------------------------


class Updater:
    """Installs releases assigned to this device, one at a time, and undoes a bad one.

    Call `recover()` once at start. Then either `update(release_id, live_frames)` (does it all,
    running the models itself), or, beside a running agent: `prepare()` on a background thread,
    `activate()` to get the new Detector, `observe()` each live frame it serves, until it
    answers a verdict (the rollback has then already happened: reopen `open_active()`).
    """

    def __init__(self, config: UpdaterConfig, *, cached_frames: Sequence[np.ndarray] = (),
                 checkpoint: Callable[[Phase], None] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.slots = SlotStore(config.state_dir)
        self.cached_frames = list(cached_frames)
        self.phase = Phase.IDLE
        self._checkpoint = checkpoint
        self._transport = transport
        self._live: list[LiveFrame] = []
        self._baseline: float | None = None
        self._target: str | None = None

    # -- paths ------------------------------------------------------------------------------

    @property
    def tuf_dir(self) -> Path:
        return self.config.state_dir / "tuf"

    @property
    def download_dir(self) -> Path:
        return self.config.state_dir / "download"

    @property
    def cache_dir(self) -> Path:
        return self.config.state_dir / "ort-cache"

    # -- install and restart ----------------------------------------------------------------

    @staticmethod
    def provision(state_dir: Path, trusted_root: Path, model: Path, *,
                  release_id: str = "factory", version: int = 0) -> Pointer:
        """First install: the trusted TUF root (shipped with the device) and the first model."""
        if not trusted_root.is_file():
            raise UpdaterError(f"trusted root {trusted_root} does not exist")
        (state_dir / "tuf").mkdir(parents=True, exist_ok=True)
        write_atomic(state_dir / "tuf" / TRUSTED_ROOT, trusted_root.read_bytes())
        digest = FileDigest(sha256_file(model), model.stat().st_size)
        content = SlotContent(release_id, version, {MODEL_FILE: digest})
        return SlotStore(state_dir).provision({MODEL_FILE: model}, content)

    def recover(self) -> Recovery:
        """At start: drop what an interrupted update left; a model on trial is judged again."""
        recovery = self.slots.recover()
        shutil.rmtree(self.download_dir, ignore_errors=True)
        prune_cache(self.cache_dir, self._slot_hashes())
        self.phase = Phase.HEALTH_CHECK if recovery.pointer.trial else Phase.IDLE
        self._live, self._baseline = [], None
        if recovery.pointer.trial:
            self._target = recovery.pointer.content.release_id
        return recovery

    def open_active(self) -> Detector:
        pointer = self.slots.pointer()
        return open_detector(self.slots.model_path(pointer.slot),
                             pointer.content.files[MODEL_FILE].sha256, self.cache_dir,
                             threads=self.config.threads)

    def open_previous(self) -> Detector | None:
        pointer = self.slots.pointer()
        content = self.slots.content(pointer.previous) if pointer.previous else None
        if pointer.previous is None or content is None:
            return None
        return open_detector(self.slots.model_path(pointer.previous),
                             content.files[MODEL_FILE].sha256, self.cache_dir,
                             threads=self.config.threads)

    def status(self) -> UpdateStatus:
        pointer = self.slots.pointer()
        outcome = self.slots.read_outcome() or {}
        refusal = outcome.get("refusal")
        at = outcome.get("at")
        return UpdateStatus(
            phase=self.phase, release_id=pointer.content.release_id,
            version=pointer.content.version, trial=pointer.trial,
            target=self._target or outcome.get("release_id"),
            refusal=Refusal(refusal) if refusal else None, detail=outcome.get("detail"),
            at=datetime.fromisoformat(at) if at else None)

    # -- one release, start to end ----------------------------------------------------------

    def poll_assignment(self) -> str | None:
        """The release the hub assigns this device, or None when it assigns none.

        Only the id is taken from this answer: what is installed, and how it is checked, comes
        from the signed TUF metadata. Raises ReleaseUnavailable when the hub cannot be asked.
        """
        try:
            with self._client() as client:
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

    def step(self, live_frames: Iterable[np.ndarray]) -> UpdateStatus:
        """One poll: install the assigned release if there is a new one (see `update`).

        A model left on trial by a crash is judged first, assignment or not.
        """
        frames = iter(live_frames)
        if self.phase is Phase.HEALTH_CHECK:
            self._judge_resumed(frames)
        try:
            release_id = self.poll_assignment()
        except ReleaseUnavailable as error:
            log.warning("cannot poll the assignment: %s", error)
            return self.status()
        if release_id is None:
            return self.status()
        return self.update(release_id, frames)

    def update(self, release_id: str, live_frames: Iterable[np.ndarray]) -> UpdateStatus:
        """Install `release_id` if it is new and acceptable, judging it on `live_frames`.

        A model left on trial by a crash is judged first. Refusals and rollbacks are reported
        in the returned status (and persisted for the heartbeat), never raised.
        """
        frames = iter(live_frames)
        if self.phase is Phase.HEALTH_CHECK:
            self._judge_resumed(frames)
        try:
            staged = self.prepare(release_id)
        except UpdateRefused:
            return self.status()
        if staged is None:
            return self.status()
        budget = self.config.health.frames
        old = self.open_active()
        baseline = [run_frame(old, image) for image in islice(frames, budget)]
        new = self.activate(staged, baseline_rate=detection_rate(baseline))
        self._run_health_check(new, frames)
        return self.status()

    def _judge_resumed(self, frames: Iterator[np.ndarray]) -> None:
        budget = self.config.health.frames
        previous = self.open_previous()
        if previous is not None:
            baseline = [run_frame(previous, image) for image in islice(frames, budget)]
            self._baseline = detection_rate(baseline)
        self._run_health_check(self.open_active(), frames)

    def _run_health_check(self, detector: Detector, frames: Iterator[np.ndarray]) -> None:
        half = self.config.health.frames // 2
        for seen, image in enumerate(frames, start=1):
            verdict = self.observe(run_frame(detector, image))
            if verdict.health is not Health.PENDING:
                return
            if seen == half:
                self._pause(Phase.HEALTH_CHECK)
        if self.phase is Phase.HEALTH_CHECK:
            self._conclude(HealthVerdict(Health.FAILED, "the live frames ran out before the "
                                         "health check could judge the model"))

    # -- the steps --------------------------------------------------------------------------

    def prepare(self, release_id: str) -> Staged | None:
        """Check, download, smoke-test and stage a release into the inactive slot.

        None when it is already serving; raises UpdateRefused (after recording it) otherwise.
        Nothing is activated, and the slots hold nothing new, when it raises.
        """
        if self.phase is not Phase.IDLE:
            raise UpdaterError(f"an update is already in phase {self.phase.value}")
        self._target = release_id
        self.phase = next_phase(self.phase, Event.ASSIGNED)
        try:
            pointer = self.slots.pointer()
            if pointer.content.release_id == release_id:
                self.phase = next_phase(self.phase, Event.UP_TO_DATE)
                return None
            self._check_blocked(release_id)
            staged = self._fetch_and_stage(release_id, pointer)
        except UpdateRefused as refused:
            self._refused(release_id, refused)
            raise
        except BaseException:
            self.phase = Phase.IDLE  # an I/O failure: nothing was activated, try again later
            raise
        finally:
            shutil.rmtree(self.download_dir, ignore_errors=True)
        return staged

    def _fetch_and_stage(self, release_id: str, pointer: Pointer) -> Staged:
        with self._client() as client:
            tuf = self._tuf(client)
            manifest, signed = self._signed_release(tuf, release_id)
            check_release_size(signed.values(), self.config.max_release_bytes)
            check_release(manifest, signed, floor=self.slots.floor(),
                          device=self.config.device, now=datetime.now(UTC))
            self.phase = next_phase(self.phase, Event.ACCEPTED)  # downloading
            files = self._download(tuf, manifest)
        self.phase = next_phase(self.phase, Event.ACCEPTED)  # verifying
        self._pause(Phase.VERIFYING)
        model_sha = signed[MODEL_FILE].sha256
        run = smoke_test(files[MODEL_FILE], model_sha, self.cached_frames, self.config.smoke,
                         self.cache_dir, threads=self.config.threads)
        judge_smoke(run, self.config.smoke, self.config.device)
        self.phase = next_phase(self.phase, Event.ACCEPTED)  # staging
        content = SlotContent(manifest.release_id, manifest.version,
                              {n: FileDigest(s.sha256, s.length) for n, s in signed.items()})
        slot = pointer.slot.other
        self.slots.stage(slot, files, content, active=pointer.slot,
                         checkpoint=lambda: self._pause(Phase.STAGING))
        prune_cache(self.cache_dir, self._slot_hashes())  # the model staged over is gone
        return Staged(manifest, slot)

    def activate(self, staged: Staged, *, baseline_rate: float | None = None) -> Detector:
        """Swap: the staged slot serves (on trial) and its Detector is returned for the agent.

        `baseline_rate` is the old model's share of live frames with a detection, the bar the
        health check holds the new model to.
        """
        self.phase = next_phase(self.phase, Event.ACCEPTED)  # swapping
        self.slots.activate(staged.slot, checkpoint=lambda: self._pause(Phase.SWAPPING))
        self.phase = next_phase(self.phase, Event.ACCEPTED)  # health check
        self._live, self._baseline = [], baseline_rate
        self.slots.write_outcome({"release_id": staged.manifest.release_id,
                                  "phase": self.phase.value, "at": _now(),
                                  "blocked": self._blocked()})
        return self.open_active()

    def resume_trial(self, *, baseline_rate: float | None) -> None:
        """Beside a live agent: judge the model a restart left on trial from the next frame on.

        `baseline_rate` is the previous model's share of frames with a detection (see
        `activate`); `observe()` then takes each live frame the model on trial serves.
        """
        if self.phase is not Phase.HEALTH_CHECK:
            raise UpdaterError(f"no model is on trial (phase {self.phase.value})")
        self._live, self._baseline = [], baseline_rate

    def refused_before(self, release_id: str) -> Refusal | None:
        """Why `release_id` failed on this device for good (it is not tried again), else None."""
        refusal = self._blocked().get(release_id)
        return Refusal(refusal) if refusal else None

    def observe(self, frame: LiveFrame) -> HealthVerdict:
        """One live frame served by the model on trial; concludes once the verdict is known."""
        if self.phase is not Phase.HEALTH_CHECK:
            raise UpdaterError(f"no model is on trial (phase {self.phase.value})")
        self._live.append(frame)
        verdict = judge_health(self._live, self.config.health, self._baseline)
        if verdict.health is not Health.PENDING:
            self._conclude(verdict)
        return verdict

    def _conclude(self, verdict: HealthVerdict) -> None:
        release_id = self.slots.pointer().content.release_id
        if verdict.health is Health.HEALTHY:
            self.slots.confirm()
            self.phase = next_phase(self.phase, Event.HEALTHY)
            self.slots.write_outcome({"release_id": release_id, "phase": "confirmed",
                                      "at": _now(), "blocked": self._blocked()})
            log.info("release %s passed its health check", release_id)
            return
        self.phase = next_phase(self.phase, Event.UNHEALTHY)
        self.slots.roll_back()
        self.phase = next_phase(self.phase, Event.ROLLED_BACK)
        self._refused(release_id, HealthCheckFailed(verdict.reason))

    # -- helpers ----------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        timeout = httpx.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s)
        return httpx.Client(base_url=self.config.hub_url, timeout=timeout,
                            transport=self._transport,
                            headers={"Authorization": f"Bearer {self.config.token}"})

    def _tuf(self, client: httpx.Client) -> TufUpdater:
        metadata_dir = self.tuf_dir / "metadata"
        metadata_dir.mkdir(parents=True, exist_ok=True)
        try:
            bootstrap = (self.tuf_dir / TRUSTED_ROOT).read_bytes()
        except FileNotFoundError as error:
            raise UpdaterError(f"no trusted root in {self.tuf_dir}: provision the device"
                               ) from error
        base = self.config.hub_url.rstrip("/")

        def on_chunk(url: str, received: int) -> None:
            if url.startswith(base + TARGETS_PATH) and received <= FETCH_CHUNK:
                self._pause(Phase.DOWNLOADING)

        return TufUpdater(str(metadata_dir), base + METADATA_PATH,
                          target_dir=str(self.download_dir), target_base_url=base + TARGETS_PATH,
                          fetcher=TokenFetcher(client, on_chunk), bootstrap=bootstrap)

    def _signed_release(self, tuf: TufUpdater, release_id: str
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
        manifest = _manifest_of(info.custom, release_id)
        # TUF persists targets.json only once verified: it lists every signed file.
        targets = Metadata[Targets].from_file(str(self.tuf_dir / "metadata" / "targets.json"))
        signed: dict[str, SignedFile] = {}
        for path, target in targets.signed.targets.items():
            folder, _, name = path.partition("/")
            if folder != release_id:
                continue
            if _manifest_of(target.custom, release_id) != manifest:
                raise VerificationFailed(f"{path} is signed with another manifest",
                                         Refusal.MANIFEST)
            signed[name] = SignedFile(name, target.hashes.get("sha256", ""), target.length)
        return manifest, signed

    def _download(self, tuf: TufUpdater, manifest: ReleaseManifest) -> dict[str, Path]:
        folder = self.download_dir / manifest.release_id
        shutil.rmtree(self.download_dir, ignore_errors=True)
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

    def _check_blocked(self, release_id: str) -> None:
        outcome = self.slots.read_outcome() or {}
        blocked: Mapping[str, Any] = outcome.get("blocked") or {}
        if release_id in blocked:
            raise UpdateRefused(f"release {release_id} failed here before: "
                                f"{blocked[release_id]}", Refusal(blocked[release_id]))

    def _blocked(self) -> dict[str, str]:
        return dict((self.slots.read_outcome() or {}).get("blocked") or {})

    def _refused(self, release_id: str, refused: UpdateRefused) -> None:
        blocked = self._blocked()
        if refused.refusal in _BLOCKING:
            blocked[release_id] = refused.refusal.value
        self.slots.write_outcome({"release_id": release_id, "phase": self.phase.value,
                                  "refusal": refused.refusal.value, "detail": refused.detail,
                                  "at": _now(), "blocked": blocked})
        if self.phase is not Phase.IDLE:
            self.phase = next_phase(self.phase, Event.REFUSED)
        prune_cache(self.cache_dir, self._slot_hashes())
        log.warning("update to %s refused: %s", release_id, refused)

    def _slot_hashes(self) -> list[str]:
        contents = (self.slots.content(slot) for slot in Slot)
        return [c.files[MODEL_FILE].sha256 for c in contents if c is not None]

    def _pause(self, phase: Phase) -> None:
        if self._checkpoint is not None:
            self._checkpoint(phase)


def _manifest_of(custom: Mapping[str, Any] | None, release_id: str) -> ReleaseManifest:
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


def _now() -> str:
    return datetime.now(UTC).isoformat()

