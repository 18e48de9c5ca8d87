"""`edgeloop flows`: run the cloud-side flows and their building blocks from the command line.

Each command lives with its flow and is imported only when called (Evidently, Prefect and Label
Studio's SDK are slow to import).
"""

from __future__ import annotations

from edgeloop_cli import LazyGroup

# command name -> (module, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "drift": ("flows.drift.cli", "drift",
              "Compare a window of telemetry with a reference profile (Evidently)."),
    "request-labels": ("flows.labelling.cli", "request_labels",
                       "Send the most uncertain hub frames to Label Studio, pre-annotated."),
    "collect-labels": ("flows.labelling.cli", "collect_labels",
                       "Finished Label Studio labels -> data/labelled/<batch>, DVC-versioned."),
    "labelstudio-webhook": ("flows.labelling.cli", "labelstudio_webhook",
                            "Serve Label Studio's annotation webhook; collect when idle."),
    "retrain": ("flows.retrain.cli", "retrain",
                "Fine-tune on the labelled data, export fp32 + int8, evaluate, gate."),
    "release": ("flows.release.cli", "release",
                "Sign and publish a gate-passing candidate to canary; promote or roll back."),
    "deploy": ("flows.deploy_cli", "deploy",
               "Register the loop as Prefect deployments on a work pool (schedules, triggers)."),
}

flows = LazyGroup(
    name="flows",
    lazy=COMMANDS,
    help="Cloud flows: drift checks, labelling rounds, retraining, releases.",
)
