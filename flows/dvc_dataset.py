"""The one module that versions datasets: `dvc add` a folder, `git commit` its .dvc file (and
nothing else), `dvc push` it; returns the dataset version a retrain names.

It drives the `dvc` and `git` command lines in a repository root given by the caller (the
project in production, a throwaway repository in tests).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

COMMAND_TIMEOUT_S = 600.0
QUIET_ENV = {"DVC_NO_ANALYTICS": "1", "ITERATIVE_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1"}
FALLBACK_AUTHOR = ("-c", "user.name=edgeloop labelling",
                   "-c", "user.email=labelling@edgeloop.invalid")


class DatasetVersionError(OSError):
    """A git or DVC step failed; the message says which and how far the increment got."""


@dataclass(frozen=True)
class DatasetVersion:
    """One versioned dataset folder: where it is, the commit holding its .dvc file, its DVC
    content hash. `ref` is the string a release's lineage records."""

    path: str  # relative to the repository root, e.g. data/labelled/ls-1-20260101T000000Z
    git_commit: str
    dvc_md5: str  # DVC's directory hash (ends in .dir)
    files: int
    pushed: bool

    @property
    def ref(self) -> str:
        return f"{self.path}@{self.dvc_md5} (git {self.git_commit[:12]})"


def dvc_executable() -> str:
    beside = Path(sys.executable).parent / "dvc"  # the venv's dvc, also when PATH lacks it
    return str(beside) if beside.is_file() else (shutil.which("dvc") or "dvc")


def _run(repo: Path, args: list[str], what: str) -> str:
    env = {**os.environ, **QUIET_ENV}
    try:
        done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatasetVersionError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise DatasetVersionError(f"{what} failed ({' '.join(args[:3])}...): "
                                  f"{detail[-1] if detail else f'exit {done.returncode}'}")
    return done.stdout


def check_repository(repo: Path) -> None:
    """Refuses a root that is not a git repository with DVC initialised."""
    if not (repo / ".dvc").is_dir():
        raise DatasetVersionError(f"{repo} has no .dvc/: run `dvc init` there first")
    _run(repo, ["git", "rev-parse", "--show-toplevel"], f"{repo} is not a git work tree")


def author_args(repo: Path) -> list[str]:
    """Commit as the repository's configured user; a fallback identity only when none is set
    (a fresh CI or test repository), so a commit never fails for want of a name."""
    probe = subprocess.run(["git", "config", "user.email"], cwd=repo, capture_output=True,
                           text=True, check=False)
    return [] if probe.stdout.strip() else list(FALLBACK_AUTHOR)


def dvc_md5(dvc_file: Path) -> tuple[str, int]:
    """(content hash, file count) of the single output a .dvc file tracks."""
    spec = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
    outs = spec.get("outs") if isinstance(spec, dict) else None
    if not outs or "md5" not in outs[0]:
        raise DatasetVersionError(f"{dvc_file} has no output hash")
    return str(outs[0]["md5"]), int(outs[0].get("nfiles", 1))


def commit_folder(repo: Path, folder: Path, message: str) -> DatasetVersion:
    """`dvc add` the folder and commit only its .dvc file and .gitignore (nothing else the
    index may hold). Not pushed yet: see `push_version`."""
    repo = repo.resolve()
    folder = folder.resolve()
    if not folder.is_relative_to(repo):
        raise DatasetVersionError(f"{folder} is not inside the repository {repo}")
    rel = folder.relative_to(repo)
    dvc_file = folder.with_name(folder.name + ".dvc")
    _run(repo, [dvc_executable(), "add", "--quiet", str(rel)], f"dvc add {rel}")
    md5, files = dvc_md5(dvc_file)
    tracked = [str(dvc_file.relative_to(repo))]
    ignore = folder.parent / ".gitignore"
    if ignore.exists():
        tracked.append(str(ignore.relative_to(repo)))
    _run(repo, ["git", "add", "--", *tracked], "git add")
    _run(repo, ["git", *author_args(repo), "commit", "--quiet", "-m", message, "--", *tracked],
         "git commit")
    commit = _run(repo, ["git", "rev-parse", "HEAD"], "git rev-parse").strip()
    return DatasetVersion(str(rel), commit, md5, files, pushed=False)


def push_version(repo: Path, version: DatasetVersion) -> DatasetVersion:
    """`dvc push` the version's data to the repository's default remote. When it fails, the
    version stays committed and its data in the local DVC cache: run `dvc push` again."""
    _run(repo.resolve(), [dvc_executable(), "push", "--quiet", f"{version.path}.dvc"],
         f"dvc push of {version.ref}")
    return replace(version, pushed=True)


def discard_folder(folder: Path) -> None:
    """Undo a folder that never made it into a commit: the folder, its .dvc file, its line in
    the .gitignore that `dvc add` wrote (tidy, so a retry starts clean)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.with_name(folder.name + ".dvc").unlink(missing_ok=True)
    ignore = folder.parent / ".gitignore"
    if ignore.exists():
        keep = [line for line in ignore.read_text().splitlines() if line != f"/{folder.name}"]
        if keep:
            ignore.write_text("\n".join(keep) + "\n")
        else:
            ignore.unlink()
