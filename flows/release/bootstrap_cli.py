"""`edgeloop release bootstrap`: put a team's current champion into the field as release 1."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import click

from flows.offline import use_offline_environment

DIR = click.Path(path_type=Path, file_okay=False)


@click.group()
def release() -> None:
    """A fleet's first release (later ones: `edgeloop flows release`)."""


@release.command()
@click.option("--project", default=Path("."), show_default=True, type=DIR,
              help="The data project (made by `edgeloop init`).")
@click.option("--images", default=None, type=click.Path(path_type=Path, file_okay=False,
                                                          exists=True),
              help="Images to replay for the reference profile (default: the golden slice of "
                   "the project's dataset).")
@click.option("--hub-url", default=None,
              help="Hub URL (default: $EDGELOOP_HUB_URL, edgeloop.yaml's hub:, else "
                   "http://127.0.0.1:8700); admin token from $EDGELOOP_ADMIN_TOKEN.")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="Release settings over the packaged ones and the project's.")
@click.option("--tuf-repo", default=None, type=DIR,
              help="The TUF repository to create (default PROJECT/var/releases/tuf).")
@click.option("--keys", default=None, type=DIR,
              help="Where its private keys go (default PROJECT/var/releases/keys; keep them "
                   "out of git).")
def bootstrap(project: Path, images: Path | None, hub_url: str | None,
              config_path: str | None, tuf_repo: Path | None, keys: Path | None) -> None:
    """Sign and publish the project's champion (params.yaml `champion.onnx`) as release 1, with
    its reference telemetry profile, on every channel; create the TUF root devices trust, and
    print the `edgeloop edge provision` line for each device."""
    use_offline_environment(project.resolve() / "var")
    from flows.release import bootstrap as first_release
    from flows.release.bootstrap import champion_onnx, project_params, reference_images
    from flows.release.candidate import ReleaseError
    from flows.release.flow import load_release_settings
    from flows.yolo_dataset import IMAGE_SUFFIXES

    settings = load_release_settings(
        os.environ, project=str(project), hub_url=hub_url, config_path=config_path,
        repo_dir=str(tuf_repo) if tuf_repo else None, keys_dir=str(keys) if keys else None)
    if (settings.repo_dir / "metadata" / "root.json").is_file():
        raise ReleaseError(f"{settings.repo_dir} already holds a release repository: the "
                           "fleet is bootstrapped; publish candidates with edgeloop flows release")
    params = project_params(settings.project)
    onnx = champion_onnx(settings.project, params)

    pictures = (sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
                if images else reference_images(settings.project, params))
    with settings.client() as client:
        work = settings.project / "var" / "releases" / "bootstrap"
        work.mkdir(parents=True, exist_ok=True)
        with click.progressbar(length=len(pictures), label="reference profile",
                               file=sys.stderr) as bar:
            done = first_release.bootstrap(
                client, settings.repository, project=settings.project, onnx=onnx, images=pictures,
                channels=[settings.config.stable_channel, settings.config.canary_channel],
                expires_in=timedelta(days=settings.config.manifest_expiry_days), work=work,
                progress=bar.update)
    manifest = done.manifest
    click.echo(f"release {manifest.release_id} (version 1) signed and assigned to "
               f"{settings.config.stable_channel} and {settings.config.canary_channel}; "
               f"reference profile of {done.reference_frames} frames")
    click.echo(f"trusted root: {done.trusted_root} (install it on every device)")
    click.echo("provision each device (its token from `edgeloop hub device add NAME`):")
    click.echo(f"  edgeloop edge provision --state var/edge/NAME --device-id NAME --trusted-root "
               f"{done.trusted_root} --model {onnx} --release-id {manifest.release_id} "
               "--version 1")
