"""Hostile-input tests reuse the integration tests' hub and release-repository helpers."""

from __future__ import annotations

import sys
from pathlib import Path

INTEGRATION = Path(__file__).resolve().parent.parent / "integration"
if str(INTEGRATION) not in sys.path:  # `test_hub_support`, `updater_support` live there
    sys.path.insert(0, str(INTEGRATION))
