"""`edgeloop flows`: run the cloud-side flows and their building blocks from the command line.

Each command lives with its flow and is imported only when called (Evidently, Prefect and Label
Studio's SDK are slow to import).
"""

from __future__ import annotations

from edgeloop_cli import LazyGroup

# command name -> (module, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "drift": ("flows.drift_cli", "drift",
              "Compare a window of telemetry with a reference profile (Evidently)."),
}

flows = LazyGroup(
    name="flows",
    lazy=COMMANDS,
    help="Cloud flows: drift checks, labelling rounds, retraining, releases.",
)
