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
