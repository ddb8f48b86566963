"""A run that changed nothing is not a success by default (issue 17.5), and a dirty checkout is said."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_repo

EDIT_FAILS = """\
- tool_calls:
    - {name: edit, input: {path: a.txt, old_string: "not there", new_string: "b"}}
- text: I fixed it.
"""


def run(tmp_path: Path, extra: str = "") -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    (tmp_path / "m.yaml").write_text(EDIT_FAILS)
    (tmp_path / "task.yaml").write_text("name: empty\nrepo: repo\nprompt: fix a.txt\nmodel: scripted:m.yaml\n"
                                        "sandbox: {backend: local}\noutputs: {dir: out}\n" + extra)
    env = {**os.environ, "ASTRA_CACHE": str(tmp_path / "cache"), "CI": "true"}
    proc = subprocess.run([sys.executable, "-m", "runner", "run", "task.yaml"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    return proc, json.loads((tmp_path / "out" / "result.json").read_text())


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"a.txt": "a\n"})


def test_an_agent_that_changed_nothing_without_verify_checks_failed(tmp_path: Path, repo: Path) -> None:
    proc, result = run(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert result["status"] == "failed"
    assert str(result["reason"]).startswith("the agent finished without changing anything")
    assert "expect_changes: false" in str(result["reason"])


def test_expect_changes_false_lets_an_empty_run_succeed(tmp_path: Path, repo: Path) -> None:
    proc, result = run(tmp_path, "expect_changes: false\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["status"] == "success"


def test_uncommitted_changes_in_the_users_repository_give_a_warning(tmp_path: Path, repo: Path) -> None:
    (repo / "a.txt").write_text("edited, not committed\n")
    (repo / "new.txt").write_text("untracked\n")
    proc, _ = run(tmp_path, "expect_changes: false\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"[warning] {repo} has 2 uncommitted change(s); the run starts from HEAD" in proc.stderr, proc.stderr
    clean = make_repo(tmp_path / "clean" / "repo", {"a.txt": "a\n"})
    proc, _ = run(clean.parent, "expect_changes: false\n")
    assert "uncommitted" not in proc.stderr
