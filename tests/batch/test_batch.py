"""Batches of scripted tasks in the local sandbox, run in-process through the real CLI entry point."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

import runner.batch.scheduler as scheduler
from tests.batch.helpers import AGGREGATES, CRASH, EDIT, LOOP, LS, OUTPUT_FILES, Workdir, normalized


@pytest.fixture
def wd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workdir:
    monkeypatch.setenv("ASTRA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("ASTRA_SHARD", raising=False)
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    return Workdir(tmp_path)


def test_one_crash_one_limit_one_verify_failure_the_rest_succeed(
    wd: Workdir, capsys: pytest.CaptureFixture[str]
) -> None:
    wd.task("ok-1", LS)
    wd.task("ok-2", EDIT)
    wd.task("ok-3", LS)
    wd.task("crash", CRASH)
    wd.task("limit", LOOP, limits={"max_turns": 2})
    wd.task("verify", LS, verify=[{"name": "check", "run": "exit 1"}])
    wd.manifest()
    assert wd.batch("-j", "3") == 4
    results = wd.results()
    assert {n: (r["status"], r["exit_code"]) for n, r in results.items()} == {
        "crash": ("error", 4), "limit": ("limit", 3), "ok-1": ("success", 0), "ok-2": ("success", 0),
        "ok-3": ("success", 0), "verify": ("failed", 1),
    }
    assert "sandbox helper" in results["crash"]["reason"]
    assert results["ok-2"]["patch"]["files_changed"] == 1
    for name, record in results.items():
        task_dir = wd.out / name
        assert {p.name for p in task_dir.iterdir()} >= OUTPUT_FILES, name
        assert json.loads((task_dir / "result.json").read_text()) == record
    assert "NOTES.md" in (wd.out / "ok-2" / "patch.diff").read_text()
    assert {p.name for p in wd.out.iterdir()} >= AGGREGATES
    junit = ET.fromstring((wd.out / "junit.xml").read_text())
    assert [s.get("name") for s in junit.iter("testsuite")] == sorted(results)
    assert junit.get("errors") == "1"  # the crash; the limit and the verify check are failures
    cost = json.loads((wd.out / "cost.json").read_text())
    assert sorted(cost["tasks"]) == sorted(results) and cost["total_cost_usd"] == 0.0
    summary = (wd.out / "summary.md").read_text()
    assert "| Task | Status | Reason | Turns | Cost | Files changed |" in summary
    assert "| ok-2 | success | the agent finished (no verify checks) | 2 | $0.0000 | 1 |" in summary
    assert "exit code 4" in summary
    printed = capsys.readouterr().out
    assert "\x1b" not in printed  # not a terminal: plain lines
    assert printed.count(" start ") == 6 and printed.count(" finished ") == 6


def test_an_unexpected_exception_in_run_task_stays_in_its_task(
    wd: Workdir, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = scheduler.run_task

    async def flaky(task: Any, *args: Any, **kwargs: Any) -> Any:
        if task.spec.name == "boom":
            raise RuntimeError("a bug nobody foresaw")
        return await real(task, *args, **kwargs)

    monkeypatch.setattr(scheduler, "run_task", flaky)
    for name in ("a", "boom", "c"):
        wd.task(name, LS)
    wd.manifest()
    assert wd.batch("-j", "2") == 4
    results = wd.results()
    assert results["a"]["status"] == results["c"]["status"] == "success"
    assert results["boom"]["status"] == "error" and "RuntimeError: a bug nobody foresaw" in results["boom"]["reason"]
    assert {p.name for p in (wd.out / "boom").iterdir()} >= OUTPUT_FILES  # written for it by the batch


def test_a_task_whose_output_directory_is_a_file_stops_the_batch_before_it_starts(
    wd: Workdir, capsys: pytest.CaptureFixture[str]
) -> None:
    """OUT/<task> is a file: the preflight finds it (exit 2), and no task runs."""
    for name in ("a", "blocked"):
        wd.task(name, LS)
    wd.manifest()
    wd.out.mkdir()
    (wd.out / "blocked").write_text("in the way\n")
    assert wd.batch("-j", "2") == 2
    assert f"{wd.out / 'blocked'} exists and is not a directory" in capsys.readouterr().err
    assert not (wd.out / "a").exists()


def test_fail_fast_stops_starting_tasks(wd: Workdir) -> None:
    wd.task("a-fails", LS, verify=[{"name": "check", "run": "exit 1"}])
    wd.task("b", LS)
    wd.task("c", LS)
    wd.manifest()
    assert wd.batch("--fail-fast") == 1
    results = wd.results()
    assert results["a-fails"]["status"] == "failed"
    assert {results["b"]["status"], results["c"]["status"]} == {"skipped"}
    assert "--fail-fast" in results["b"]["reason"]
    assert not (wd.out / "b").exists()
    junit = ET.fromstring((wd.out / "junit.xml").read_text())
    assert len(list(junit.iter("skipped"))) == 2


def test_resume_reuses_final_results_and_reruns_the_rest(wd: Workdir, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a", "b", "c"):
        wd.task(name, LS)
    wd.manifest()
    assert wd.batch() == 0
    first = wd.results()
    # b was interrupted in an earlier run; c never ran
    interrupted = dict(first["b"], status="interrupted", exit_code=143)
    (wd.out / "b" / "result.json").write_text(json.dumps(interrupted))
    (wd.out / "c" / "result.json").unlink()
    capsys.readouterr()
    assert wd.batch("--resume") == 0
    second = wd.results()
    assert second["a"]["run_id"] == first["a"]["run_id"]  # reused, not run again
    assert second["b"]["run_id"] != first["b"]["run_id"] and second["b"]["status"] == "success"
    assert second["c"]["status"] == "success"
    printed = capsys.readouterr().out
    assert "resumed  a" in printed and "start    b" in printed and "start    a" not in printed


def test_shards_cover_every_task_once_and_merge_equals_an_unsharded_run(wd: Workdir) -> None:
    names = ["t-" + c for c in "abcdefg"]
    for i, name in enumerate(names):
        wd.task(name, EDIT if i % 2 else LS, **({"verify": [{"name": "v", "run": "exit 1"}]} if i == 3 else {}))
    wd.manifest()
    assert wd.batch("-j", "4", out=wd.root / "full") == 1
    shards = [wd.root / f"shard-{i}" for i in range(3)]
    codes = [wd.batch("--shard", f"{i}/3", out=shard) for i, shard in enumerate(shards)]
    seen = [name for shard in shards for name in wd.results(shard)]
    assert sorted(seen) == names  # every task exactly once
    assert sorted(codes) == [0, 0, 1]
    from runner.cli import main

    assert main(["merge", *map(str, shards), "--out", str(wd.root / "merged")]) == 1
    full, merged = wd.results(wd.root / "full"), wd.results(wd.root / "merged")
    assert {n: normalized(r) for n, r in merged.items()} == {n: normalized(r) for n, r in full.items()}
    assert (wd.root / "merged" / "summary.md").read_text() == (wd.root / "full" / "summary.md").read_text()
    for name in names:
        assert (wd.root / "merged" / name / "patch.diff").read_bytes() == (
            wd.root / "full" / name / "patch.diff").read_bytes()
    cost_full = json.loads((wd.root / "full" / "cost.json").read_text())
    cost_merged = json.loads((wd.root / "merged" / "cost.json").read_text())
    assert cost_merged == cost_full
    suites = [s.get("name") for s in ET.fromstring((wd.root / "merged" / "junit.xml").read_text()).iter("testsuite")]
    assert suites == names
    # merging is idempotent: the merged directory merged again gives the same aggregates
    before = {f: (wd.root / "merged" / f).read_text() for f in AGGREGATES}
    assert main(["merge", str(wd.root / "merged"), "--out", str(wd.root / "merged")]) == 1
    assert {f: (wd.root / "merged" / f).read_text() for f in AGGREGATES} == before


def test_shard_from_the_environment(wd: Workdir, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b", "c", "d"):
        wd.task(name, LS)
    wd.manifest()
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    assert wd.batch() == 2  # the count is missing: refused rather than running everything
    monkeypatch.setenv("ASTRA_SHARD_COUNT", "2")
    assert wd.batch() == 0
    assert sorted(wd.results()) == ["b", "d"]
    monkeypatch.setenv("ASTRA_SHARD", "0/2")  # wins over the Kubernetes index
    assert wd.batch(out=wd.root / "s0") == 0
    assert sorted(wd.results(wd.root / "s0")) == ["a", "c"]
    assert wd.batch("--shard", "2/2") == 2


def test_many_tasks_on_one_repository_at_once(wd: Workdir, capsys: pytest.CaptureFixture[str]) -> None:
    """Concurrent `git worktree add/remove` in one repository races; Workspace serialises them with
    a file lock, so 24 tasks at -j 8 on one repository all start on their first try."""
    for i in range(24):
        wd.task(f"t{i:02d}", EDIT)
    wd.manifest()
    assert wd.batch("-j", "8") == 0
    results = wd.results()
    assert len(results) == 24 and {r["status"] for r in results.values()} == {"success"}
    out = capsys.readouterr()
    assert "trying again" not in out.out + out.err
    assert not any(r["reason"] and "git" in r["reason"] for r in results.values())


def test_astra_out_is_the_default_output_directory(
    wd: Workdir, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SPEC precedence: --out, then $ASTRA_OUT, then astra-out."""
    from runner.cli import main

    wd.task("a", LS)
    manifest = wd.manifest()
    monkeypatch.setenv("ASTRA_OUT", str(tmp_path / "from-env"))
    monkeypatch.chdir(tmp_path)
    assert main(["batch", str(manifest)]) == 0
    assert (tmp_path / "from-env" / "a" / "result.json").is_file()
    assert (tmp_path / "from-env" / "results.jsonl").is_file()
    assert main(["batch", str(manifest), "--out", str(tmp_path / "from-flag")]) == 0
    assert (tmp_path / "from-flag" / "results.jsonl").is_file()
    monkeypatch.delenv("ASTRA_OUT")
    assert main(["batch", str(manifest)]) == 0
    assert (tmp_path / "astra-out" / "results.jsonl").is_file()


def test_merge_of_corrupt_files_is_a_configuration_error(
    wd: Workdir, capsys: pytest.CaptureFixture[str]
) -> None:
    from runner.cli import main

    wd.task("a", LS)
    wd.manifest()
    assert wd.batch() == 0
    # a task's junit.xml that is not text: the merge still works (the task gets a synthetic suite)
    (wd.out / "a" / "junit.xml").write_bytes(b"\xff\xfe<testsuite")
    assert main(["merge", str(wd.out), "--out", str(wd.root / "merged")]) == 0
    assert "a" in (wd.root / "merged" / "junit.xml").read_text()
    # a results.jsonl that is not text: exit 2 naming the file, no traceback
    (wd.out / "results.jsonl").write_bytes(b"\xff\xfe\x00garbage\n")
    capsys.readouterr()
    assert main(["merge", str(wd.out), "--out", str(wd.root / "merged2")]) == 2
    err = capsys.readouterr().err
    assert f"{wd.out / 'results.jsonl'}: cannot read it" in err and "Traceback" not in err


def test_the_local_sandbox_warning_is_printed_once_naming_the_tasks(
    wd: Workdir, capsys: pytest.CaptureFixture[str]
) -> None:
    from runner.sandbox.local import LOCAL_WARNING

    for name in ("a", "b"):
        wd.task(name, LS)
    wd.manifest()
    assert wd.batch("-j", "2") == 0
    err = capsys.readouterr().err
    assert err.count(LOCAL_WARNING) == 1, err
    assert "2 task(s) use the local sandbox (a, b)" in err


def test_tasks_do_not_write_the_step_summary_and_the_environment_is_left_alone(
    wd: Workdir, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    step = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    real = scheduler.run_task
    seen: list[tuple[str | None, object]] = []

    async def spy(task: Any, *args: Any, **kwargs: Any) -> Any:
        import os

        seen.append((os.environ.get("GITHUB_STEP_SUMMARY"), kwargs.get("step_summary")))
        return await real(task, *args, **kwargs)

    monkeypatch.setattr(scheduler, "run_task", spy)
    for name in ("a", "b"):
        wd.task(name, LS)
    wd.manifest()
    assert wd.batch("-j", "2") == 0
    assert seen == [(str(step), False)] * 2
    text = step.read_text()
    assert text.count("## astra-run batch: manifest.yaml") == 1 and "| a | success |" in text
    assert "astra-run: a" not in text


def test_task_watch_is_a_run_observer_not_a_console() -> None:
    import asyncio

    from runner.agent.events import SandboxReady
    from runner.reports.console import Console
    from runner.run import RunObserver

    async def check() -> None:
        updates: list[tuple[str, int, float | None]] = []
        watch = scheduler.TaskWatch("t", lambda *u: updates.append(u))
        observer: RunObserver = watch
        assert not isinstance(watch, Console)
        assert observer.redact("x") == "x"
        assert not watch.started.is_set()
        watch.on_event(SandboxReady("local", 0.1))
        assert watch.started.is_set()  # the start gate opens when the sandbox is up

    asyncio.run(check())


def test_a_failure_of_the_batch_itself_stops_the_running_tasks_cleanly(
    wd: Workdir, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exception out of one worker (a bug of the batch runner): the other workers and their
    running tasks are cancelled, and those tasks still write their outputs and stop their commands."""
    import time

    from runner.batch.progress import Progress

    flag = wd.root / "never"
    wait = [{"tool_calls": [{"name": "bash", "input": {"command": f"while [ ! -f {flag} ]; do sleep 0.1; done"}}]},
            {"text": "done"}]
    wd.task("a", LS)
    wd.task("slow", wait)
    real = Progress.finish

    def broken(self: Progress, name: str, result: dict[str, Any]) -> None:
        if name == "a":
            raise RuntimeError("a bug in the progress display")
        real(self, name, result)

    monkeypatch.setattr(Progress, "finish", broken)
    wd.manifest()
    started = time.monotonic()
    assert wd.batch("-j", "2") == 4
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert "internal error in the batch runner: RuntimeError: a bug in the progress display" in err
    assert {p.name for p in (wd.out / "slow").iterdir()} >= OUTPUT_FILES  # its run wrote everything
    assert {p.name for p in wd.out.iterdir()} >= AGGREGATES
    assert wd.results()["slow"]["status"] == "skipped"  # --resume runs it again
    from tests.batch.test_signals import _processes_mentioning

    assert not _processes_mentioning(str(flag)), "the running task's command was stopped"
