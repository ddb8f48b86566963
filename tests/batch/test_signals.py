"""SIGTERM to a real `python -m runner batch` mid-run, then --resume completes the rest; a second
signal during the cleanup."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from runner.diskcap import mounts_under
from tests.batch.helpers import AGGREGATES, LS, OUTPUT_FILES, Workdir


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and text in args:
            found.append(f"{proc.name} {args}")
    return found


def test_sigterm_stops_the_batch_and_resume_finishes_it(tmp_path: Path) -> None:
    wd = Workdir(tmp_path)
    flag = tmp_path / "GO"
    wait: list[dict[str, Any]] = [{"tool_calls": [{"name": "bash", "input": {"command": f"while [ ! -f {flag} ]; do sleep 0.1; done"}}]},
            {"text": "done"}]
    for name in ("a", "b"):
        wd.task(name, LS)
    for name in ("c", "d", "e"):
        wd.task(name, wait)
    wd.manifest()
    env = {**os.environ, "ASTRA_CACHE": str(tmp_path / "cache"), "CI": "true"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    argv = [sys.executable, "-m", "runner", "batch", str(tmp_path / "manifest.yaml"), "--out", str(wd.out), "-j", "2"]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(_processes_mentioning(str(flag))) < 2:  # c and d are both waiting
            assert proc.poll() is None and time.monotonic() < deadline, "c and d never started waiting"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert time.monotonic() - sent < 5, "stopped within seconds"
    assert proc.returncode == 143, out + err
    assert "Traceback" not in err
    results = wd.results()
    assert [results[n]["status"] for n in "abcde"] == ["success", "success", "interrupted", "interrupted", "skipped"]
    assert results["c"]["exit_code"] == 143 and "SIGTERM" in results["c"]["reason"]
    for name in "abcd":
        assert {p.name for p in (wd.out / name).iterdir()} >= OUTPUT_FILES
    assert {p.name for p in wd.out.iterdir()} >= AGGREGATES
    assert not _processes_mentioning(str(flag)), "the interrupted tasks' commands were killed"
    assert "exit code 143" in (wd.out / "summary.md").read_text()

    flag.touch()
    first = {n: json.loads((wd.out / n / "result.json").read_text())["run_id"] for n in "ab"}
    done = subprocess.run([*argv, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    results = wd.results()
    assert {r["status"] for r in results.values()} == {"success"}
    assert {n: results[n]["run_id"] for n in "ab"} == first  # finished ones were not run again
    assert done.stdout.count(" start ") == 3 and done.stdout.count("resumed") == 2


def test_a_second_signal_during_the_cleanup_exits_at_once(tmp_path: Path) -> None:
    """The first SIGTERM starts the running tasks' cleanup (here slow: an MCP server that ignores
    the MCP shutdown gets two seconds of grace); a second one stops waiting for it: aggregates as
    they are, exit 143 at once."""
    from tests.mcp.conftest import STDLIB_SERVER, host_processes, new_tag

    wd = Workdir(tmp_path)
    flag = tmp_path / "GO"
    tag = new_tag()
    wait: list[dict[str, Any]] = [{"tool_calls": [{"name": "bash", "input": {"command": f"while [ ! -f {flag} ]; do sleep 0.1; done"}}]},
                                  {"text": "done"}]
    stubborn = {"command": sys.executable, "args": [str(STDLIB_SERVER), "--tag", tag, "--ignore-eof"], "where": "host"}
    for name in ("c", "d"):
        wd.task(name, wait, mcp_servers={"stubborn": stubborn})
    wd.manifest()
    env = {**os.environ, "ASTRA_CACHE": str(tmp_path / "cache"), "CI": "true"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    argv = [sys.executable, "-m", "runner", "batch", str(tmp_path / "manifest.yaml"), "--out", str(wd.out), "-j", "2"]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(_processes_mentioning(str(flag))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "c and d never started waiting"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        second = time.monotonic()
        out, err = proc.communicate(timeout=20)
        took = time.monotonic() - second
    finally:
        proc.kill()
        for line in host_processes(tag):  # the servers it did not wait for (ours, by pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
    assert proc.returncode == 143, out + err
    assert took < 1.0, f"exited {took:.1f}s after the second signal"
    assert "SIGTERM again: exiting now" in out
    assert "Traceback" not in err
    results = wd.results()
    assert [results[n]["status"] for n in "cd"] == ["interrupted", "interrupted"]
    # What it did not wait for is `astra-run cleanup`'s: the worktrees' own file systems included.
    done = subprocess.run([sys.executable, "-m", "runner", "cleanup"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert mounts_under(tmp_path) == []
    assert all(results[n]["exit_code"] == 143 for n in "cd")
    assert "exit code 143" in (wd.out / "summary.md").read_text()
