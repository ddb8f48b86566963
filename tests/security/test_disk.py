"""Issue 12.7: the worktree's size has a limit (sandbox.disk). The kernel holds every single file
to it (RLIMIT_FSIZE, hard, set by the helper before any command runs); the total is measured
while each command runs and after every call. Over it: exit 3, a reason naming the limit, and the
patch of the work so far is kept."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.sandbox.base import size_bytes
from tests.security.helpers import attack, bash, result, tool_outputs

WRITE_NOTES = {"tool_calls": [{"name": "write", "input": {"path": "NOTES.md", "content": "kept\n"}}]}


@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_one_huge_file_is_refused_by_the_kernel(tmp_path: Path, backend: str) -> None:
    proc, out = attack(tmp_path, [bash("fallocate -l 1G big; echo fallocate=$?; ulimit -f unlimited; "
                                       "echo raise=$?; stat -c size=%s big")],
                       backend=backend, sandbox={"disk": "50m"})
    [output] = tool_outputs(out)
    assert "fallocate=153" in output and "File size limit exceeded" in output, output  # SIGXFSZ
    assert "size=0" in output, output
    if backend == "docker":  # no capability there: the hard limit cannot be lifted
        assert "raise=1" in output, output
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_filling_the_disk_is_a_limit_and_keeps_the_patch(tmp_path: Path, backend: str) -> None:
    fill = "for i in $(seq 1 40); do head -c 8M /dev/zero > f$i; sleep 0.1; done; sleep 30; echo never-here"
    started = time.monotonic()
    proc, out = attack(tmp_path, [WRITE_NOTES, bash(fill)], backend=backend, sandbox={"disk": "60m"})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    r = result(out)
    assert r["status"] == "limit" and r["reason"].startswith("disk:") and "sandbox.disk (60m)" in r["reason"], r
    assert "NOTES.md" in (out / "patch.diff").read_text()
    assert time.monotonic() - started < 30  # stopped while the command ran, not after its sleep
    assert not any("never-here" in t for t in tool_outputs(out))


def test_sizes() -> None:
    assert size_bytes("10g") == 10 * 2**30 and size_bytes("512m") == 512 * 2**20 and size_bytes("2048") == 2048
    assert size_bytes("1.5k") == 1536
