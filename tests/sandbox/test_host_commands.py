"""The sandbox's host commands (du, find, git, setup) never outlive a cancelled run.

A run is cancelled while one of them runs: the wall clock, a signal, the sandbox closing under
a disk poll. Cancelling only the `communicate` left the process running (a setup command for
minutes), and its pipes were closed by the garbage collector after the event loop was gone
("Event loop is closed" from `BaseSubprocessTransport.__del__`).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from runner.patch import agit
from runner.procs import pid_alive
from runner.sandbox.base import SandboxConfig, clear_setid_bits, disk_used
from runner.sandbox.docker_git import _host_git
from runner.sandbox.helper import PR_SET_DUMPABLE, _prctl
from runner.sandbox.local import LocalSandbox
from runner.workspace import GitError


def slow_command(bin_dir: Path, name: str, pid_file: Path) -> None:
    """A `name` on PATH that writes its pid and then sleeps (a du on a huge tree, a hung git)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


async def cancelled_midway(call: Callable[[], Awaitable[object]], pid_file: Path) -> int:
    task = asyncio.ensure_future(call())
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.02)
    pid = int(pid_file.read_text())
    assert pid_alive(pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    return pid


@pytest.mark.parametrize("name", ["du", "find", "git"])
async def test_a_cancelled_host_command_is_killed_and_reaped(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / f"{name}.pid"
    slow_command(tmp_path / "bin", name, pid_file)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "du": lambda: disk_used(tmp_path),
        "find": lambda: clear_setid_bits(tmp_path),
        "git": lambda: _host_git(tmp_path / "repo.git", "rev-parse", "HEAD"),
    }
    pid = await cancelled_midway(calls[name], pid_file)
    assert not pid_alive(pid), f"{name} still runs (or is an unreaped zombie) after its run was cancelled"


async def test_a_cancelled_setup_command_of_the_local_sandbox_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "setup.pid"
    worktree = tmp_path / "wt"
    worktree.mkdir()
    box = LocalSandbox(SandboxConfig(run_id="t-cancel-setup", worktree=worktree,
                                     setup=(f"echo $$ > {pid_file}; exec sleep 60",)))
    try:
        pid = await cancelled_midway(box.start, pid_file)
        assert not pid_alive(pid), "the setup command still runs after its run was cancelled"
        await box.close()
    finally:
        _prctl(PR_SET_DUMPABLE, 1)  # start made this (the test) process non-dumpable, as it does the runner


async def test_the_patchs_git_past_its_time_limit_is_killed_and_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "git.pid"
    slow_command(tmp_path / "bin", "git", pid_file)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    ws = cast(Any, type("Ws", (), {"patch_git_dir": tmp_path / "patch.git", "path": tmp_path}))
    deadline = asyncio.get_running_loop().time() + 0.5
    with pytest.raises(GitError, match="did not finish within the patch time limit"):
        await agit(ws, ["diff"], env={}, deadline=deadline)
    assert not pid_alive(int(pid_file.read_text())), "git still runs after the patch's time limit"
