"""The `edgeloop` command: one group per deployable, each imported only when it is called.

`edgeloop edge ...` on a device must never import torch, Prefect or Evidently, so the groups are
looked up by name here and imported on first use.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

# group name -> (module, attribute, one-line help shown by `edgeloop --help`)
GROUPS: dict[str, tuple[str, str, str]] = {
    "flows": ("flows.cli", "flows",
              "Cloud flows: drift checks, labelling rounds, retraining, releases."),
    "edge": ("edge_runtime.cli", "edge",
             "The device agent: ONNX inference, telemetry, sampling, store-and-forward."),
    "hub": ("hub.cli", "hub", "The cloud's front door: serve the fleet API, manage devices."),
    "init": ("flows.project_cli", "init",
             "Make a data project (git + DVC) from a team's model and Ultralytics dataset."),
    "stage": ("flows.retrain.stages.cli", "stage",
              "One DVC stage of a data project (what `dvc repro` runs)."),
    "release": ("flows.release.bootstrap_cli", "release",
                "A fleet's first release: the team's champion, signed, on every channel."),
    "sim": ("sim.cli", "sim", "The synthetic production line: scenarios and rendered datasets."),
    "demo": ("demo.cli", "demo",
             "The closed loop on this machine: drift, labels, retrain, release, measured."),
    "sim-annotator": ("demo.annotate_cli", "annotate",
                      "SIMULATED annotator (demo, tests): label open Label Studio tasks with the "
                      "simulator's ground truth."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported from their modules only when invoked.

    `lazy` maps a command name to (module, attribute, one-line help for the listing).
    """

    def __init__(self, *args: object, lazy: dict[str, tuple[str, str, str]] | None = None,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy if lazy is not None else GROUPS

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.lazy, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return self.commands.get(cmd_name)
        module, attribute, _ = self.lazy[cmd_name]
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}.{attribute} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing the commands must not import them: describe them from the table.
        rows = [(name, self.lazy[name][2]) for name in sorted(self.lazy)]
        rows += [(name, cmd.get_short_help_str()) for name, cmd in sorted(self.commands.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgeloop")
def cli() -> None:
    """edgeloop keeps computer-vision models accurate after they ship to edge devices."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; errors are one line on stderr and a non-zero exit, never a traceback.

    Set EDGELOOP_DEBUG=1 to see the traceback of an unexpected error.
    """
    try:
        cli.main(args=argv, prog_name="edgeloop", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("edgeloop: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        from hub.terminal import printable  # an error may quote what a device or hub sent

        click.echo(f"edgeloop: error: {printable(error.format_message())}", err=True)
        sys.exit(error.exit_code)
    except (ValueError, OSError, LookupError) as error:
        if os.environ.get("EDGELOOP_DEBUG"):
            raise
        from hub.terminal import printable  # an error may quote what a device or hub sent

        click.echo(f"edgeloop: error: {printable(str(error))}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
