"""`edgeloop init DIR --model best.pt --data data.yaml`: a team's data project, in one command."""

from __future__ import annotations

from pathlib import Path

import click

FILE = click.Path(path_type=Path, dir_okay=False, exists=True)


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--model", "weights", type=FILE, required=True,
              help="The team's Ultralytics detection checkpoint (best.pt): its classes, input "
                   "size and task decide the project's.")
@click.option("--data", "data_yaml", type=FILE, required=True,
              help="The team's Ultralytics dataset YAML (path, train, val, optional test, "
                   "names); the dataset is copied as it is and tracked by DVC.")
@click.option("--onnx", type=FILE, default=None,
              help="The champion as the devices run it (default: exported from --model).")
@click.option("--fleet", default="fleet-1", show_default=True,
              help="The fleet's name (its Label Studio project is `edgeloop <fleet>`).")
def init(directory: Path, weights: Path, data_yaml: Path, onnx: Path | None,
         fleet: str) -> None:
    """Make a data project (git + DVC) in DIRECTORY from a team's model and dataset.

    The project holds the dataset (data/seed, as it is), the champion (models/champion),
    params.yaml, edgeloop.yaml (every setting, commented) and a dvc.yaml whose stages run
    `edgeloop stage ...`. Run the flows from inside it.
    """
    import tempfile

    from flows.offline import use_offline_environment

    # Ultralytics' settings go to a scratch folder (where the user set none): nothing is made
    # in DIRECTORY before the model and the dataset are known to fit together.
    scratch = tempfile.TemporaryDirectory(prefix="edgeloop-init-")
    use_offline_environment(Path(scratch.name))
    from flows.project import ModelFacts, create_project
    from flows.retrain.stages.cli import installed_version
    from flows.retrain.ultralytics_yolo import export_onnx, model_facts

    names, imgsz, task = model_facts(weights)
    files = create_project(directory, weights=weights, data_yaml=data_yaml, onnx=onnx,
                           model=ModelFacts(names, imgsz, task),
                           edgeloop_version=installed_version(), fleet=fleet,
                           export_onnx=lambda w, out, size: export_onnx(w, out, size,
                                                                         quiet=True))
    click.echo(f"made {directory}: {len(names)} classes ({', '.join(names)}), {imgsz} px; "
               f"{len(files)} files in git, data/seed and models/champion in DVC")
    click.echo(f"next: cd {directory} && dvc remote add -d store <url> && dvc push")
