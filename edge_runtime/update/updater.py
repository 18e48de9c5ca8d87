"""The device's model updater: fetch a release through TUF, check it, stage, swap, judge, undo.

The decisions live in `edge_runtime.update.policy` and the slot files in
`edge_runtime.update.slots`; the steps in `edge_runtime.update.steps`, what is asked of the hub in
`edge_runtime.update.remote`; the fetcher, the model cache and the smoke test in their own modules.
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
from collections.abc import Iterable, Iterator
from itertools import islice

import numpy as np

from edge_runtime.detector import Detector
from edge_runtime.update.config import UpdateStatus
from edge_runtime.update.policy import (
    Health,
    HealthVerdict,
    Phase,
    ReleaseUnavailable,
    UpdateRefused,
    detection_rate,
)
from edge_runtime.update.remote import fetch_assignment
from edge_runtime.update.smoke import run_frame
from edge_runtime.update.steps import UpdateSteps

log = logging.getLogger(__name__)

# -- the updater ------------------------------------------------------------------------------


class Updater(UpdateSteps):
    """Installs releases assigned to this device, one at a time, and undoes a bad one.

    Call `recover()` once at start. Then either `update(release_id, live_frames)` (does it all,
    running the models itself), or, beside a running agent: `prepare()` on a background thread,
    `activate()` to get the new Detector, `observe()` each live frame it serves, until it
    answers a verdict (the rollback has then already happened: reopen `open_active()`).
    """

    # -- one release, start to end ----------------------------------------------------------

    def poll_assignment(self) -> str | None:
        """The release the hub assigns this device, or None when it assigns none.

        Only the id is taken from this answer: what is installed, and how it is checked, comes
        from the signed TUF metadata. Raises ReleaseUnavailable when the hub cannot be asked.
        """
        with self._client() as client:
            return fetch_assignment(client)

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
