"""The patch from a hostile worktree: special, huge, unreadable and secret-holding files are left out
and said; git never hangs the run; the patch still applies."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
from pathlib import Path

import pytest

from runner import patch as patch_mod
from runner.patch import compute_patch
from runner.workspace import Workspace
from tests.conftest import make_repo

SECRET = "hunter2-very-secret-value"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n", "keep.txt": "keep\n"})
    return Workspace.create(str(repo), None, tmp_path / "run", tmp_path / "cache")


def applies(ws: Workspace, data: bytes, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ws.git_dir.parent), str(clone)], check=True)
    (tmp_path / "p.diff").write_bytes(data)
    subprocess.run(["git", "-C", str(clone), "apply", str(tmp_path / "p.diff")], check=True)


def test_special_huge_and_unreadable_files_are_left_out_and_said(ws: Workspace, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patch_mod, "MAX_FILE_BYTES", 1024)
    (ws.path / "a.py").write_text("x = 2\n")
    os.mkfifo(ws.path / "pipe")
    with open(ws.path / "sparse.bin", "wb") as f:
        f.truncate(50 * 1024 * 1024 * 1024)  # 50 GB, sparse: git would hash it for minutes
    (ws.path / "secret.txt").write_text("no peeking\n")
    (ws.path / "secret.txt").chmod(0)
    (ws.path / ".gitignore").write_text("ignored.bin\n")
    (ws.path / "ignored.bin").write_bytes(b"x" * 4096)
    started = time.monotonic()
    patch = asyncio.run(compute_patch(ws))
    assert time.monotonic() - started < 20
    excluded = dict(patch.excluded)
    assert excluded["pipe"] == "not a regular file"
    assert excluded["sparse.bin"] == "larger than 0 MB"
    if os.geteuid() != 0:  # root reads everything
        assert excluded["secret.txt"] == "not readable"
    assert "ignored.bin" not in excluded  # git would not have taken it anyway
    assert {f.path for f in patch.stats.files} >= {"a.py", ".gitignore"}
    assert b"sparse.bin" not in patch.data and b"pipe" not in patch.data
    applies(ws, patch.data, tmp_path)
    (ws.path / "secret.txt").chmod(0o644)
    ws.remove()


@pytest.mark.parametrize("encode", [
    lambda s: s.encode(),
    lambda s: b"\x00\x01binary" + s.encode() + b"\xff",
    lambda s: b"\x00" + base64.b64encode(s.encode()),
    lambda s: s.encode().hex().encode(),
])
def test_files_holding_a_secret_are_left_out_even_binary(ws: Workspace, tmp_path: Path, encode: object) -> None:
    (ws.path / "a.py").write_text("x = 3\n")
    (ws.path / "leak.dat").write_bytes(encode(SECRET))  # type: ignore[operator]
    (ws.path / "keep.txt").write_bytes(b"\x00" + encode(SECRET))  # type: ignore[operator]  # modified file
    patch = asyncio.run(compute_patch(ws, secrets=[SECRET]))
    assert dict(patch.excluded) == {"leak.dat": "holds a secret", "keep.txt": "holds a secret"}
    assert [f.path for f in patch.stats.files] == ["a.py"]
    assert SECRET.encode() not in patch.data and b"leak.dat" not in patch.data
    applies(ws, patch.data, tmp_path)
    ws.remove()


def test_cancelling_the_patch_kills_git(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = ws.path.parent / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\nexec sleep 86.4\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")

    async def go() -> None:
        task = asyncio.create_task(compute_patch(ws))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert subprocess.run(["pgrep", "-f", "sleep 86.4"], capture_output=True).stdout == b""
    monkeypatch.undo()
    ws.remove()


def test_a_stuck_git_times_out_as_a_git_error(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.workspace import GitError

    fake = ws.path.parent / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\nexec sleep 86.5\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    with pytest.raises(GitError, match="did not finish"):
        asyncio.run(compute_patch(ws, time_limit_s=1))
    assert subprocess.run(["pgrep", "-f", "sleep 86.5"], capture_output=True).stdout == b""
    monkeypatch.undo()
    ws.remove()


def test_the_patch_has_a_total_cap(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many files under the per-file cap cannot add up to a patch past MAX_PATCH_BYTES: those past
    it (in path order) are left out and said; the rest still applies."""
    monkeypatch.setattr(patch_mod, "MAX_PATCH_BYTES", 100_000)
    (ws.path / "a.py").write_text("x = 4\n")
    for name in ("b 1.txt", "b\t2.txt", "b3.txt", "é4.txt"):  # quoted names too
        (ws.path / name).write_text("line of text\n" * 3000)  # ~39 kB each in the patch
    patch = asyncio.run(compute_patch(ws))
    assert len(patch.data) <= 100_000
    assert dict(patch.excluded) == {"b3.txt": "the patch would pass its 0 MB total",
                                    "é4.txt": "the patch would pass its 0 MB total"}
    assert {f.path for f in patch.stats.files} == {"a.py", "b\t2.txt", "b 1.txt"}
    applies(ws, patch.data, tmp_path)
    ws.remove()


@pytest.mark.parametrize("base_index", ["the worktree's own", "read-tree (no index to copy)"])
def test_a_same_size_change_with_the_old_mtime_is_in_the_patch(ws: Workspace, tmp_path: Path, base_index: str) -> None:
    """The patch's index starts as a copy of the worktree's own (stat data: `git add` hashes only
    what changed). A change that keeps the size and puts the old mtime back, right after the
    checkout, must still be seen (git's racy-clean check and the ctime nobody can set back)."""
    if base_index.startswith("read-tree"):
        (ws.admin_dir / "index").unlink()
    target = ws.path / "a.py"
    before = target.stat()
    target.write_text("x = 9\n")  # same size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    (ws.path / ":odd\tname 1\t2").write_text("odd\n")  # a path a parser of `-z` output could misread
    patch = asyncio.run(compute_patch(ws, secrets=[SECRET]))
    assert {f.path: (f.insertions, f.deletions) for f in patch.stats.files} == {
        "a.py": (1, 1), ":odd\tname 1\t2": (1, 0)}
    assert b"+x = 9" in patch.data
    applies(ws, patch.data, tmp_path)
    ws.remove()


def test_the_one_diff_is_split_into_files_counts_and_patch() -> None:
    out = (b":100644 100644 " + b"a" * 40 + b" " + b"b" * 40 + b" M\0:x\0"
           b":000000 100644 " + b"0" * 40 + b" " + b"c" * 40 + b" A\0" + b"1\t2\ty\0"
           b"1\t1\t:x\0" b"3\t0\t1\t2\ty\0" b"\0" b"diff --git a/:x b/:x\n...")
    diff = patch_mod.split_diff(out)
    assert [p for _, p in diff.raw] == [":x", "1\t2\ty"]
    assert diff.numstat == b"1\t1\t:x\x003\t0\t1\t2\ty\x00" and diff.patch.startswith(b"diff --git a/:x")
    assert patch_mod.split_diff(b"") == patch_mod._Diff([], b"", b"")
    with pytest.raises(patch_mod.GitError, match="unexpected output"):
        patch_mod.split_diff(b":100644 100644 x y M\0a\0" b"1\t1\ta\0")  # no patch after the counts
