"""The updater's steps: check, download, smoke-test and stage a release, swap to it, judge it
on live frames and undo a bad one; and the install and restart around them (see `updater`).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from edge_runtime.detector import Detector
from edge_runtime.update.cache import open_detector, prune_cache
from edge_runtime.update.config import Staged, UpdaterConfig, UpdaterError, UpdateStatus
from edge_runtime.update.policy import (
    MODEL_FILE,
    Event,
    Health,
    HealthCheckFailed,
    HealthVerdict,
    LiveFrame,
    Phase,
    Refusal,
    UpdateRefused,
    check_release,
    check_release_size,
    judge_health,
    judge_smoke,
    next_phase,
)
from edge_runtime.update.remote import (
    TRUSTED_ROOT,
    download_release,
    hub_client,
    open_tuf,
    signed_release,
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
from edge_runtime.update.smoke import smoke_test

log = logging.getLogger(__name__)

# Refusals that belong to the model itself: the same release is not tried again.
_BLOCKING = frozenset({Refusal.SMOKE_TEST, Refusal.HEALTH_CHECK, Refusal.INPUT_MISMATCH})


DEVICE_FILE = "device.json"  # the device's name at the hub, written by `edge provision`


def device_identity(state_dir: Path) -> str | None:
    """The device name `edge provision --device-id` stored in `state_dir`, if any."""
    try:
        stored = json.loads((state_dir / DEVICE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise UpdaterError(f"{state_dir / DEVICE_FILE} is unreadable: {error}") from None
    name = stored.get("device_id") if isinstance(stored, dict) else None
    if not isinstance(name, str) or not name:
        raise UpdaterError(f"{state_dir / DEVICE_FILE} names no device_id")
    return name


class UpdateSteps:
    """An update step by step, for whoever drives it (`Updater.update` does it all; beside a
    running agent, `UpdateLoop`): `recover()` once at start, then `prepare()`, `activate()`, and
    `observe()` on each live frame the new model serves.
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
                  release_id: str = "factory", version: int = 0,
                  device_id: str | None = None) -> Pointer:
        """First install: the trusted TUF root (shipped with the device), the first model and,
        when given, the device's name at the hub (`device_identity`)."""
        if not trusted_root.is_file():
            raise UpdaterError(f"trusted root {trusted_root} does not exist")
        (state_dir / "tuf").mkdir(parents=True, exist_ok=True)
        write_atomic(state_dir / "tuf" / TRUSTED_ROOT, trusted_root.read_bytes())
        if device_id is not None:
            write_atomic(state_dir / DEVICE_FILE,
                         (json.dumps({"device_id": device_id}) + "\n").encode())
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
                             threads=self.config.threads, conf=self.config.conf,
                             iou=self.config.iou)

    def open_previous(self) -> Detector | None:
        pointer = self.slots.pointer()
        content = self.slots.content(pointer.previous) if pointer.previous else None
        if pointer.previous is None or content is None:
            return None
        return open_detector(self.slots.model_path(pointer.previous),
                             content.files[MODEL_FILE].sha256, self.cache_dir,
                             threads=self.config.threads, conf=self.config.conf,
                             iou=self.config.iou)

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
            tuf = open_tuf(client, self.config.hub_url, self.tuf_dir, self.download_dir,
                           self._pause)
            manifest, signed = signed_release(tuf, self.tuf_dir, release_id)
            check_release_size(signed.values(), self.config.max_release_bytes)
            check_release(manifest, signed, floor=self.slots.floor(),
                          device=self.config.device, now=datetime.now(UTC))
            self.phase = next_phase(self.phase, Event.ACCEPTED)  # downloading
            files = download_release(tuf, self.download_dir, manifest)
        self.phase = next_phase(self.phase, Event.ACCEPTED)  # verifying
        self._pause(Phase.VERIFYING)
        model_sha = signed[MODEL_FILE].sha256
        run = smoke_test(files[MODEL_FILE], model_sha, self.cached_frames, self.config.smoke,
                         self.cache_dir, threads=self.config.threads, conf=self.config.conf,
                         iou=self.config.iou)
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
        return hub_client(self.config, self._transport)

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


def _now() -> str:
    return datetime.now(UTC).isoformat()
