"""An updater to be killed: installs one release and stops dead at a named phase.

Usage: python updater.py STATE_DIR HUB_URL TOKEN RELEASE_ID FRAMES_NPY PAUSE_AT
Prints "paused <phase>" (flushed) when it reaches PAUSE_AT and then waits to be killed; prints
"done <release serving>" if it gets to the end.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from edge_runtime.update.config import UpdaterConfig
from edge_runtime.update.policy import DeviceInput, HealthBudget, Phase, SmokeBudget
from edge_runtime.update.updater import Updater


def main(state_dir: Path, hub_url: str, token: str, release_id: str, frames_path: Path,
         pause_at: str) -> None:
    frames = list(np.load(frames_path))
    config = UpdaterConfig(hub_url=hub_url, token=token, state_dir=state_dir,
                           device=DeviceInput(("nut", "washer", "bolt"), 320),
                           smoke=SmokeBudget(frames=2), health=HealthBudget(frames=4), threads=1)

    def checkpoint(phase: Phase) -> None:
        if phase.value == pause_at:
            print(f"paused {phase.value}", flush=True)
            while True:
                time.sleep(60)

    updater = Updater(config, cached_frames=frames[:2], checkpoint=checkpoint)
    updater.recover()
    status = updater.update(release_id, frames)
    print(f"done {status.release_id}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5]),
         sys.argv[6])
