"""The simulator's render stage (sim/dvc.yaml) lists all of edgeloop's code it runs: the module
of its command and every module that one imports, however deeply (lazy imports too), so a change
to the renderer makes `dvc repro` render the seed set again. (A data project's stages list no
code: an upgrade re-runs them through their `edgeloop.version` param.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from flows.retrain.stages.cli import STAGES
from tests.support.paths import ROOT

PACKAGES = ("edge_runtime", "hub", "flows", "sim", "configs")


def module_file(module: str) -> Path | None:
    base = ROOT / Path(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def first_party_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in PACKAGES}


def code_run_by(module: str) -> set[str]:
    """The files of `module` and everything it imports, package `__init__`s left out."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        path = module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        todo.extend(first_party_imports(path))
    return {str(p.relative_to(ROOT)) for p in seen if p.name != "__init__.py"}


def test_the_render_stage_lists_all_the_code_it_runs():
    stages = yaml.safe_load((ROOT / "sim" / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    command = re.match(r"edgeloop stage ([\w-]+) ", stages["render"]["cmd"])
    assert command is not None, stages["render"]["cmd"]
    module = f"flows.retrain.stages.{STAGES[command.group(1)]}"
    assert sorted(code_run_by(module) - set(stages["render"]["deps"])) == []


def test_the_closure_follows_lazy_imports():
    # train.py imports ultralytics_yolo inside main(): it must be found.
    assert "flows/retrain/ultralytics_yolo.py" in code_run_by("flows.retrain.stages.train")
