"""The `drift-check` Prefect flow: every active device's live window against the reference of the
release it runs, an HTML report and an Evidently snapshot per device, a markdown summary, and the
fleet's decision (a fleet-wide event to relabel, or single-device faults to fix).

Thin: settings are read once, the work is `flows.drift.device.check_device` mapped over the
devices (on a work pool at fleet scale), the decision is `flows.drift.fleet.attribute_fleet`.
Import this module after `flows.offline.use_offline_environment` (Prefect reads its settings on
import). Serve it on a schedule with `serve_drift_check(interval_s)` or
`python -m flows.drift.serve --interval 3600`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.utilities.annotations import unmapped

from flows.drift.device import DeviceDrift, check_device
from flows.drift.fleet import FleetDriftReport, attribute_fleet
from flows.drift.settings import DriftConfig, load_drift_config
from flows.events import FLEET_EVENT, FLEET_RESOURCE
from flows.reference import FolderReferences, HubReferences, ReferenceSource
from hub.blobs import BlobStore
from hub.client import HubClient
from hub.settings import load_settings

ARTIFACT_KEY = "drift-check"


class DriftSettingsError(ValueError):
    """The flow cannot run with these settings (e.g. no hub admin token)."""


@dataclass(frozen=True)
class DriftSettings:
    """Read once per flow run through the layered loader (`configs.loader`): the drift config,
    the hub's URL and admin token (`EDGELOOP_HUB_URL`, `EDGELOOP_ADMIN_TOKEN`), parameters."""

    hub_url: str
    admin_token: str = field(repr=False)
    config: DriftConfig
    reports_url: str  # a local folder or an fsspec URL (s3://...)
    workspace_dir: Path | None  # the Evidently workspace; None: no snapshots
    references_dir: Path | None  # `<model_version>.parquet` files; None: the hub's releases
    cache_dir: Path  # downloaded reference profiles


def load_drift_settings(environ: Mapping[str, str], *, var: Path = Path("var"),
                        hub_url: str | None = None, config_path: str | None = None,
                        reports_url: str | None = None, workspace_dir: str | None = None,
                        references_dir: str | None = None) -> DriftSettings:
    hub = load_settings(environ, project=Path.cwd(), hub_url=hub_url)  # hub URL, admin token
    return DriftSettings(
        hub_url=hub.hub_url,
        admin_token=hub.require_admin_token(),
        config=load_drift_config(Path(config_path) if config_path else None,
                                 project=Path.cwd()),
        reports_url=reports_url or str(var / "drift" / "reports"),
        workspace_dir=Path(workspace_dir) if workspace_dir else var / "drift" / "workspace",
        references_dir=Path(references_dir) if references_dir else None,
        cache_dir=var / "drift" / "references")


@dataclass(frozen=True)
class DriftSweep:
    """What one run of the flow found: each device's outcome and the fleet's decision."""

    devices: tuple[DeviceDrift, ...]
    fleet: FleetDriftReport
    checked_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"checked_at": self.checked_at.isoformat(),
                "devices": [d.to_dict() for d in self.devices], "fleet": self.fleet.to_dict()}


@task(cache_policy=NO_CACHE)
def active_devices(settings: DriftSettings) -> list[str]:
    with HubClient(settings.hub_url, admin_token=settings.admin_token) as client:
        return sorted(d.device_id for d in client.devices() if not d.revoked)


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def check_one_device(device_id: str, settings: DriftSettings, now: datetime) -> DeviceDrift:
    with HubClient(settings.hub_url, admin_token=settings.admin_token) as client:
        references: ReferenceSource = (
            FolderReferences(settings.references_dir) if settings.references_dir
            else HubReferences(client, settings.cache_dir))
        return check_device(client, references, settings.config, device_id, now,
                            BlobStore(settings.reports_url), settings.workspace_dir)


@flow(name="drift-check")
def drift_check(hub_url: str | None = None, config_path: str | None = None,
                reports_url: str | None = None, workspace_dir: str | None = None,
                references_dir: str | None = None, now: datetime | None = None) -> DriftSweep:
    """Check every active device for drift against its release's reference profile."""
    settings = load_drift_settings(os.environ, hub_url=hub_url, config_path=config_path,
                                   reports_url=reports_url, workspace_dir=workspace_dir,
                                   references_dir=references_dir)
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise DriftSettingsError(f"now must carry a time zone (UTC), got {now.isoformat()}")
    logger = get_run_logger()
    devices = active_devices(settings)
    futures = check_one_device.map(devices, settings=unmapped(settings), now=unmapped(now))
    results = []
    for device_id, future in zip(devices, futures, strict=True):
        try:
            results.append(future.result())
        except Exception as error:  # one device's failure must not hide the rest of the fleet
            logger.warning("drift check of %s failed: %s", device_id, error)
            results.append(DeviceDrift(device_id, None, None, skipped=f"check failed: {error}"))
    fleet = attribute_fleet({r.device_id: r.verdict for r in results if r.verdict is not None},
                            settings.config.fleet)
    create_markdown_artifact(sweep_markdown(results, fleet, now), key=ARTIFACT_KEY,
                             description="Drift of each device vs its release's reference")
    logger.info("drift check of %d device(s): fleet event %s, retrain %s, device faults %s",
                len(results), fleet.fleet_event, list(fleet.retrain_devices),
                list(fleet.device_faults))
    if fleet.fleet_event:
        try:  # triggers the request-labels deployment; a lost event must not fail the check
            emit_event(FLEET_EVENT, resource={"prefect.resource.id": FLEET_RESOURCE},
                       payload={"checked_at": now.isoformat(), **fleet.to_dict()})
        except Exception as error:
            logger.warning("could not emit %s: %s", FLEET_EVENT, error)
    return DriftSweep(tuple(results), fleet, now)


def sweep_markdown(devices: Sequence[DeviceDrift], fleet: FleetDriftReport,
                   now: datetime) -> str:
    """The flow's summary for the Prefect UI: one table row per device, then the decision."""
    lines = [f"# Drift check {now:%Y-%m-%d %H:%M} UTC", "",
             "| device | model | rows | drift | drifted columns | groups | top columns | report |",
             "|---|---|---|---|---|---|---|---|"]
    for d in devices:
        v = d.verdict
        if v is None:
            lines.append(f"| {d.device_id} | {d.model_version or '-'} | - | not checked: "
                         f"{d.skipped} | | | | |")
            continue
        top = ", ".join(c.column for c in v.top_columns(3)) or "-"
        groups = ", ".join(g.label for g in v.groups) or "-"
        lines.append(f"| {d.device_id} | {d.model_version} | {v.current_rows} | "
                     f"{'**yes**' if v.drift else 'no'} | {v.drifted_count}/{v.tested_count} | "
                     f"{groups} | {top} | {d.report or '-'} |")
    lines += ["", f"- fleet-wide event: **{'yes' if fleet.fleet_event else 'no'}**"
              + (f" ({', '.join(g.label for g in fleet.event_groups)})"
                 if fleet.event_groups else ""),
              f"- send to labelling / retraining: {', '.join(fleet.retrain_devices) or 'none'}",
              f"- device faults (fix the device, do not retrain): "
              f"{', '.join(fleet.device_faults) or 'none'}"]
    return "\n".join(lines) + "\n"


def drift_deployment(interval_s: int, **parameters: Any) -> Any:
    """`drift-check` as a deployment run every `interval_s` seconds, for `prefect.serve(...)`
    beside other flows. At fleet scale deploy it to a work pool instead
    (`drift_check.from_source(...).deploy(work_pool_name=..., interval=...)`)."""
    if interval_s < 1:
        raise ValueError(f"interval_s must be >= 1, got {interval_s}")
    return drift_check.to_deployment(name="drift-check", interval=interval_s,
                                     parameters=parameters)


def serve_drift_check(interval_s: int, **parameters: Any) -> None:
    """Serve `drift-check` on its schedule in this process (blocks until stopped)."""
    if interval_s < 1:
        raise ValueError(f"interval_s must be >= 1, got {interval_s}")
    drift_check.serve(name="drift-check", interval=interval_s, parameters=parameters)

