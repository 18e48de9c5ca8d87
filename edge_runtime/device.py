"""The device's composition root: its settings, read once through the layered loader, and the
parts built from them (the model or the updater's release, sampler, spool and its writer,
monitor, agent, uplink, model updates). `edge run`, the bench and the tests build a device here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from configs.loader import SettingsError, build, layered
from edge_runtime.agent import Agent, Monitor, Progress
from edge_runtime.detector import Detector
from edge_runtime.outbox.budget import SpoolBudget
from edge_runtime.outbox.spool import Spool
from edge_runtime.outbox.uplink import Uplink
from edge_runtime.outbox.uplink_policy import UplinkConfig
from edge_runtime.outbox.writer import SpoolWriter
from edge_runtime.sampling.config import SamplingConfig, load_sampling_config
from edge_runtime.sampling.sampler import build_sampler
from edge_runtime.sources import CapturedFrame, open_source, paced
from edge_runtime.telemetry import UncertaintyBand
from edge_runtime.update.loop import UpdateLoop, UpdateLoopConfig, open_updater
from edge_runtime.update.policy import HealthBudget, SmokeBudget

MIB = 1024 * 1024
# environment variable -> setting (parsed to the setting's type by the loader)
ENVIRONMENT = {"EDGELOOP_DEVICE_TOKEN": "token", "EDGELOOP_DEVICE_ID": "device_id"}


class DeviceSettingsError(SettingsError):
    """The device's settings cannot run as given (the message names the flag or key)."""


@dataclass(frozen=True)
class DeviceSettings:
    """Everything one device runs with."""

    sampling: SamplingConfig
    device_id: str = "edge-1"
    model: Path | None = None  # an ONNX file; or:
    state_dir: Path | None = None  # the updater's slots, made by `edge provision`
    imgsz: int | None = None  # the network input size; None: the model's own
    threads: int = 0  # ONNX Runtime intra-op threads; 0: one per core
    conf: float = 0.25  # the detector's confidence threshold (an nms=True export's own stays)
    iou: float = 0.7  # its NMS IoU threshold (exports whose graph runs no NMS)
    source: str | None = None  # see edge_runtime.sources.open_source
    fps: float | None = None  # pace the source to at most this rate
    hub_url: str | None = None  # None: the spool only fills
    token: str | None = field(default=None, repr=False)
    update_every_s: float = 60.0  # between polls of the hub for a new release (with state_dir)
    spool_dir: Path = Path("var/spool")
    spool_mb: int = 512  # the spool's disk budget; frames go before statistics
    seed: int | None = None  # the sampler's random pick; None: fresh entropy
    smoke: SmokeBudget = field(default_factory=SmokeBudget)  # a downloaded release's first run
    health: HealthBudget = field(default_factory=HealthBudget)  # an activated one's live frames

    def __post_init__(self) -> None:
        if self.hub_url and not self.token:
            raise DeviceSettingsError("--hub needs --token (or EDGELOOP_DEVICE_TOKEN)")
        if self.state_dir is not None:
            if self.model is not None or self.imgsz is not None:
                raise DeviceSettingsError("--state serves the release installed there: it "
                                          "cannot go with --model or --imgsz")
            if not (self.hub_url and self.token):
                raise DeviceSettingsError("--state needs --hub and --token: releases come from "
                                          "the hub")
        elif self.model is None:
            raise DeviceSettingsError("give --model, or --state for a device with model updates")
        for name, low in (("threads", 0), ("spool_mb", 1), ("update_every_s", 0.1)):
            if getattr(self, name) < low:
                raise DeviceSettingsError(f"{name}={getattr(self, name)} must be >= {low}")
        if self.fps is not None and self.fps <= 0:
            raise DeviceSettingsError(f"fps={self.fps} must be positive")
        if not (0 < self.conf < 1 and 0 < self.iou <= 1):
            raise DeviceSettingsError(f"conf={self.conf} must be in (0, 1) and iou={self.iou} "
                                      "in (0, 1]")

    @property
    def band(self) -> UncertaintyBand:
        """The confidence band telemetry counts as uncertain: the sampler's, if it has one."""
        return self.sampling.uncertain.band if self.sampling.uncertain else UncertaintyBand()


def load_device_settings(environ: Mapping[str, str], *, project: Path | None = None,
                         config: Path | None = None, sampling: Path | None = None,
                         **flags: Any) -> DeviceSettings:
    """Defaults < packaged `edge.yaml` < the project's `configs/edge.yaml` and `edgeloop.yaml`
    (`edge:`) < `config` < the environment < flags given (not None); the sampling policy is read
    the same way from `sampling.yaml` files and `sampling` (`--sampling`)."""
    merged = layered("edge", project=project, config=config, environ=environ, env=ENVIRONMENT,
                     flags=flags, error=DeviceSettingsError)
    if "sampling" in merged.data:
        raise DeviceSettingsError("the sampling policy has its own file (sampling.yaml, "
                                  "edgeloop.yaml sampling:, --sampling), not a key in edge:")
    merged.data["sampling"] = load_sampling_config(sampling, project=project)
    return build(DeviceSettings, merged, error=DeviceSettingsError,
                 convert={"sampling": lambda policy: policy})


class Device:
    """One device's parts, wired once. `with Device(settings) as device: device.run(...)`
    starts the uplink and the model updates, and on the way out stops them, flushes what the
    last seconds logged, reports where the device ended up and closes the spool."""

    def __init__(self, settings: DeviceSettings, *, spool_budget: SpoolBudget | None = None
                 ) -> None:
        self.settings = settings
        self.updates: UpdateLoop | None = None
        if settings.state_dir is not None and settings.hub_url and settings.token:
            updater, detector = open_updater(
                settings.state_dir, hub_url=settings.hub_url, token=settings.token,
                threads=settings.threads, conf=settings.conf, iou=settings.iou,
                smoke=settings.smoke, health=settings.health)
            self.updates = UpdateLoop(updater, UpdateLoopConfig(
                every_s=settings.update_every_s,
                keep_frames=max(UpdateLoopConfig.keep_frames, settings.smoke.frames)))
        elif settings.model is not None:
            detector = Detector(settings.model, imgsz=settings.imgsz, threads=settings.threads,
                                conf=settings.conf, iou=settings.iou)
        else:  # DeviceSettings refuses this; a settings object built by hand may not
            raise DeviceSettingsError("give a model, or a state folder with a hub and a token")
        self.detector = detector
        self.spool = Spool(settings.spool_dir / f"{settings.device_id}.sqlite",
                           spool_budget or SpoolBudget(max_bytes=settings.spool_mb * MIB))
        self.writer = SpoolWriter(self.spool)
        self.sampler = build_sampler(settings.sampling, np.random.default_rng(settings.seed))
        self.monitor = Monitor(self.sampler, self.writer, device_id=settings.device_id,
                               band=settings.band)
        self.agent = Agent(detector, self.monitor, self.spool, updates=self.updates)
        self.uplink: Uplink | None = None
        if settings.hub_url and settings.token:
            self.uplink = Uplink(self.spool, UplinkConfig(
                hub_url=settings.hub_url, device_id=settings.device_id, token=settings.token),
                device_status=self.agent.status)

    def frames(self, **source_options: Any) -> Iterator[CapturedFrame]:
        """The configured source, paced to the configured rate."""
        if not self.settings.source:
            raise DeviceSettingsError("no frame source: give --source")
        frames = open_source(self.settings.source, sim_name=self.settings.device_id,
                             **source_options)
        return paced(frames, self.settings.fps) if self.settings.fps is not None else frames

    def start(self) -> Device:
        if self.uplink is not None:
            self.uplink.start()
        if self.updates is not None:
            if self.uplink is not None:
                self.updates.on_change = self.uplink.send_heartbeat  # the hub learns of a swap
            self.updates.start()
        return self

    def run(self, frames: Iterable[CapturedFrame] | None = None, *,
            max_frames: int | None = None, log_every_s: float = 5.0,
            log: Callable[[Progress], None] | None = None) -> Progress:
        """Infer on every frame (of the configured source by default) until the frames end,
        `max_frames` or Ctrl-C."""
        try:
            return self.agent.run(self.frames() if frames is None else frames,
                                  max_frames=max_frames, log_every_s=log_every_s, log=log)
        except KeyboardInterrupt:
            return self.agent.progress(0.0)

    def close(self) -> None:
        if self.updates is not None:
            self.updates.stop()
        self.writer.close()
        if self.uplink is not None:
            self.uplink.stop(timeout=10)
            self.uplink.flush()  # what the last seconds logged goes out before we exit
            self.uplink.send_heartbeat()  # and where the device ended up
            self.uplink.close()
        self.spool.close()

    def __enter__(self) -> Device:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
