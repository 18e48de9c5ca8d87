"""Evidently stays behind its one adapter: no other edgeloop module imports it, and the drift
CLI, config and fleet logic load without it (it costs seconds to import)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

ADAPTER = ROOT / "flows" / "drift" / "evidently_drift.py"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_adapter_imports_evidently():
    sources = [ROOT / "edgeloop_cli.py"]
    for package in ("edge_runtime", "hub", "flows", "sim", "demo"):
        sources += sorted((ROOT / package).rglob("*.py"))
    offenders = [str(p.relative_to(ROOT)) for p in sources
                 if p != ADAPTER and any(m.split(".")[0] == "evidently"
                                         for m in imported_modules(p))]
    assert offenders == []


def test_drift_cli_config_and_fleet_logic_load_without_evidently():
    probe = ("import sys, flows.drift.cli, flows.drift.settings, flows.drift.verdict, "
             "flows.drift.fleet, flows.reference; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'evidently'))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
