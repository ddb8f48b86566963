"""The patch from worktrees built to break it: 100k new files (argv overflow), a tree 1,100
levels deep (recursion), many files holding a secret. Each is computed, or fails loudly."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from runner.patch import compute_patch
from runner.walk import remove_tree, walk
from runner.workspace import Workspace
from tests.conftest import make_repo

SECRET = "hunter2-very-secret-value"
DEEP = 1100


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    return Workspace.create(str(repo), None, tmp_path / "run", tmp_path / "cache")


def deep_dir(root: Path, levels: int = DEEP) -> Path:
    """`mkdir -p` as the model would run it (os.makedirs itself recurses)."""
    rel = "/".join(["d"] * levels)
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mkdir", "-p", rel], cwd=root, check=True)
    return root / rel


def test_more_paths_than_argv_holds_make_a_patch(ws: Workspace) -> None:
    """Every changed path on git's argv overflowed it ("Argument list too long": an agent's 100k
    new files did it). 1200 paths of ~3.7 KB overflow Linux's 2 MB as surely, in a fraction of the
    time; they must go on stdin. 600 of them hold a secret, so `git reset` gets 2 MB of paths too."""
    many = ws.path.joinpath(*[c * 240 for c in "abcdefghijklmno"])  # 15 levels: a 3.6 KB path
    many.mkdir(parents=True)
    for i in range(600):
        (many / f"f{i:04d}.txt").write_bytes(b"%d\n" % i)
        (many / f"s{i:04d}.txt").write_text(f"k={SECRET}\n")
    assert sum(len(str(p.relative_to(ws.path))) + 1 for p in many.iterdir()) > 4 * 1024 * 1024
    os.mkfifo(ws.path / "pipe")
    patch = asyncio.run(compute_patch(ws, secrets=[SECRET]))
    assert patch.stats.files_changed == 600
    excluded = dict(patch.excluded)
    assert len(excluded) == 601 and excluded["pipe"] == "not a regular file"
    assert SECRET.encode() not in patch.data
    ws.remove()


def test_a_tree_1100_levels_deep_is_walked_patched_and_removed(ws: Workspace) -> None:
    leaf = deep_dir(ws.path)
    (leaf / "f.txt").write_text("deep\n")
    os.mkfifo(leaf / "pipe")  # makes the walk look at every level
    patch = asyncio.run(compute_patch(ws))
    assert patch.stats.files_changed == 1
    assert any(p.endswith("/pipe") for p, _ in patch.excluded)
    assert sum(1 for _ in walk(ws.path, skip={".git"})) == DEEP + 1
    remove_tree(ws.path)
    assert not ws.path.exists()
    ws.remove()


def test_remove_tree_removes_what_it_can_and_never_raises(tmp_path: Path) -> None:
    root = tmp_path / "t"
    leaf = deep_dir(root)
    (leaf / "x").write_text("x")
    (root / "d" / "link").symlink_to(tmp_path)  # never followed
    (tmp_path / "keep").write_text("kept")
    locked = root / "locked"
    locked.mkdir()
    (locked / "f").write_text("f")
    locked.chmod(0)
    remove_tree(root)
    assert not root.exists() and (tmp_path / "keep").exists()
    remove_tree(tmp_path / "missing")  # nothing there: no error
