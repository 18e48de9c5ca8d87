"""Where things are: the repository root, the committed test fixtures, the tests' own var/."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
VAR_TEST = ROOT / "var" / "test"  # tools' caches and homes while the tests run, never $HOME
