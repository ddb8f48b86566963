"""Issue 12.3: nothing the model makes in the worktree stops the outputs or the cleanup. A tree
1,100 levels deep (os.walk's RecursionError in the finish once left no result.json, the container
running and the worktree registered), through the CLI and the real Docker sandbox."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runner.diskcap import mounts_under
from tests.security.helpers import attack, bash, result

DEEP = "/".join(["d"] * 1100)


@pytest.mark.docker
def test_a_tree_1100_levels_deep_is_patched_and_cleaned_up_docker(tmp_path: Path) -> None:
    proc, out = attack(tmp_path, [bash(f"mkdir -p {DEEP} && echo x > {DEEP}/f && mkfifo {DEEP}/pipe")],
                       expect_changes=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = result(out)
    assert r["status"] == "success" and r["patch"]["files_changed"] == 1, r
    assert any(e.endswith("pipe (not a regular file)") for e in r["patch_excluded"]), r["patch_excluded"]
    assert all((out / name).is_file() for name in ("patch.diff", "junit.xml", "summary.md", "trajectory.jsonl"))
    listed = subprocess.run(["git", "-C", str(tmp_path / "repo"), "worktree", "list", "--porcelain"],
                            capture_output=True, text=True, check=True).stdout
    assert listed.count("worktree ") == 1  # only the repository itself
    assert not list((tmp_path / "cache" / "runs").iterdir())
    containers = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=astra-run.run-id={r['run_id']}"],
                                capture_output=True, text=True).stdout
    assert containers.strip() == "" and mounts_under(tmp_path) == []
