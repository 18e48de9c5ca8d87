"""`kill -9` of the hub during ingest loses no batch it acknowledged (real process, real SQLite)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx

from hub.client import HubClient
from tests.support.hub import ADMIN_TOKEN
from tests.support.hub_process import EDGELOOP, clean_env, free_port
from tests.support.records import T0, batch, gz

BATCH = 100
ROUNDS = 3


def start_hub(cwd: Path, port: int) -> subprocess.Popen[str]:
    server = subprocess.Popen([EDGELOOP, "hub", "serve", "--port", str(port)], cwd=cwd,
                              env=clean_env(EDGELOOP_ADMIN_TOKEN=ADMIN_TOKEN),
                              stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False).status_code == 200:
                return server
        except httpx.TransportError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("hub did not start") from None
            time.sleep(0.05)


def post_until_refused(url: str, token: str, first: int, acked: list[int]) -> None:
    """Post consecutive batches; remember the frame ids of every batch the hub acknowledged."""
    frame = first
    with httpx.Client(base_url=url, trust_env=False, timeout=5.0,
                      headers={"Authorization": f"Bearer {token}",
                               "Content-Type": "application/json",
                               "Content-Encoding": "gzip"}) as http:
        while True:
            ids = list(range(frame, frame + BATCH))
            try:
                response = http.post("/v1/telemetry", content=gz(batch("cam-1", ids)))
            except httpx.TransportError:
                return  # the hub is gone
            if response.status_code == 200:
                acked.extend(ids)
            frame += BATCH


def test_no_acknowledged_batch_is_lost_when_the_hub_is_killed(tmp_path: Path) -> None:
    rng = random.Random(7)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_hub(tmp_path, port)
    with HubClient(url, admin_token=ADMIN_TOKEN) as admin:
        token = admin.add_device("cam-1").token
    acked: list[int] = []
    for round_ in range(ROUNDS):
        poster = threading.Thread(target=post_until_refused,
                                  args=(url, token, round_ * 1_000_000, acked))
        poster.start()
        time.sleep(rng.uniform(0.5, 1.5))
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        poster.join(timeout=30)
        server = start_hub(tmp_path, port)
    try:
        with HubClient(url, admin_token=ADMIN_TOKEN) as admin:
            stored = admin.telemetry(T0 - timedelta(days=1), T0 + timedelta(days=365),
                                     device_id="cam-1")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
    assert len(acked) >= ROUNDS * BATCH, "every round acknowledged something before the kill"
    assert not stored.attrs.get("truncated")
    assert not set(acked) - set(stored["frame_id"]), "acknowledged records were lost"
