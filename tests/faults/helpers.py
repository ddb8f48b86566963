"""Shared pieces of the fault tests: a scripted task on a real repo, and what a clean end looks like."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import make_repo, sh_git

OUTPUT_FILES = {"result.json", "patch.diff", "junit.xml", "cost.json", "summary.md", "trajectory.jsonl"}
EDIT: list[dict[str, Any]] = [
    {"tool_calls": [{"name": "write", "input": {"path": "NOTES.md", "content": "hello\n"}}]},
    {"text": "wrote NOTES.md"},
]


def make_task(tmp_path: Path, turns: list[dict[str, Any]], *, out: Path | None = None, **extra: Any) -> Path:
    """tmp_path/repo (git), tmp_path/model.yaml, tmp_path/task.yaml (local sandbox, outputs in tmp_path/out)."""
    if not (tmp_path / "repo").exists():
        make_repo(tmp_path / "repo", {"calc.py": "x = 1\n"})
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(turns))
    spec: dict[str, Any] = {
        "name": "fault", "repo": "repo", "prompt": "do it", "model": "scripted:model.yaml",
        "sandbox": {"backend": "local"}, "outputs": {"dir": str(out or tmp_path / "out")},
        **extra,
    }
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp_path / "task.yaml"


def result_of(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "result.json").read_text())
    return data


def events(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()]


def worktrees(repo: Path) -> list[str]:
    """The worktrees registered in the user's repository besides its own."""
    lines = sh_git(repo, "worktree", "list", "--porcelain").splitlines()
    paths = [line.split(" ", 1)[1] for line in lines if line.startswith("worktree ")]
    return [p for p in paths if Path(p).resolve() != repo.resolve()]


def assert_cleaned_up(repo: Path, cache: Path) -> None:
    """Nothing of the run is left behind, except what `run --resume` needs (SPEC §1: a run stopped
    by a limit, an interrupt or an infrastructure error can be continued): its run dir with the
    saved conversation and its worktree, which `astra-run cleanup` reclaims once the owner is gone
    (tests/core/test_resume.py::test_a_resumable_run_whose_state_was_cleaned_up)."""
    runs = cache / "runs"
    left = list(runs.iterdir()) if runs.exists() else []
    resumable = [d for d in left if (d / "resume.json").is_file()]
    assert left == resumable, f"run dirs left: {left}"
    allowed = {str((d / "worktree").resolve()) for d in resumable}
    stray = [w for w in worktrees(repo) if str(Path(w).resolve()) not in allowed]
    assert stray == [], "the worktree is still registered in the user's repository"
    for d in resumable:  # a sandbox whose removal timed out (a hung daemon) may leave its mounted files
        names = {p.name for p in d.iterdir() if not p.name.startswith("sandbox-files-")}
        assert names <= {"worktree", "resume.json", "owner.json", "patch.git"}, (d, names)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at `path` (root only): a disk that fills up for real."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", f"astra-fault-{uuid.uuid4().hex[:6]}",
                           str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
