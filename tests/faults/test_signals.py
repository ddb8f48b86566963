"""Signals at each phase boundary: the outputs are complete and true, nothing is left behind, and
the exit code is the signal's (130/143). Delivered for real (os.kill) at the exact boundary, by
wrapping the function that starts that phase."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runner import finish as finish_mod
from runner import workspace as workspace_mod
from runner.cli import main
from tests.faults.helpers import EDIT, OUTPUT_FILES, assert_cleaned_up, events, make_task, result_of, worktrees


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ASTRA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return tmp_path / "cache"


def signal_when_called(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, signum: int = signal.SIGTERM,
                       when: Any = None) -> list[int]:
    """Replace module.name by a wrapper that sends `signum` to this process first (once)."""
    original = getattr(module, name)
    sent: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not sent and (when is None or when(*args, **kwargs)):
            sent.append(signum)
            os.kill(os.getpid(), signum)
            time.sleep(0.2)  # the handler runs on the loop meanwhile: the cancellation is in flight
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return sent


def test_a_signal_while_finishing_is_honoured_after_outputs_and_cleanup(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """It escaped asyncio.shield: exit 1 with a CancelledError traceback while result.json said
    success, the worktree and run dir leaked."""
    task = make_task(tmp_path, EDIT, verify=[{"name": "ok", "run": "true"}])
    sent = signal_when_called(monkeypatch, finish_mod, "write_reports")
    assert main(["run", str(task)]) == 143
    assert sent
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} >= OUTPUT_FILES
    r = result_of(out)
    assert r["status"] == "success" and r["patch"]["files_changed"] == 1  # the run had ended: true
    assert events(out)[-1]["type"] == "run_finished"
    assert_cleaned_up(tmp_path / "repo", cache)
    assert "SIGTERM came while the run was finishing" in capsys.readouterr().out


def test_a_signal_while_the_patch_is_written_after_the_agent(tmp_path: Path, cache: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    task = make_task(tmp_path, EDIT)
    sent = signal_when_called(monkeypatch, finish_mod, "write_bytes_atomic", signal.SIGINT)
    assert main(["run", str(task)]) == 130 and sent
    out = tmp_path / "out"
    assert result_of(out)["patch"]["files_changed"] == 1
    assert (out / "patch.diff").read_text().count("NOTES.md") >= 1
    assert_cleaned_up(tmp_path / "repo", cache)


def test_a_signal_while_the_worktree_is_created_leaves_no_worktree(tmp_path: Path, cache: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread making the worktree finished after the cancel: it stayed registered in the repo."""
    task = make_task(tmp_path, EDIT)
    sent = signal_when_called(monkeypatch, workspace_mod, "git", when=lambda args, **_: args[:2] == ["worktree", "add"])
    assert main(["run", str(task)]) == 143 and sent
    r = result_of(tmp_path / "out")
    assert r["status"] == "interrupted" and r["exit_code"] == 143
    assert_cleaned_up(tmp_path / "repo", cache)


def test_a_signal_during_verify(tmp_path: Path, cache: Path) -> None:
    task = make_task(tmp_path, EDIT, verify=[{"name": "slow", "run": f"kill -TERM {os.getpid()}; sleep 30"}])
    started = time.monotonic()
    assert main(["run", str(task)]) == 143
    assert time.monotonic() - started < 20
    r = result_of(tmp_path / "out")
    assert r["status"] == "interrupted" and r["patch"]["files_changed"] == 1
    assert_cleaned_up(tmp_path / "repo", cache)


def test_in_a_batch_a_task_that_was_finishing_keeps_its_success(tmp_path: Path, cache: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """It was recorded as `skipped: not started: interrupted`."""
    from tests.batch.helpers import LS, Workdir

    wd = Workdir(tmp_path)
    wd.task("a", LS)
    wd.manifest()
    sent = signal_when_called(monkeypatch, finish_mod, "write_reports")
    assert wd.batch() == 143 and sent
    r = wd.results()["a"]
    assert r["status"] == "success" and r["run_id"], r
    assert worktrees(wd.repo) == []


def _caught(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


def test_a_signal_at_the_first_instruction_still_writes_the_outputs(tmp_path: Path) -> None:
    """A SIGTERM in the first 0.2 s killed the process with no output: the handlers came with the
    event loop, after every heavy import. Now main() installs them first: the process is
    frozen the moment it catches SIGTERM, and by then it must not have loaded pydantic yet."""
    task = make_task(tmp_path, EDIT)
    env = {**os.environ, "ASTRA_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(task)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not _caught(proc.pid) & (1 << (signal.SIGTERM - 1)):
            assert proc.poll() is None and time.monotonic() < deadline, "SIGTERM was never caught"
        os.kill(proc.pid, signal.SIGSTOP)
        loaded = Path(f"/proc/{proc.pid}/maps").read_text()
        os.kill(proc.pid, signal.SIGTERM)
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "pydantic_core" not in loaded, "the handlers were installed only after the heavy imports"
    assert proc.returncode == 143, out + err
    assert "Traceback" not in err
    r = result_of(tmp_path / "out")
    assert r["status"] == "interrupted" and r["turns"] == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} >= OUTPUT_FILES
