"""The files `edgeloop init` writes: stages that run the installed package and depend only on
the project's data and params, settings that come from the model."""

from __future__ import annotations

from pathlib import Path

import yaml

from configs.loader import layered
from flows.project import SEED_DIR, ModelFacts, dvc_stages, project_files
from flows.retrain.run import STAGES

MODEL = ModelFacts(("gear", "cog", "spring"), 640)


def test_every_stage_runs_edgeloop_and_depends_on_no_code() -> None:
    stages = dvc_stages()["stages"]
    assert tuple(stages) == STAGES  # the retrain flow reproduces these, in this order
    for name, entry in stages.items():
        assert entry["cmd"].startswith(f"edgeloop stage {name} "), entry["cmd"]
        assert not [d for d in entry["deps"] if d.endswith(".py")], name
        assert "edgeloop.version" in entry["params"]  # an upgrade re-runs the stages


def test_no_stage_writes_into_the_seed_data() -> None:
    for entry in dvc_stages()["stages"].values():
        outs = [*entry.get("outs", []), *[next(iter(m)) for m in entry.get("metrics", [])]]
        assert not [o for o in outs if o == SEED_DIR or o.startswith(f"{SEED_DIR}/")]


def test_params_and_settings_take_the_models_size_and_classes(tmp_path: Path) -> None:
    files = project_files(MODEL, "1.2.3", "line-7")
    params = yaml.safe_load(files["params.yaml"])
    assert params["edgeloop"]["version"] == "1.2.3"
    assert {params[s]["imgsz"] for s in ("finetune", "release_export", "release_evaluate",
                                         "profile")} == {640}
    (tmp_path / "edgeloop.yaml").write_text(files["edgeloop.yaml"])
    labelling = layered("labelling", project=tmp_path).data
    assert labelling["classes"] == ["gear", "cog", "spring"] and labelling["fleet"] == "line-7"
    for section in ("hub", "release", "drift", "gate", "sampling", "edge"):
        layered(section, project=tmp_path)  # every section reads (commented defaults only)


def test_the_repositorys_own_pipeline_is_the_one_init_writes() -> None:
    root = Path(__file__).resolve().parents[3]
    assert yaml.safe_load((root / "dvc.yaml").read_text()) == dvc_stages()
