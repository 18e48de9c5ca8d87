"""`edgeloop flows retrain`: the retrain flow from the command line, with a progress bar over
the pipeline's stages and the gate's verdict as the last line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from flows.offline import use_offline_environment


@click.command("retrain")
@click.option("--dataset", default=None, metavar="REV",
              help="Git revision naming the labelled dataset (default: HEAD); the working "
                   "tree's data/labelled must match it.")
@click.option("--repo", default=".", show_default=True,
              type=click.Path(file_okay=False, exists=True),
              help="Repository root holding dvc.yaml.")
@click.option("--var", default="var", show_default=True, type=click.Path(file_okay=False),
              help="Runtime state folder (Prefect home, tool settings).")
@click.option("--release", "then_release", is_flag=True,
              help="Hand a passing candidate to the release flow (signed, into the canary "
                   "channel; hub settings as `edgeloop flows release`).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def retrain(dataset: str | None, repo: str, var: str, then_release: bool, as_json: bool) -> None:
    """Fine-tune the champion on the labelled data, export ONNX fp32 + int8, evaluate both
    through the edge runtime and gate the candidate (dvc repro of the retrain stages, as the
    `retrain` Prefect flow). Exits 1 when the gate refuses the candidate, saying why."""
    use_offline_environment(Path(var))
    if then_release:
        from flows.chain import retrain_and_release as retrain_flow
    else:
        from flows.retrain.flow import retrain as retrain_flow
    from flows.retrain.run import STAGES, RetrainError, pin_dataset

    try:
        pin_dataset(Path(repo), dataset)  # a wrong revision is one line, before Prefect starts
    except RetrainError as exc:
        raise click.ClickException(str(exc)) from None
    with click.progressbar(length=len(STAGES), label="retrain", file=sys.stderr,
                           show_pos=True) as bar:
        seen: set[str] = set()

        def on_stage(stage: str) -> None:
            if stage in STAGES and stage not in seen:
                seen.add(stage)
                bar.label = f"retrain: {stage}"
                bar.update(1)

        try:
            candidate = retrain_flow(repo=repo, dataset=dataset, on_stage=on_stage)
        except RetrainError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"dataset": candidate.dataset.as_dict(), **candidate.gate},
                              default=str))
    for check in candidate.gate["checks"]:
        click.echo(f"  [{'pass' if check['passed'] else 'FAIL'}] {check['detail']}", err=True)
    if not candidate.ship:
        raise click.ClickException("the gate refused the candidate: "
                                   + "; ".join(candidate.reasons))
    if not as_json:
        click.echo(f"candidate passes the gate: ship {candidate.artefact} {candidate.model}")
