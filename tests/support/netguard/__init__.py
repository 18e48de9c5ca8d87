"""A folder to put first on a subprocess's PYTHONPATH: its sitecustomize.py records and refuses
every network connection (the log is the file named by EDGELOOP_NETGUARD_LOG)."""

from __future__ import annotations

from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent
