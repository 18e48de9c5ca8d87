"""`edgeloop edge run` that also logs every record the spool commits, to be killed with SIGKILL.

Usage: python edge_agent.py COMMIT_LOG EDGELOOP_ARGS... A line in COMMIT_LOG ("t RECORD_ID"
or "s RECORD_ID") is written only after its transaction committed, so every complete line is a
record the device promised to deliver; a torn last line is not a promise.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from edge_runtime.contract import FrameStats, SampleMeta
from edge_runtime.outbox.spool import Spool
from edgeloop_cli import main


def log_commits(log: TextIO) -> None:
    add_telemetry, add_sample = Spool.add_telemetry, Spool.add_sample

    def logged_telemetry(self: Spool, records: Sequence[FrameStats]) -> int:
        added = add_telemetry(self, records)
        log.write("".join(f"t {r.record_id}\n" for r in records))
        log.flush()  # in the kernel's page cache: survives SIGKILL of this process
        return added

    def logged_sample(self: Spool, meta: SampleMeta, jpeg: bytes) -> bool:
        added = add_sample(self, meta, jpeg)
        log.write(f"s {meta.record_id}\n")
        log.flush()
        return added

    Spool.add_telemetry = logged_telemetry  # type: ignore[method-assign]
    Spool.add_sample = logged_sample  # type: ignore[method-assign]


if __name__ == "__main__":
    with Path(sys.argv[1]).open("a", encoding="utf-8") as commit_log:
        log_commits(commit_log)
        main(sys.argv[2:])
