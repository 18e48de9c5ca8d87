"""The hub's client and CLI stay light: flows and operators need no server stack to use them."""

from __future__ import annotations

import subprocess
import sys

SERVER_SIDE = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "fsspec", "cv2", "pandas")

PROBE = f"""
import sys
import hub.client, hub.cli, hub.models, hub.settings
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({SERVER_SIDE!r}))
print(",".join(loaded))
"""


def test_client_and_cli_import_no_server_side_package() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
