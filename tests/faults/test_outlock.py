"""Two runs, one output directory: the second exits 2 at once and writes nothing; the first's
trajectory stays valid JSONL (they interleaved, and both exited 0)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.faults.helpers import EDIT, make_task


def test_a_second_run_into_the_same_output_dir_exits_2(tmp_path: Path) -> None:
    slow = [{"text": "thinking", "sleep": 3, "tool_calls": [{"name": "ls", "input": {}}]}, *EDIT]
    task = make_task(tmp_path, slow)
    env = {**os.environ, "ASTRA_CACHE": str(tmp_path / "cache")}
    env.pop("GITHUB_STEP_SUMMARY", None)
    argv = [sys.executable, "-m", "runner", "run", str(task)]
    first = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = tmp_path / "out"
        deadline = time.monotonic() + 30
        while not (out / "trajectory.jsonl").exists() or not (out / "trajectory.jsonl").read_text():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        before = (out / "trajectory.jsonl").read_text()
        second = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"another astra-run (pid {first.pid}) is writing into it" in second.stderr
        assert (out / "trajectory.jsonl").read_text().startswith(before)
        stdout, stderr = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0, stdout + stderr
    lines = (out / "trajectory.jsonl").read_text().splitlines()
    kinds = [json.loads(line)["type"] for line in lines]
    assert kinds.count("run_started") == 1 and kinds[-1] == "run_finished"


def test_a_second_batch_into_the_same_output_dir_exits_2(tmp_path: Path) -> None:
    from runner.outlock import hold_output_dir
    from tests.batch.helpers import LS, Workdir

    wd = Workdir(tmp_path)
    wd.task("a", LS)
    wd.manifest()
    wd.out.mkdir()
    with hold_output_dir(wd.out):  # another process's lock, as far as flock goes (own open file)
        assert wd.batch() == 2
    assert not (wd.out / "a").exists() and not (wd.out / "results.jsonl").exists()
    assert wd.batch() == 0
