"""A Label Studio server on this machine, for the demo and the tests: started from
`.venv-labelstudio` (its own venv: it pins an older Prefect) on 127.0.0.1, HOME and data under a
folder we own, stopped with SIGTERM to its process group.

The first start on an empty data folder spends ~40 s (minutes on a busy 2-core machine) in
migrations, so a migrated data folder is kept as a template (keyed by the server's version) and
copied for each new server: later starts take ~5 s.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LS_VENV = ROOT / ".venv-labelstudio"
LS_BIN = LS_VENV / "bin" / "label-studio"
TOKEN = "e1d9e5a0c0ffee0123456789abcdef0123456789"  # 40 hex: a legacy API token
USER, PASSWORD = "annotator@example.com", "edgeloop-demo-password"
FIRST_START_S = 240.0  # migrations on a busy 2-core machine
START_S = 90.0


class LabelStudioStartError(RuntimeError):
    """The server did not come up (its log's tail is in the message)."""


@dataclass(frozen=True)
class RunningLabelStudio:
    url: str
    token: str
    files_root: Path  # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
    data_dir: Path
    log: Path
    user: str = USER
    password: str = PASSWORD


def server_version() -> str:
    found = sorted(LS_VENV.glob("lib/python*/site-packages/label_studio-*.dist-info"))
    return found[-1].name.removeprefix("label_studio-").removesuffix(".dist-info") if found \
        else "unknown"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(data_dir: Path, home: Path, files_root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LABEL_STUDIO_", "PYTHON", "VIRTUAL_ENV", "DJANGO"))}
    env.update({
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"), "XDG_DATA_HOME": str(home / ".local/share"),
        "TMPDIR": str(home / "tmp"),
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": USER, "LABEL_STUDIO_PASSWORD": PASSWORD,
        "LABEL_STUDIO_USER_TOKEN": TOKEN, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files_root),
        "SSRF_PROTECTION_ENABLED": "false",  # webhooks post to 127.0.0.1
        "LATEST_VERSION_CHECK": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
    })
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return env


@contextlib.contextmanager
def label_studio(data_dir: Path, home: Path, files_root: Path, log: Path,
                 timeout_s: float = START_S, port: int | None = None
                 ) -> Iterator[RunningLabelStudio]:
    """A server on `data_dir` until the block ends (SIGTERM to the process group it leads)."""
    if not LS_BIN.is_file():
        raise LabelStudioStartError(f"no Label Studio server at {LS_BIN} (run `make setup`)")
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    files_root.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [str(LS_BIN), "start", "--no-browser", "--internal-host", "127.0.0.1",
             "--port", str(port), "--host", url],
            env=_environment(data_dir, home, files_root), stdout=out, stderr=subprocess.STDOUT,
            cwd=home, start_new_session=True)
    try:
        _wait_ready(url, process, log, timeout_s)
        yield RunningLabelStudio(url, TOKEN, files_root, data_dir, log)
    finally:
        _stop(process)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=5.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LabelStudioStartError(f"Label Studio exited ({process.returncode}):\n"
                                            + log.read_text(errors="replace")[-3000:])
            try:
                if http.get("/health").json().get("status") == "UP":
                    # Our own server, with our token (a busy port would have moved it).
                    who = http.get("/api/current-user/whoami",
                                   headers={"Authorization": f"Token {TOKEN}"})
                    if who.status_code == 200 and who.json().get("email") == USER:
                        return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
    raise LabelStudioStartError(f"Label Studio at {url} not ready in {timeout_s:.0f} s:\n"
                                + log.read_text(errors="replace")[-3000:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def migrated_template(cache: Path, scratch: Path) -> Path:
    """A data folder with migrations applied and our user and token in it (made once under
    `cache`, kept; two processes at once build it once)."""
    template = cache / f"labelstudio-template-{server_version()}"
    template.parent.mkdir(parents=True, exist_ok=True)
    with open(template.parent / f".{template.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (template / ".complete").exists():
            return template
        building = scratch / "template"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        with label_studio(building, scratch / "home-template", scratch / "files-template",
                          scratch / "template.log", FIRST_START_S):
            pass
        shutil.rmtree(template, ignore_errors=True)
        shutil.copytree(building, template)
        (template / ".complete").write_text(server_version())
    return template


@contextlib.contextmanager
def fresh_label_studio(base: Path, cache: Path, port: int | None = None
                       ) -> Iterator[RunningLabelStudio]:
    """A server on a fresh copy of the migrated template, its files under `base`."""
    data = base / "data"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(migrated_template(cache, base), data,
                    ignore=shutil.ignore_patterns(".complete"))
    with label_studio(data, base / "home", base / "files", base / "server.log",
                      port=port) as server:
        yield server
