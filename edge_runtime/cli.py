"""`edgeloop edge`: run the device agent, provision its model updates, replay images through
its pipeline, benchmark it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edge_runtime.detector import Detector

if TYPE_CHECKING:
    from edge_runtime.agent import Progress

MODEL = click.option("--model", required=True, type=click.Path(path_type=Path, dir_okay=False),
                     help="YOLO detection model exported to ONNX.")
IMGSZ = click.option("--imgsz", type=click.IntRange(min=32), default=None,
                     help="Network input size (default: the model's own).")
THREADS = click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
                       help="ONNX Runtime intra-op threads (0 = one per core).")


@click.group()
def edge() -> None:
    """The device agent: ONNX inference, telemetry, frame sampling, store-and-forward."""


@edge.command()
@MODEL
@click.option("--source", required=True, type=click.Path(path_type=Path, file_okay=False,
                                                         exists=True),
              help="Folder of images to replay.")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Parquet file to write, one FrameStats row per image.")
@IMGSZ
@THREADS
@click.option("--device-id", default="replay", show_default=True,
              help="Device id written into every row.")
def replay(model: Path, source: Path, out: Path, imgsz: int | None, threads: int,
           device_id: str) -> None:
    """Run the exact device pipeline over an image folder and write its telemetry as Parquet."""
    from edge_runtime.replay import replay_rows, write_parquet
    from edge_runtime.sources import open_source

    detector = Detector(model, imgsz=imgsz, threads=threads)
    frames = open_source(str(source))
    count = sum(1 for p in source.iterdir() if p.is_file())
    with click.progressbar(length=count, label="replaying", file=sys.stderr) as bar:
        rows = replay_rows(detector, frames, device_id=device_id, progress=bar.update)
    write_parquet(rows, out)
    click.echo(f"wrote {len(rows)} rows to {out} (model {detector.info.version})")


def _release_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from pydantic import TypeAdapter, ValidationError

    from edge_runtime.contract import Name

    try:
        return TypeAdapter(Name).validate_python(value)
    except ValidationError:
        raise click.BadParameter(f"{value!r} is not a release name (letters, digits, '_.-', "
                                 "at most 64)") from None


@edge.command()
@click.option("--state", "state_dir", required=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="The updater's state folder to create (kept on persistent storage).")
@click.option("--trusted-root", required=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The release repository's trusted TUF root (1.root.json), shipped with "
                   "the device.")
@click.option("--model", required=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The first model (YOLO detection model exported to ONNX).")
@click.option("--release-id", default="factory", show_default=True, callback=_release_name,
              help="The release the first model is.")
@click.option("--version", type=click.IntRange(min=0), default=0, show_default=True,
              help="Its release version: releases below it are refused.")
@click.option("--device-id", default=None,
              help="This device's name at the hub (as `edgeloop hub device add` registered "
                   "it): `edge run --state` then takes it as its --device-id.")
def provision(state_dir: Path, trusted_root: Path, model: Path, release_id: str,
              version: int, device_id: str | None) -> None:
    """First install: the trusted root and the first model, for `edge run --state`."""
    from edge_runtime.update.config import UpdaterError
    from edge_runtime.update.slots import SlotError
    from edge_runtime.update.updater import Updater

    try:
        pointer = Updater.provision(state_dir, trusted_root, model, release_id=release_id,
                                    version=version, device_id=device_id)
    except (UpdaterError, SlotError, OSError) as error:
        raise click.ClickException(str(error)) from None
    named = f" for device {device_id}" if device_id else ""
    click.echo(f"provisioned {state_dir}{named}: release {pointer.content.release_id} "
               f"v{pointer.content.version} in slot {pointer.slot.value}")


@edge.command()
@click.option("--model", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="YOLO detection model exported to ONNX (or --state).")
@click.option("--state", "state_dir", default=None,
              type=click.Path(path_type=Path, file_okay=False),
              help="The updater's state folder, made by `edge provision` (instead of --model).")
@click.option("--update-every", "update_every_s", default=None, type=click.FloatRange(min=0.1),
              help="Seconds between polls of the hub for a new release (with --state; "
                   "default 60).")
@click.option("--source", default=None,
              help="Image folder, video file, camera index, rtsp/http URL, or the simulator "
                   "as sim:SCENARIO[@ONSET][,SCENARIO@ONSET...] (each scenario from its onset "
                   "frame on, e.g. sim:new_variant@600,camera_bump@300).")
@click.option("--fps", type=click.FloatRange(min=0.1), default=None,
              help="Pace the source to at most this many frames per second (a camera's rate; "
                   "the simulator is otherwise as fast as the CPU).")
@click.option("--hub", "hub_url", default=None, help="Hub URL; without it the spool only fills.")
@click.option("--device-id", default=None,
              help="This device's name at the hub (or EDGELOOP_DEVICE_ID; default: the name "
                   "`edge provision --device-id` stored in --state, else edge-1).")
@click.option("--token", default=None, help="Device token for the hub (or EDGELOOP_DEVICE_TOKEN).")
@click.option("--spool", "spool_dir", default=None,
              type=click.Path(path_type=Path, file_okay=False),
              help="Folder of the outbox (default var/spool).")
@click.option("--spool-mb", default=None, type=click.IntRange(min=1),
              help="Disk budget of the spool in MiB (default 512); frames go before statistics.")
@click.option("--sampling", "sampling_path", default=None,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Sampling policy over the packaged one, the project's configs/sampling.yaml "
                   "and edgeloop.yaml (sampling:).")
@click.option("--config", default=None, type=click.Path(path_type=Path, dir_okay=False),
              help="Device settings (these options' names with _) over the packaged edge.yaml, "
                   "the project's configs/edge.yaml and edgeloop.yaml (edge:); the "
                   "environment and these options win.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None,
              help="Stop after this many frames (default: until the source ends).")
@IMGSZ
@click.option("--threads", type=click.IntRange(min=0), default=None,
              help="ONNX Runtime intra-op threads (default 0 = one per core).")
@click.option("--conf", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Confidence threshold of the detector (default 0.25; an export with NMS "
                   "inside keeps the one it was exported with as a floor).")
@click.option("--log-every", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between progress lines.")
@click.option("--status-file", default=None, type=click.Path(path_type=Path, dir_okay=False),
              help="Also write each progress line as JSON to this file (replaced atomically): "
                   "for a local health check or a supervisor.")
def run(config: Path | None, sampling_path: Path | None, max_frames: int | None,
        log_every: float, status_file: Path | None, **flags: Any) -> None:
    """Run the agent: infer on every frame, log telemetry, keep samples, upload when online.

    With --state it serves the release the updater installed, and installs the releases the
    hub assigns while it runs: a new model that fails on live frames is rolled back.
    """
    from edge_runtime.device import Device, load_device_settings
    from edge_runtime.update.config import UpdaterError
    from edge_runtime.update.slots import SlotError
    from edge_runtime.update.steps import device_identity

    try:
        if flags["device_id"] is None and flags["state_dir"] is not None and \
                "EDGELOOP_DEVICE_ID" not in os.environ:  # the name it was provisioned with
            flags["device_id"] = device_identity(Path(flags["state_dir"]))
        settings = load_device_settings(os.environ, project=Path.cwd(), config=config,
                                        sampling=sampling_path, **flags)
        device = Device(settings)
    except (UpdaterError, SlotError) as error:
        raise click.ClickException(str(error)) from None
    with device:
        frames = device.frames()  # a source that cannot be opened is refused before the run
        info = device.detector.info
        click.echo(f"edge agent {settings.device_id}: model {info.version} "
                   f"({', '.join(info.names)}) on {info.providers[0]}, "
                   f"source {settings.source}, spool {device.spool.path}", err=True)
        final = device.run(frames, max_frames=max_frames, log_every_s=log_every,
                           log=lambda p: _log_progress(p, status_file))
    click.echo(final.line(), err=True)


def _log_progress(progress: Progress, status_file: Path | None) -> None:
    click.echo(progress.line(), err=True)
    if status_file is not None:
        import dataclasses
        import json

        status_file.parent.mkdir(parents=True, exist_ok=True)
        partial = status_file.with_name(status_file.name + ".tmp")
        partial.write_text(json.dumps(dataclasses.asdict(progress)))
        partial.replace(status_file)


@edge.command()
@MODEL
@click.option("--imgsz", type=click.IntRange(min=32), default=640, show_default=True)
@click.option("--frames", type=click.IntRange(min=10), default=200, show_default=True)
@THREADS
@click.option("--sampling", "sampling_path", default=None,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Sampling policy over the packaged one and the project's.")
@click.option("--burst", is_flag=True,
              help="Time the first frames of an hour, every sampling budget still open "
                   "(default: the steady state, budgets spent, as a device runs most of the time).")
@click.option("--runs", default=5, show_default=True, type=click.IntRange(min=1),
              help="Runs of the pipelined loop (each over --frames frames, each beside a run "
                   "of the detector alone); the median is reported, each run's figure beside "
                   "it.")
@click.option("--source", default="sim:baseline", show_default=True,
              help="Frames to time on, as `edge run --source` takes them (an image folder, a "
                   "video file, a camera, sim:SCENARIO); the first 100 are read before timing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(model: Path, imgsz: int, frames: int, threads: int, sampling_path: Path | None,
          burst: bool, runs: int, source: str, as_json: bool) -> None:
    """Time inference and the monitoring step (telemetry + sampling + spool hand-off).

    infer_ms is the detector call (letterbox, ONNX Runtime, decode, NMS); monitor_ms is what the
    agent adds per frame, timed on the inference thread; fps is the full agent loop, where
    capture, the monitor and spooling run on their own threads, overlapping inference.
    fps_vs_inference_pct compares it with 1000 / the inference p50 timed in that loop (median
    of --runs runs); inference_alone_pct is the same measure for the detector alone, the
    ceiling this machine's timing noise leaves.
    Before timing, frames run until the sampler has spent an hourly budget (kept frames are
    JPEG-encoded and stored on the spool writer's thread: a few hundred an hour).
    """
    import json
    import tempfile

    from edge_runtime.bench import run_bench

    with tempfile.TemporaryDirectory(prefix="edgeloop-bench-") as spool_dir:
        result = run_bench(model, imgsz=imgsz, frames=frames, threads=threads,
                           spool_dir=Path(spool_dir), sampling_path=sampling_path,
                           steady=not burst, runs=runs, source=source)
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key:>22}: {value}")
