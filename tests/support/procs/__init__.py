"""Scripts the tests run as their own processes (to kill with SIGKILL, say), by file path."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

EDGE_AGENT = _HERE / "edge_agent.py"  # `edgeloop edge run` logging each committed record
SPOOL_WRITER = _HERE / "spool_writer.py"  # commits one record per transaction until killed
UPDATER = _HERE / "updater.py"  # installs one release, stops dead at a named phase
