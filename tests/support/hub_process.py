"""For tests that run `edgeloop hub` as its own process: the console script, an environment
without the caller's EDGELOOP_ settings, and a free port on 127.0.0.1 to serve on."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELOOP_")}
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
