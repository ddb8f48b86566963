"""One suite, every backend: what a tool call may and may not do (DESIGN.md, Tests).

Each test runs against `local` and `docker` (the `sandbox` fixture is parametrized).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path

import pytest

from runner.sandbox import Sandbox, ToolFailure
from tests.sandbox.conftest import HOST_SECRET, workspace_root


def _host_processes_with(needle: bytes) -> list[int]:
    """PIDs on this host whose command line contains `needle` (containers' processes included)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_exec_exit_code_and_output(sandbox: Sandbox) -> None:
    r = await sandbox.exec("echo out; echo err >&2; exit 3", timeout=10)
    assert r.exit_code == 3 and not r.ok
    assert "out" in r.output and "err" in r.output
    assert (await sandbox.exec("true", timeout=10)).ok


async def test_timeout_kills_the_whole_process_group(sandbox: Sandbox) -> None:
    arg = f"1000.{secrets.randbelow(10**6)}"  # `sleep 1000`, told apart from anyone else's
    start = time.monotonic()
    r = await sandbox.exec(f"sleep {arg} & sleep {arg}", timeout=1)
    assert r.timed_out and r.exit_code is None
    assert time.monotonic() - start < 5
    await asyncio.sleep(0.2)
    assert _host_processes_with(b"sleep\0" + arg.encode()) == []
    inside = await sandbox.exec("ps -eo args", timeout=10)
    assert f"sleep {arg}" not in inside.output


async def test_background_children_do_not_outlive_the_call(sandbox: Sandbox) -> None:
    arg = f"999.{secrets.randbelow(10**6)}"
    r = await sandbox.exec(f"(sleep {arg} &) ; echo started", timeout=10)
    assert r.ok and "started" in r.output
    await asyncio.sleep(0.2)
    assert _host_processes_with(b"sleep\0" + arg.encode()) == []


async def test_output_cap_keeps_head_and_tail(sandbox: Sandbox) -> None:
    r = await sandbox.exec("seq 1 100000", timeout=20, output_limit=1000)
    assert r.truncated
    assert r.output.startswith("1\n2\n3\n")
    assert r.output.rstrip().endswith("99999\n100000")
    assert "cut" in r.output
    assert len(r.output) < 1200


async def test_a_gigabyte_of_output_does_not_grow_the_runner(sandbox: Sandbox) -> None:
    before = _rss_bytes()
    r = await sandbox.exec("yes | head -c 1G", timeout=120)
    after = _rss_bytes()
    assert r.ok and r.truncated
    assert len(r.output) < 40_000
    assert after - before < 50 * 1024 * 1024, f"runner RSS grew by {(after - before) >> 20} MiB"


async def test_binary_output_is_survivable(sandbox: Sandbox) -> None:
    r = await sandbox.exec("head -c 8192 /dev/urandom; printf '\\000\\377\\376'", timeout=10)
    assert r.ok
    assert isinstance(r.output, str)
    r2 = await sandbox.exec("echo still alive", timeout=10)
    assert r2.output.strip() == "still alive"


async def test_env_is_only_what_was_given(sandbox: Sandbox) -> None:
    assert os.environ["ANTHROPIC_API_KEY"] == HOST_SECRET  # the fixture put it there
    r = await sandbox.exec("env", timeout=10, env={"PER_CALL": "yes"})
    assert "GIVEN_VAR=given" in r.output
    assert "PER_CALL=yes" in r.output
    assert "ANTHROPIC_API_KEY" not in r.output
    assert HOST_SECRET not in r.output
    assert "PATH=" in r.output and "HOME=" in r.output
    r = await sandbox.exec("env", timeout=10)
    assert "PER_CALL" not in r.output  # per-call env does not stick


async def test_working_directory_is_the_workspace_root(sandbox: Sandbox) -> None:
    r = await sandbox.exec("pwd -P; ls", timeout=10)
    lines = r.output.split()
    assert lines[0] == workspace_root(sandbox)
    assert "hello.py" in lines


async def test_stdin_is_closed(sandbox: Sandbox) -> None:
    start = time.monotonic()
    r = await sandbox.exec("cat; echo done", timeout=20)
    assert r.ok and r.output.strip() == "done"
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("read", {"path": "../outside.txt"}),
        ("read", {"path": "/etc/passwd"}),
        ("read", {"path": "etc_link"}),
        ("read", {"path": "dir_link/passwd"}),
        ("ls", {"path": "dir_link"}),
        ("ls", {"path": ".."}),
        ("grep", {"pattern": "root", "path": "dir_link"}),
        ("glob", {"pattern": "../*"}),
        ("write", {"path": "../outside.txt", "content": "x"}),
        ("write", {"path": "/tmp/outside.txt", "content": "x"}),
        ("write", {"path": "out_link", "content": "x"}),
        ("write", {"path": "dir_link/new.txt", "content": "x"}),
        ("edit", {"path": "etc_link", "old_string": "root", "new_string": "toor"}),
    ],
)
async def test_paths_that_escape_are_refused(sandbox: Sandbox, op: str, args: dict[str, str]) -> None:
    root = sandbox.config.worktree
    outside = root.parent / "outside.txt"
    (root / "etc_link").symlink_to("/etc/passwd")
    (root / "dir_link").symlink_to("/etc")
    (root / "out_link").symlink_to(outside)  # absent target: a write would create it
    with pytest.raises(ToolFailure, match="outside"):
        await sandbox.file_op(op, **args)
    assert not outside.exists()
    assert not Path("/tmp/outside.txt").exists() or op != "write"
    assert not Path("/etc/new.txt").exists()


async def test_file_ops_round_trip(sandbox: Sandbox) -> None:
    w = await sandbox.file_op("write", path="pkg/mod.py", content="a = 1\nb = 2\n")
    assert w["created"]
    r = await sandbox.file_op("read", path="/workspace/pkg/mod.py")
    assert "a = 1" in r["content"] and r["total_lines"] == 2
    await sandbox.file_op("edit", path="pkg/mod.py", old_string="b = 2", new_string="b = 3")
    assert (sandbox.config.worktree / "pkg" / "mod.py").read_text() == "a = 1\nb = 3\n"
    assert "pkg/" in (await sandbox.file_op("ls"))["entries"]
    assert (await sandbox.file_op("glob", pattern="**/*.py"))["matches"] == ["hello.py", "pkg/mod.py"]
    g = await sandbox.file_op("grep", pattern=r"b = \d")
    assert g["matches"] == ["pkg/mod.py:2:b = 3"]
    # exec sees what the file tools wrote, and the other way round
    assert (await sandbox.exec("cat pkg/mod.py", timeout=10)).output == "a = 1\nb = 3\n"


async def test_edit_errors_are_precise(sandbox: Sandbox) -> None:
    await sandbox.file_op("write", path="three.txt", content="x = 1\nx = 1\nx = 1\n")
    with pytest.raises(ToolFailure, match="3 times"):
        await sandbox.file_op("edit", path="three.txt", old_string="x = 1", new_string="y")
    with pytest.raises(ToolFailure, match="not found"):
        await sandbox.file_op("edit", path="three.txt", old_string="zzz", new_string="y")
    with pytest.raises(ToolFailure, match="no such file"):
        await sandbox.file_op("edit", path="missing.txt", old_string="a", new_string="b")
    r = await sandbox.file_op("edit", path="three.txt", old_string="x = 1", new_string="y", replace_all=True)
    assert r["replacements"] == 3


async def test_concurrent_calls(sandbox: Sandbox) -> None:
    slow = asyncio.create_task(sandbox.exec("sleep 1; echo slow", timeout=10))
    fast = await sandbox.exec("echo fast", timeout=10)
    assert fast.output.strip() == "fast" and not slow.done()
    assert (await slow).output.strip() == "slow"


async def test_spawn_talks_over_stdio(sandbox: Sandbox) -> None:
    proc = await sandbox.spawn(["sh", "-c", 'echo "$SPAWN_VAR"; cat'], env={"SPAWN_VAR": "spawned"})
    assert proc.stdin is not None and proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 10)).strip() == b"spawned"
    proc.stdin.write(b"ping\n")
    await proc.stdin.drain()
    assert (await asyncio.wait_for(proc.stdout.readline(), 10)).strip() == b"ping"
    proc.stdin.close()
    assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_setsid_children_do_not_outlive_the_call(sandbox: Sandbox) -> None:
    """`setsid cmd &` leaves the call's process group: the helper (a child subreaper) still finds
    it and kills it once the call is over - while another call's process lives on."""
    arg = f"97.{secrets.randbelow(10**6)}"
    other = f"96.{secrets.randbelow(10**6)}"
    slow = asyncio.create_task(sandbox.exec(f"sleep {other} & sleep 3; echo slow", timeout=20))
    await asyncio.sleep(0.3)
    r = await sandbox.exec(f"setsid sh -c 'sleep {arg}' & setsid -f sh -c 'sleep {arg}'; echo started", timeout=10)
    assert r.ok and "started" in r.output
    assert (await sandbox.exec("true", timeout=10)).ok
    assert _host_processes_with(b"sleep\0" + arg.encode()) == []
    inside = await sandbox.exec("ps -eo args", timeout=10)
    assert f"sleep {arg}" not in inside.output
    assert f"sleep {other}" in inside.output  # the concurrent call's own child is left alone
    assert (await slow).output.strip() == "slow"


async def test_bad_env_names_are_refused(sandbox: Sandbox) -> None:
    for env in ({"A=B": "x"}, {"1X": "x"}, {"": "x"}, {"X Y": "x"}):
        with pytest.raises(ToolFailure, match="invalid environment variable name"):
            await sandbox.spawn(["true"], env=env)
        with pytest.raises(ToolFailure, match="invalid environment variable name"):
            await sandbox.exec("true", timeout=10, env=env)


async def test_pause_and_resume_are_safe_to_call(sandbox: Sandbox) -> None:
    await sandbox.pause()
    await sandbox.resume()
    assert (await sandbox.exec("echo ok", timeout=10)).output.strip() == "ok"


async def test_read_and_edit_refuse_huge_files(sandbox: Sandbox) -> None:
    big = sandbox.config.worktree / "huge.log"
    with big.open("wb") as f:
        f.truncate(21 * 1024 * 1024)  # sparse: 21 MB of NULs on paper
    with pytest.raises(ToolFailure, match=r"22020096 bytes.*over the 20 MB.*sed -n"):
        await sandbox.file_op("read", path="huge.log")
    with pytest.raises(ToolFailure, match="over the 20 MB"):
        await sandbox.file_op("edit", path="huge.log", old_string="a", new_string="b")


async def test_read_and_grep_report_real_paths(sandbox: Sandbox) -> None:
    await sandbox.file_op("write", path="pkg/mod.py", content="needle = 1\n")
    root = sandbox.config.worktree
    (root / "alias.py").symlink_to("pkg/mod.py")
    (root / "pkg_link").symlink_to("pkg")
    r = await sandbox.file_op("read", path="alias.py")
    assert r["resolved"] == "pkg/mod.py" and "needle" in r["content"]
    assert (await sandbox.file_op("read", path="pkg/mod.py"))["resolved"] == "pkg/mod.py"
    g = await sandbox.file_op("grep", pattern="needle")  # the walk enters no symlink
    assert g["matches"] == ["pkg/mod.py:1:needle = 1"] and g["files"] == ["pkg/mod.py"]
    for start in ("alias.py", "pkg_link", "pkg_link/mod.py"):
        g = await sandbox.file_op("grep", pattern="needle", path=start)
        assert g["files"] == ["pkg/mod.py"], start
        assert g["matches"] == ["pkg/mod.py:1:needle = 1"], start
