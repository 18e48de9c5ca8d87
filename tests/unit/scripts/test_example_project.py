"""The repository's own data project is what `edgeloop init` writes for the simulator's seed
model, and the simulator's seed pipeline (sim/dvc.yaml) makes the data and champion it reads."""

from __future__ import annotations

from pathlib import Path

import yaml

from flows.project import CHAMPION_DIR, SEED_DIR, SEED_YAML
from scripts.example_project import FILES, example_files, main
from tests.support.paths import ROOT


def test_the_repositorys_project_files_are_what_init_writes_for_the_seed_model() -> None:
    expected = example_files(ROOT)
    for name in FILES:
        assert (ROOT / name).read_text(encoding="utf-8") == expected[name], (
            f"{name} differs from what edgeloop init writes: run "
            "`python scripts/example_project.py` and commit the result")
    params = yaml.safe_load(expected["params.yaml"])
    assert params["finetune"]["imgsz"] == 320
    settings = yaml.safe_load(expected["edgeloop.yaml"])
    assert settings["labelling"] == {"fleet": "line-1", "classes": ["nut", "washer", "bolt"]}


def test_the_seed_pipeline_makes_what_the_projects_retrain_reads() -> None:
    seed = yaml.safe_load((ROOT / "sim" / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    made = {out for stage in seed.values() for out in stage.get("outs", [])}
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    champion = {params["champion"]["weights"], params["champion"]["onnx"]}
    assert champion == {f"{CHAMPION_DIR}/best.pt", f"{CHAMPION_DIR}/model.onnx"}
    assert {SEED_DIR, SEED_YAML, *champion} <= made
    assert {stage["wdir"] for stage in seed.values()} == {".."}  # paths from the project root


def test_check_names_a_stale_file_and_writing_mends_it(tmp_path: Path, capsys) -> None:
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "params.yaml").write_bytes((ROOT / "sim" / "params.yaml").read_bytes())
    assert main(["--root", str(tmp_path), "--check"]) == 1
    assert "dvc.yaml is not what edgeloop init writes" in capsys.readouterr().err
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--root", str(tmp_path), "--check"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dvc.yaml", "edgeloop.yaml",
                                                          "params.yaml", "sim"]
