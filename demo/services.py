"""The demo's servers as child processes on 127.0.0.1: the hub, a Prefect server, the Evidently
UI and the edge agents (Label Studio: `demo.labelstudio_server`). Each writes its log under the
demo's folder, is waited for until it answers, and is stopped (SIGTERM to its process group, then
SIGKILL) when the demo ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from demo.labelstudio_server import free_port

BIN = Path(sys.executable).parent


class ServiceError(RuntimeError):
    """A server did not start (the message names it and quotes its log)."""


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def spawn(name: str, cmd: Sequence[str], log: Path, *, url: str = "",
          env: dict[str, str] | None = None, cwd: Path | None = None) -> Service:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT,
                                   env=env, cwd=cwd, start_new_session=True)
    return Service(name, url, process, log)


def wait_until(service: Service, ready: Callable[[], bool], timeout_s: float) -> Service:
    """Polls `ready` until it is true; the service dying or the time running out is an error."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not service.alive():
            raise ServiceError(f"{service.name} exited ({service.process.returncode}):\n"
                               f"{service.log_tail()}")
        with contextlib.suppress(httpx.HTTPError, ValueError, OSError):
            if ready():
                return service
        time.sleep(0.5)
    service.stop()
    raise ServiceError(f"{service.name} at {service.url} not ready in {timeout_s:.0f} s:\n"
                       f"{service.log_tail()}")


def http_ok(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        return httpx.get(url, timeout=3.0, trust_env=False).status_code == 200
    return ready


def start_hub(folder: Path, admin_token: str, env: dict[str, str], *,
              timeout_s: float = 60.0) -> Service:
    """`edgeloop hub serve` on SQLite and a local blob folder under `folder`."""
    port = free_port()
    service = spawn("hub", [str(BIN / "edgeloop"), "hub", "serve", "--port", str(port),
                            "--db", f"sqlite:///{folder / 'hub.sqlite'}",
                            "--blobs", str(folder / "blobs")],
                    folder / "hub.log", url=f"http://127.0.0.1:{port}",
                    env={**env, "EDGELOOP_ADMIN_TOKEN": admin_token})
    return wait_until(service, http_ok(f"{service.url}/healthz"), timeout_s)


def start_prefect(home: Path, env: dict[str, str], *, timeout_s: float = 120.0) -> Service:
    """A local Prefect server (its database under `home`), so flow runs show in its UI."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = spawn("prefect", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                "--port", str(port)],
                    home / "server.log", url=url,
                    env={**env, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"{url}/api",
                         "PREFECT_UI_API_URL": f"{url}/api",
                         "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    return wait_until(service, http_ok(f"{url}/api/health"), timeout_s)


def start_evidently_ui(workspace: Path, log: Path, env: dict[str, str], *,
                       timeout_s: float = 60.0) -> Service:
    """Evidently's UI over the drift flow's workspace (its snapshots of every check)."""
    port = free_port()
    workspace.mkdir(parents=True, exist_ok=True)
    service = spawn("evidently", [str(BIN / "evidently"), "ui", "--workspace", str(workspace),
                                  "--host", "127.0.0.1", "--port", str(port)],
                    log, url=f"http://127.0.0.1:{port}", env=env)
    return wait_until(service, http_ok(service.url), timeout_s)


@dataclass(frozen=True)
class AgentSpec:
    device_id: str
    token: str
    source: str  # sim:SPEC
    state: Path  # provisioned by `edgeloop edge provision`
    spool: Path
    status_file: Path


def start_agent(spec: AgentSpec, hub_url: str, *, fps: float, update_every_s: float,
                sampling: Path, log: Path, env: dict[str, str], cwd: Path) -> Service:
    """`edgeloop edge run` for one simulated device (one inference thread)."""
    cmd = [str(BIN / "edgeloop"), "edge", "run", "--state", str(spec.state),
           "--source", spec.source, "--fps", f"{fps:g}", "--hub", hub_url,
           "--device-id", spec.device_id, "--spool", str(spec.spool),
           "--sampling", str(sampling), "--update-every", f"{update_every_s:g}",
           "--threads", "1", "--log-every", "5", "--status-file", str(spec.status_file)]
    service = spawn(f"agent {spec.device_id}", cmd, log,
                    env={**env, "EDGELOOP_DEVICE_TOKEN": spec.token}, cwd=cwd)
    service.extra["device_id"] = spec.device_id
    return service


@contextlib.contextmanager
def stopped_at_exit(services: list[Service]) -> Iterator[list[Service]]:
    """Stops every service in `services` (newest first) when the block ends, however it ends."""
    try:
        yield services
    finally:
        for service in reversed(services):
            service.stop()
