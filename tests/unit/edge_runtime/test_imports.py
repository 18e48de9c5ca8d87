"""The device agent must run without the cloud's heavy dependencies."""

import subprocess
import sys

FORBIDDEN = ("torch", "ultralytics", "prefect", "evidently", "dvc", "fastapi", "sqlalchemy",
             "sim", "hub", "flows", "demo")

PROBE = f"""
import importlib, pkgutil, sys
import edge_runtime
for module in pkgutil.walk_packages(edge_runtime.__path__, "edge_runtime."):
    importlib.import_module(module.name)
importlib.import_module("edgeloop_cli").cli.get_command(None, "edge")
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({FORBIDDEN!r}))
print(",".join(loaded))
"""


def test_importing_every_edge_module_loads_no_cloud_dependency():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
