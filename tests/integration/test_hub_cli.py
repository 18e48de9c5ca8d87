"""`edgeloop hub serve` and `edgeloop hub device ...` as an operator runs them, in subprocesses."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from edge_runtime.contract import DeviceStatus
from hub.models import DeviceRecord
from tests.support.hub import ADMIN_TOKEN
from tests.support.hub_process import EDGELOOP, clean_env, free_port
from tests.support.records import T0, batch, gz


def edgeloop(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EDGELOOP, "hub", *args], cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=60)


def start_serving(cwd: Path, *args: str) -> tuple[str, subprocess.Popen[str]]:
    port = free_port()
    server = subprocess.Popen(
        [EDGELOOP, "hub", "serve", "--port", str(port), *args], cwd=cwd,
        env=clean_env(EDGELOOP_ADMIN_TOKEN=ADMIN_TOKEN), stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", trust_env=False).status_code == 200:
                break
        except httpx.TransportError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hub did not start: {server.communicate()[1]}") from None
            time.sleep(0.1)
    return url, server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    url, server = start_serving(tmp_path)
    try:
        yield url, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            server.communicate(timeout=20)


def test_operator_adds_lists_and_revokes_devices(
        served: tuple[str, subprocess.Popen[str]], tmp_path: Path) -> None:
    url, server = served
    added = edgeloop("device", "add", "cam-1", "--channel", "canary", "--hub", url,
                     cwd=tmp_path, EDGELOOP_ADMIN_TOKEN=ADMIN_TOKEN)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert len(token) >= 40 and "\n" not in token  # only the token on stdout, for scripts
    again = edgeloop("device", "add", "cam-1", "--hub", url, "--admin-token", ADMIN_TOKEN,
                     cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      trust_env=False) as http:
        status = DeviceStatus(device_id="cam-1", sent_at=T0, model_version="seed-3",
                              uptime_s=5.0, frames_seen=4321, spool_telemetry=17,
                              spool_samples=2, spool_bytes=3_000_000, dropped={"x": 4})
        assert http.post("/v1/heartbeat", content=status.model_dump_json(),
                         headers={"Content-Type": "application/json"}).status_code == 200
        listed = edgeloop("device", "list", "--hub", url, cwd=tmp_path,
                          EDGELOOP_ADMIN_TOKEN=ADMIN_TOKEN)
        as_json = edgeloop("device", "list", "--json", cwd=tmp_path, EDGELOOP_HUB_URL=url,
                           EDGELOOP_ADMIN_TOKEN=ADMIN_TOKEN)
        revoked = edgeloop("device", "revoke", "cam-1", "--hub", url, cwd=tmp_path,
                           EDGELOOP_ADMIN_TOKEN=ADMIN_TOKEN)
        refused = http.post("/v1/telemetry", content=gz(batch("cam-1", [1])),
                            headers={"Content-Type": "application/json",
                                     "Content-Encoding": "gzip"})
    header, row = listed.stdout.splitlines()
    assert header.split()[:3] == ["DEVICE", "CHANNEL", "STATE"]
    assert row.split()[:4] == ["cam-1", "canary", "active", "seed-3"]
    assert "17/2/3.0" in row and "x=4" in row and row.split()[-2:] == ["4321", "-"]
    record = DeviceRecord.model_validate_json(as_json.stdout)
    assert record.status is not None and record.status.frames_seen == 4321
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert refused.status_code == 403

    server.send_signal(signal.SIGINT)
    _, log = server.communicate(timeout=20)
    assert server.returncode == 0
    banner = [line for line in log.splitlines() if "edgeloop hub on" in line]
    assert banner and url in banner[0] and "var/hub/hub.sqlite" in banner[0]
    assert (tmp_path / "var" / "hub" / "hub.sqlite").exists()  # the embedded default
    assert "Traceback" not in log


@pytest.mark.parametrize("args, env, message", [
    (["serve"], {}, "no admin token"),
    (["serve", "--admin-token", "short"], {}, "at least 16"),
    (["serve", "--db", "mysql://h/db"], {"EDGELOOP_ADMIN_TOKEN": ADMIN_TOKEN}, "sqlite:///"),
    (["serve", "--port", "70000"], {"EDGELOOP_ADMIN_TOKEN": ADMIN_TOKEN}, "port"),
    (["serve", "--blobs", "nosuchfs://bucket/x"], {"EDGELOOP_ADMIN_TOKEN": ADMIN_TOKEN},
     "nosuchfs"),
    (["serve"], {"EDGELOOP_ADMIN_TOKEN": ADMIN_TOKEN, "EDGELOOP_HUB_PORT": "http"}, "HUB_PORT"),
    (["serve", "--db", "postgresql+psycopg://postgres@127.0.0.1:9/hub"],
     {"EDGELOOP_ADMIN_TOKEN": ADMIN_TOKEN}, "cannot open the hub database"),
    (["serve", "--db", "postgresql+psycopg://postgres@127.0.0.1:5432/edgeloop_no_such_db"],
     {"EDGELOOP_ADMIN_TOKEN": ADMIN_TOKEN}, 'database "edgeloop_no_such_db" does not exist'),
    (["device", "list"], {}, "no admin token"),
    (["device", "list", "--hub", "http://127.0.0.1:9"], {"EDGELOOP_ADMIN_TOKEN": ADMIN_TOKEN},
     "ConnectError"),
])
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], env: dict[str, str],
                                 message: str) -> None:
    result = edgeloop(*args, cwd=tmp_path, **env)
    assert result.returncode != 0
    assert result.stderr.startswith("edgeloop: error:"), result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_device_list_json_is_one_object_per_line(
        served: tuple[str, subprocess.Popen[str]], tmp_path: Path) -> None:
    url, _ = served
    for name in ("cam-a", "cam-b"):
        edgeloop("device", "add", name, "--hub", url, cwd=tmp_path,
                 EDGELOOP_ADMIN_TOKEN=ADMIN_TOKEN)
    listed = edgeloop("device", "list", "--json", "--hub", url, cwd=tmp_path,
                      EDGELOOP_ADMIN_TOKEN=ADMIN_TOKEN)
    assert [json.loads(line)["device_id"] for line in listed.stdout.splitlines()] == [
        "cam-a", "cam-b"]


def test_several_worker_processes_share_the_port_and_store_each_record_once(
        tmp_path: Path) -> None:
    import psutil  # type: ignore[import-untyped]

    from hub.client import HubClient

    url, server = start_serving(tmp_path, "--workers", "2")
    try:
        workers = psutil.Process(server.pid).children()
        assert len(workers) == 2
        with HubClient(url, admin_token=ADMIN_TOKEN) as admin:
            tokens = {f"cam-{i}": admin.add_device(f"cam-{i}").token for i in range(4)}
        busy = {w.pid: sum(w.cpu_times()[:2]) for w in workers}

        def post(device_id: str) -> None:
            for start in range(0, 400, 50):  # a new connection each time; sent twice, stored once
                with HubClient(url, device_token=tokens[device_id]) as device:
                    for _ in range(2):
                        device.post_telemetry(batch(device_id, range(start, start + 50)))

        with ThreadPoolExecutor(4) as pool:
            for future in [pool.submit(post, d) for d in tokens]:
                future.result()
        busy = {w.pid: sum(w.cpu_times()[:2]) - busy[w.pid] for w in workers}
        with HubClient(url, admin_token=ADMIN_TOKEN) as admin:
            table = admin.telemetry(T0 - timedelta(days=1))
            counts = {d.device_id: d.telemetry_stored for d in admin.devices()}
        assert len(table) == 1600 and not table.duplicated(["device_id", "frame_id"]).any()
        assert counts == dict.fromkeys(tokens, 400)
        assert min(busy.values()) > 0.05, f"both workers ingest (CPU seconds: {busy})"
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "2 processes" in err and "Traceback" not in err
    assert "2 hub processes share one SQLite file" in err  # the operator is told to use PG
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


def test_a_worker_that_dies_stops_the_hub(tmp_path: Path) -> None:
    import psutil

    _, server = start_serving(tmp_path, "--workers", "2")
    try:
        workers = psutil.Process(server.pid).children()
        workers[0].kill()
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
        _, err = server.communicate(timeout=30)
    assert not workers[1].is_running() or workers[1].status() == psutil.STATUS_ZOMBIE
    assert "edgeloop hub stopped" in err
