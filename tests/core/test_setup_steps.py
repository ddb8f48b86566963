"""Setup commands: their output and time in the trajectory and on the console; setup_timeout holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import make_repo


def run(tmp_path: Path, sandbox: str, *flags: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    (tmp_path / "m.yaml").write_text("- text: done\n")
    (tmp_path / "task.yaml").write_text("name: setup\nrepo: repo\nprompt: p\nmodel: scripted:m.yaml\n"
                                        "expect_changes: false\noutputs: {dir: out}\nsandbox:\n" + sandbox)
    env = {**os.environ, "ASTRA_CACHE": str(tmp_path / "cache"), "CI": "true"}
    proc = subprocess.run([sys.executable, "-m", "runner", "run", "task.yaml", *flags], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    return proc, tmp_path / "out"


def test_setup_output_and_time_are_in_the_trajectory_and_with_v_on_the_console(tmp_path: Path) -> None:
    proc, out = run(tmp_path, "  backend: local\n  setup: ['echo hello-from-setup; sleep 0.2']\n", "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()]
    setup = [e for e in steps if e["type"] == "setup"]
    assert len(setup) == 1 and setup[0]["exit_code"] == 0 and setup[0]["duration_s"] >= 0.2
    assert "hello-from-setup" in setup[0]["output_tail"]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("[setup] echo hello-from-setup; sleep 0.2 -> exit 0 (") for line in lines), lines
    assert "[setup] | hello-from-setup" in lines


def test_setup_timeout_is_the_tasks_for_all_commands_together(tmp_path: Path) -> None:
    started = time.monotonic()
    proc, out = run(tmp_path, "  backend: local\n  setup_timeout: 2s\n  setup: ['sleep 1.5', 'sleep 30']\n")
    assert time.monotonic() - started < 30
    assert proc.returncode == 4, proc.stdout + proc.stderr
    reason = json.loads((out / "result.json").read_text())["reason"]
    assert "setup command timed out after 2s (sandbox.setup_timeout): sleep 30" in reason, reason
