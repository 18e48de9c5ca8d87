"""Peak memory of one hub process under bursts of hostile uploads (issue 18, decoding budgets).

Starts `edgeloop hub serve` on a free 127.0.0.1 port with a throwaway SQLite database, registers
a device, then fires each class of hostile upload `--burst` times at once: a tiny JPEG claiming a
huge frame, a 16-bit RGBA PNG under the pixel cap, a gzip batch of far too many records, a gzip
batch of tiny JSON values, a gzip bomb, an oversized body; then valid traffic. Before each class
the hub's peak RSS is reset (/proc/PID/clear_refs) and read back (VmHWM) afterwards. Each class's
peak over the baseline is held against a bound derived from the hub's default limits.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_hub_ingest import HOST, build_bodies, free_port, wait_healthy  # noqa: E402
from hub.client import HubClient  # noqa: E402
from hub.db import make_engine, metadata  # noqa: E402
from hub.limits import VALUE_BYTES  # noqa: E402
from hub.settings import MIB, HubLimits  # noqa: E402
from tests.support.records import jpeg, jpeg_claiming, meta, stats, zero_png  # noqa: E402


@dataclass(frozen=True)
class Upload:
    path: str  # "telemetry" or "samples"
    body: bytes
    size: tuple[int, int] = (1, 1)  # the frame size the sample's meta states


def hostile_classes(device_id: str, limits: HubLimits, quick: bool) -> dict[str, Upload]:
    side = int((limits.image_pixels * 0.9) ** 0.5)  # under the pixel cap, tiny on the wire
    records = 8000 if quick else 70_000  # over MAX_BATCH_RECORDS, under telemetry_json_bytes
    record = stats(device_id, 0).model_dump_json().encode()
    many = b'{"device_id":"%s","sent_at":"2026-01-01T00:00:00Z","records":[' % (
        device_id.encode()) + b",".join([record] * records) + b"]}"  # not a valid batch
    values = b'{"device_id":"%s","sent_at":"2026-01-01T00:00:00Z","records":[' % (
        device_id.encode()) + b"[]," * (limits.telemetry_json_bytes // 4) + b"[]]}"
    zeros = bytes(limits.telemetry_json_bytes * 2)
    oversized = bytes(limits.telemetry_body_bytes + MIB)
    claim = jpeg_claiming(side * 3 // 2, side * 2 // 3)
    wide = zero_png(side, side, depth=16, colour=6, channels=4)
    # Valid and as heavy as the decoded budget lets a frame be: what the decode slots bound.
    heavy_side = int(min(limits.image_decoded_bytes / 3, limits.image_pixels) ** 0.5 * 0.97)
    heavy = zero_png(heavy_side, heavy_side, colour=2, channels=3)
    return {
        "jpeg_claiming_huge_frame": Upload("samples", claim, (side * 3 // 2, side * 2 // 3)),
        "png_16bit_rgba": Upload("samples", wide, (side, side)),
        "png_heavy_but_valid": Upload("samples", heavy, (heavy_side, heavy_side)),
        "gzip_too_many_records": Upload("telemetry", gzip.compress(many, 6)),
        "gzip_tiny_json_values": Upload("telemetry", gzip.compress(values, 6)),
        "gzip_bomb": Upload("telemetry", gzip.compress(zeros, 9)),
        "oversized_body": Upload("telemetry", oversized),  # refused before it is read
    }


HEAVY = "png_heavy_but_valid"  # stored (200), not refused: what the decode slots bound


def bound_bytes(upload: Upload, burst: int, limits: HubLimits) -> int:
    """What a burst may cost over the baseline with these limits: the decode slots (OpenCV holds
    a second working copy: 2x) or the telemetry budget (values and inflated bytes, in units of
    VALUE_BYTES), and the bodies in flight as they were sent."""
    if upload.path == "samples":
        work = limits.image_decode_slots * 2 * limits.image_decoded_bytes
    else:
        work = limits.telemetry_values_in_flight * VALUE_BYTES
    return work + burst * min(len(upload.body), limits.telemetry_body_bytes)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def post(url: str, token: str, device_id: str, upload: Upload, frame_id: int) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120.0, trust_env=False) as http:
        try:
            if upload.path == "samples":
                sent = meta(device_id, frame_id, *upload.size).model_dump_json()
                response = http.post("/v1/samples", data={"meta": sent},
                                     files={"image": ("f.jpg", upload.body, "image/jpeg")})
            else:
                response = http.post("/v1/telemetry", content=upload.body, headers={
                    "Content-Type": "application/json", "Content-Encoding": "gzip"})
        except httpx.RemoteProtocolError:  # the hub may close on a 413 before reading it all
            return 413
        return response.status_code


def burst(url: str, token: str, device_id: str, upload: Upload, count: int,
          pid: int) -> dict[str, Any]:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    with ThreadPoolExecutor(count) as pool:
        statuses = list(pool.map(lambda i: post(url, token, device_id, upload, i), range(count)))
    peak = status_kib(pid, "VmHWM") / 1024
    return {"statuses": sorted(set(statuses)), "peak_mib": round(peak, 1),
            "body_bytes": len(upload.body)}


def valid_traffic(url: str, token: str, device_id: str) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60.0, trust_env=False) as http:
        batches = build_bodies(device_id, 2, 500, 0)
        statuses = [http.post("/v1/telemetry", content=b, headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip"}).status_code
            for b in batches]
        statuses.append(http.post("/v1/samples", data={"meta": meta(
            device_id, 10**6).model_dump_json()}, files={"image": (
                "f.jpg", jpeg(64, 48), "image/jpeg")}).status_code)
    return statuses


@contextlib.contextmanager
def hub_process(work: Path,
                db_url: str | None) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """`edgeloop hub serve` with a fresh database (SQLite, or `db_url` emptied) and blobs:
    (url, a device token, the process)."""
    work.mkdir(parents=True)
    if db_url is not None:
        drop_hub_tables(db_url)
    port = free_port()
    url = f"http://{HOST}:{port}"
    admin_token = secrets.token_urlsafe(24)
    env = {**os.environ, "EDGELOOP_ADMIN_TOKEN": admin_token}
    edgeloop = Path(sys.executable).parent / "edgeloop"
    server = subprocess.Popen(
        [str(edgeloop), "hub", "serve", "--host", HOST, "--port", str(port),
         "--db", db_url or f"sqlite:///{work / 'hub.sqlite'}", "--blobs", str(work / "blobs")],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(url, server, timeout_s=60.0)
        with HubClient(url, admin_token=admin_token) as admin:
            yield url, admin.add_device("bench-1").token, server
        if server.poll() is not None:
            raise RuntimeError(f"the hub exited with {server.returncode}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def drop_hub_tables(db_url: str) -> None:
    """A fresh start on a shared database: the hub makes its tables again when it starts."""
    engine = make_engine(db_url, busy_timeout_s=5.0)
    try:
        metadata.drop_all(engine)
    finally:
        engine.dispose()


def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    """Each class against a fresh hub: freed memory that the allocator keeps would otherwise
    carry one class's peak into the next one's baseline."""
    limits = HubLimits()
    classes: dict[str, dict[str, Any]] = {}
    for name, upload in hostile_classes("bench-1", limits, args.quick).items():
        with hub_process(work / name, args.db) as (url, token, server):
            before = valid_traffic(url, token, "bench-1")  # imports and caches, then the baseline
            baseline = status_kib(server.pid, "VmRSS") / 1024
            result = burst(url, token, "bench-1", upload, args.burst, server.pid)
            result["valid_statuses"] = before + valid_traffic(url, token, "bench-1")
        result["baseline_mib"] = round(baseline, 1)
        result["over_baseline_mib"] = round(result["peak_mib"] - baseline, 1)
        result["bound_mib"] = round(bound_bytes(upload, args.burst, limits) / MIB, 1)
        classes[name] = result
    refused_4xx = all(all(400 <= s < 500 for s in c["statuses"])
                      for name, c in classes.items() if name != HEAVY)
    heavy_stored = classes[HEAVY]["statuses"] == [200]
    within = all(c["over_baseline_mib"] <= c["bound_mib"] for c in classes.values())
    return {
        "bench": "hub_hostile_memory", "burst": args.burst, "quick": args.quick,
        "db": "sqlite" if args.db is None else "postgresql",
        "limits": {f.name: getattr(limits, f.name) for f in fields(limits)
                   if f.name.startswith(("image_", "telemetry_"))},
        "peak_over_baseline_mib": max(c["over_baseline_mib"] for c in classes.values()),
        "bound_mib": max(c["bound_mib"] for c in classes.values()),
        "classes": classes,
        "met": {"all_refused_4xx": refused_4xx, "heavy_stored": heavy_stored,
                "within_bound": within,
                "valid_ok": all(set(c["valid_statuses"]) == {200} for c in classes.values())},
    }


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--burst", type=int, default=16, help="uploads of each class at once")
    parser.add_argument("--quick", action="store_true", help="smaller hostile bodies (tests)")
    parser.add_argument("--db", default=None,
                        help="a PostgreSQL URL whose hub tables may be dropped (default: a "
                             "throwaway SQLite file per class)")
    return parser


def main() -> None:
    parser = make_parser()
    args = parser.parse_args()
    if not 1 <= args.burst <= 64:
        parser.error("--burst 1..64")
    with tempfile.TemporaryDirectory(prefix="bench_hostile_") as tmp:
        result = run(args, Path(tmp))
    if args.json:
        print(json.dumps(result))
    else:
        for name, c in result["classes"].items():  # type: ignore[attr-defined]
            print(f"{name}: {c['statuses']}, +{c['over_baseline_mib']} MiB "
                  f"(bound {c['bound_mib']} MiB)")
        print(f"peak over baseline {result['peak_over_baseline_mib']} MiB; "
              f"met: {result['met']}")


if __name__ == "__main__":
    main()
