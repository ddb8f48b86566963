"""End to end through the real CLI: scripted model, real git, the local sandbox.

(The same flow in the Docker sandbox and with the real SDK against the fake Messages API is in
tests/e2e/.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import make_repo, sh_git, tree_digest

OUTPUT_FILES = {"result.json", "patch.diff", "junit.xml", "cost.json", "summary.md", "trajectory.jsonl", "report.html"}

BUGGY = "def mean(xs):\n    return sum(xs) / len(xs)\n"
TEST = "from calc import mean\n\ndef test_empty():\n    assert mean([]) == 0\n\ndef test_two():\n    assert mean([1, 3]) == 2\n"
FIX = [
    {"text": "run tests", "tool_calls": [{"name": "bash", "input": {"command": "python -m pytest -q -p no:cacheprovider"}}]},
    {"tool_calls": [{"name": "edit", "input": {"path": "calc.py", "old_string": "    return sum",
                                                 "new_string": "    if not xs:\n        return 0\n    return sum"}}]},
    {"tool_calls": [{"name": "write", "input": {"path": "NOTES.md", "content": "fixed\n"}}]},
    {"text": "Fixed mean([])."},
]


def scenario(tmp_path: Path, turns: list[dict[str, Any]], **task: Any) -> tuple[Path, Path, Path]:
    repo = make_repo(tmp_path / "repo", {"calc.py": BUGGY, "test_calc.py": TEST})
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(turns))
    spec: dict[str, Any] = {
        "name": "e2e",
        "repo": "repo",
        "prompt": "make mean([]) return 0",
        "model": "scripted:model.yaml",
        "sandbox": {"backend": "local"},
        "verify": [{"name": "tests", "run": "python -m pytest -q -p no:cacheprovider --junitxml=$ASTRA_JUNIT"}],
        "outputs": {"dir": str(tmp_path / "out")},
    }
    spec.update(task)
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "task.yaml", repo, tmp_path / "out"


def astra(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "ASTRA_CACHE": str(cwd / "cache") if cwd else os.environ.get("ASTRA_CACHE", ""),
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120)


def result_of(out: Path) -> dict[str, Any]:
    assert {p.name for p in out.iterdir()} >= OUTPUT_FILES, sorted(p.name for p in out.iterdir())
    data: dict[str, Any] = json.loads((out / "result.json").read_text())
    return data


def events(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()]


def test_a_fix_end_to_end(tmp_path: Path) -> None:
    task, repo, out = scenario(tmp_path, FIX)
    before = tree_digest(repo)
    proc = astra("run", str(task), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = result_of(out)
    assert r["status"] == "success" and r["exit_code"] == 0
    assert r["turns"] == 4 and r["tool_calls"] == 3
    assert [{k: v for k, v in c.items() if k != "output_tail"} for c in r["verify"]] == [
        {"name": "tests", "passed": True, "exit_code": 0}]
    assert "2 passed" in r["verify"][0]["output_tail"]
    assert r["patch"] == {"files_changed": 2, "insertions": 3, "deletions": 0}
    assert r["base_commit"] == sh_git(repo, "rev-parse", "HEAD")
    # the user's repository is byte-for-byte untouched and has no worktree registered
    assert tree_digest(repo) == before
    assert sh_git(repo, "worktree", "list").count("\n") == 0
    # the patch applies on the base and makes the failing test pass
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "apply", str(out / "patch.diff")], check=True)
    test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=clone)
    assert test.returncode == 0
    kinds = [e["type"] for e in events(out)]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("model_turn") == 4 and kinds.count("tool_result") == 3
    # the merged pytest report made it into junit.xml
    assert "test_empty" in (out / "junit.xml").read_text()
    assert "Traceback" not in proc.stderr


def test_verify_failure_exits_1(tmp_path: Path) -> None:
    task, _, out = scenario(tmp_path, [{"text": "I won't change anything."}])
    proc = astra("run", str(task), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    r = result_of(out)
    assert r["status"] == "failed" and r["reason"] == "verify failed: tests"
    assert r["verify"][0]["passed"] is False
    assert (out / "patch.diff").read_bytes() == b""


def test_turn_limit_keeps_the_work(tmp_path: Path) -> None:
    task, _, out = scenario(tmp_path, FIX, limits={"max_turns": 2})
    proc = astra("run", str(task), cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    r = result_of(out)
    assert r["status"] == "limit" and "max_turns" in r["reason"] and "2" in r["reason"]
    assert r["turns"] == 2
    assert "return 0" in (out / "patch.diff").read_text()  # the edit of turn 2 is kept
    limit = next(e for e in events(out) if e["type"] == "limit")
    assert (limit["limit"], limit["value"]) == ("max_turns", 2)


def test_circuit_breaker_and_repeat_callout(tmp_path: Path) -> None:
    bad = {"tool_calls": [{"name": "read", "input": {"path": "missing.py"}}]}
    task, _, out = scenario(tmp_path, [bad] * 6, limits={"circuit_breaker": 4})
    proc = astra("run", str(task), cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    r = result_of(out)
    assert "circuit breaker" in r["reason"] and "4 consecutive failed tool calls" in r["reason"]
    results = [e for e in events(out) if e["type"] == "tool_result"]
    assert len(results) == 4
    assert "failed 3 times in a row" in results[2]["output"]


def test_malformed_model_output_goes_back_to_the_model(tmp_path: Path) -> None:
    turns = [
        {"tool_calls": [{"name": "rm_rf", "input": {"path": "/"}}]},
        {"tool_calls": [{"name": "bash", "input": {}, "input_error": "Expecting value: line 1 column 9"}]},
        {"tool_calls": [{"name": "read", "input": {"path": 7, "extra": True}}]},
        {"text": "giving up"},
    ]
    task, _, out = scenario(tmp_path, turns, verify=[], expect_changes=False)
    proc = astra("run", str(task), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outputs = [e["output"] for e in events(out) if e["type"] == "tool_result"]
    assert "unknown tool 'rm_rf'" in outputs[0]
    assert "malformed" in outputs[1]
    assert "invalid input for read" in outputs[2]


def test_denied_command_has_no_side_effect(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    turns = [{"tool_calls": [{"name": "bash", "input": {"command": f"python -m pytest -q; touch {marker}"}}]},
             {"text": "ok"}]
    task, _, out = scenario(tmp_path, turns, verify=[], expect_changes=False,
                            policy={"default": "deny", "allow": ["bash(python -m pytest*)"]})
    proc = astra("run", str(task), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not marker.exists()
    r = result_of(out)
    assert r["permission_denials"][0]["tool"] == "bash"
    assert f"touch {marker}" in r["permission_denials"][0]["input"]["command"]
    policy = [e for e in events(out) if e["type"] == "policy"]
    assert policy and policy[0]["allowed"] is False


def test_secrets_are_redacted_in_every_output(tmp_path: Path) -> None:
    secret = "s3cr3t-value-" + "x" * 20
    turns = [{"tool_calls": [{"name": "bash", "input": {"command": "echo token=$MY_TOKEN; echo $MY_TOKEN > leak.txt"}}]},
             {"text": f"I saw sk-ant-api03-{'A' * 40} somewhere"}]
    task, _, out = scenario(tmp_path, turns, verify=[{"name": "echo", "run": "echo $MY_TOKEN; exit 1"}],
                            sandbox={"backend": "local", "env": {"MY_TOKEN": "${HOST_SECRET}"}})
    proc = astra("run", str(task), env={"HOST_SECRET": secret}, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for f in out.iterdir():
        text = f.read_text(errors="replace")
        assert secret not in text, f.name
        assert "sk-ant-api03-AAAA" not in text, f.name
    assert secret not in proc.stdout + proc.stderr
    assert "[REDACTED]" in (out / "trajectory.jsonl").read_text()


def test_sigterm_mid_tool_call_writes_outputs_and_exits_143(tmp_path: Path) -> None:
    turns = [{"tool_calls": [{"name": "write", "input": {"path": "partial.txt", "content": "work so far\n"}}]},
             {"tool_calls": [{"name": "bash", "input": {"command": "sleep 93.17"}}]}]
    task, _, out = scenario(tmp_path, turns, limits={"tool_timeout": "90s"})
    env = {**os.environ, "ASTRA_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(task)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (out / "trajectory.jsonl").exists() and '"command": "sleep 93.17"' in (out / "trajectory.jsonl").read_text():
            break
        time.sleep(0.1)
    time.sleep(0.3)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert proc.returncode == 143
    r = result_of(out)
    assert r["status"] == "interrupted" and r["exit_code"] == 143
    assert "partial.txt" in (out / "patch.diff").read_text()
    # an interrupted run can be resumed: only its worktree and saved conversation stay (issue 16)
    assert r["resumable"] is True
    (run_dir,) = (tmp_path / "cache" / "runs").iterdir()
    assert {p.name for p in run_dir.iterdir()} <= {"worktree", "resume.json", "owner.json", "patch.git"}
    ps = subprocess.run(["pgrep", "-f", "sleep 93.17"], capture_output=True, text=True)
    assert ps.stdout.strip() == ""


def test_run_without_a_task_file(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    (tmp_path / "m.yaml").write_text(yaml.safe_dump([{"text": "nothing to do"}]))
    proc = astra("run", "--repo", str(repo), "--prompt", "look around", "--model", f"scripted:{tmp_path / 'm.yaml'}",
                 "--sandbox", "local", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # it ran; it changed nothing and has no checks
    result = result_of(tmp_path / "o")
    assert result["task"] == "adhoc" and result["reason"].startswith("the agent finished without changing anything")


@pytest.mark.parametrize("args", [["run"], ["run", "x.yaml", "--prompt", "p"], ["run", "nope.yaml"]])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    proc = astra(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_wall_clock_limit_stops_a_running_tool_call(tmp_path: Path) -> None:
    turns = [{"tool_calls": [{"name": "write", "input": {"path": "w.txt", "content": "kept\n"}}]},
             {"tool_calls": [{"name": "bash", "input": {"command": "sleep 60"}}]}]
    task, _, out = scenario(tmp_path, turns, limits={"timeout": "3s", "tool_timeout": "60s"})
    started = time.monotonic()
    proc = astra("run", str(task), cwd=tmp_path)
    assert time.monotonic() - started < 20
    assert proc.returncode == 3, proc.stdout + proc.stderr
    r = result_of(out)
    assert r["status"] == "limit" and r["reason"].startswith("timeout reached") and "3s" in r["reason"]
    assert "w.txt" in (out / "patch.diff").read_text()
    # no time left: verify does not run after the wall-clock limit, and the reports say so
    assert r["verify"] == [{"name": "tests", "passed": False, "exit_code": None, "ran": False,
                            "output_tail": "not run: " + r["reason"]}]
    assert "<skipped" in (out / "junit.xml").read_text()


def test_model_failures_trip_the_breaker(tmp_path: Path) -> None:
    turns = [{"fail": "overloaded_error: Overloaded"}] * 5
    task, _, out = scenario(tmp_path, turns, limits={"circuit_breaker": 3})
    proc = astra("run", str(task), cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    r = result_of(out)
    assert "3 consecutive failed model calls" in r["reason"] and "Overloaded" in r["reason"]
    assert [e["consecutive"] for e in events(out) if e["type"] == "model_error"] == [1, 2, 3]


def test_a_hanging_verify_check_is_stopped_at_the_tool_timeout(tmp_path: Path) -> None:
    task, _, out = scenario(tmp_path, [{"text": "done"}], limits={"tool_timeout": "2s"},
                            verify=[{"name": "hangs", "run": "sleep 100"}])
    started = time.monotonic()
    proc = astra("run", str(task), cwd=tmp_path)
    assert time.monotonic() - started < 20
    assert proc.returncode == 1, proc.stdout + proc.stderr
    check = result_of(out)["verify"][0]
    assert (check["name"], check["passed"], check["exit_code"]) == ("hangs", False, None)
    assert "timed out after 2s" in check["output_tail"]
    assert "timed out after 2s" in (out / "junit.xml").read_text()


def test_sigint_during_a_model_call_exits_130(tmp_path: Path) -> None:
    task, _, out = scenario(tmp_path, [{"sleep": 60, "text": "never"}])
    env = {**os.environ, "ASTRA_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(task)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        (out / "trajectory.jsonl").exists() and "run_started" in (out / "trajectory.jsonl").read_text()
    ):
        time.sleep(0.1)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert proc.returncode == 130
    assert result_of(out)["status"] == "interrupted"


def test_console_in_ci_has_no_escape_codes(tmp_path: Path) -> None:
    task, _, _ = scenario(tmp_path, FIX)
    proc = astra("run", str(task), env={"CI": "true"}, cwd=tmp_path)
    assert proc.returncode == 0
    assert "\x1b" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("[turn 2] edit: calc.py") for line in lines), proc.stdout
    assert "SUCCESS" in lines[-4] or any("SUCCESS" in line for line in lines[-5:])


def test_a_ref_that_does_not_exist_exits_2_before_anything_is_created(tmp_path: Path) -> None:
    task, _, out = scenario(tmp_path, FIX, ref="no-such-branch")
    proc = astra("run", str(task), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{task}:" in proc.stderr and ": ref: no-such-branch does not name a commit" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # exit 2: nothing was run, nothing was made (SPEC §1)



def test_cleanup_removes_what_dead_runs_left(tmp_path: Path) -> None:
    from runner.workspace import Workspace

    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    cache = tmp_path / "cache"
    run_dir = cache / "runs" / "crashed-run"
    ws = Workspace.create(str(repo), None, run_dir, cache)
    owner = json.loads((run_dir / "owner.json").read_text())
    (run_dir / "owner.json").write_text(json.dumps({**owner, "pid": 2**22 + 1}))  # above pid_max: never alive
    proc = astra("cleanup", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 worktree(s) of dead runs" in proc.stdout and "crashed-run" in proc.stdout
    assert not ws.path.exists()
    assert sh_git(repo, "worktree", "list").count("\n") == 0


def test_validate_checks_what_only_the_machine_knows(tmp_path: Path) -> None:
    task, _, _ = scenario(tmp_path, FIX, ref="nosuchbranch", sandbox={"backend": "local", "env": {"T": "${UNSET_VAR_X}"}})
    proc = astra("validate", str(task), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert any(line.endswith("sandbox.env.T: host variable ${UNSET_VAR_X} is not set") and f"{task}:" in line
               for line in lines), proc.stderr
    assert any("ref: nosuchbranch does not name a commit" in line and f"{task}:" in line for line in lines)


def test_short_host_secrets_are_redacted_and_too_short_ones_warned_about(tmp_path: Path) -> None:
    turns = [{"tool_calls": [{"name": "bash", "input": {"command": "echo pin=$PIN tiny=$TINY"}}]}, {"text": "ok"}]
    task, _, out = scenario(tmp_path, turns, verify=[], expect_changes=False,
                            sandbox={"backend": "local", "env": {"PIN": "${HOST_PIN}", "TINY": "${HOST_TINY}"}})
    proc = astra("run", str(task), "-q", env={"HOST_PIN": "93x7", "HOST_TINY": "q7"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "93x7" not in every_file(out)
    assert "cannot be redacted" in proc.stderr  # warnings are printed even with -q
    assert "--sandbox local runs" in proc.stderr


def test_an_output_dir_that_cannot_be_made_is_a_usage_error(tmp_path: Path) -> None:
    task, _, _ = scenario(tmp_path, FIX)
    (tmp_path / "afile").write_text("x")
    proc = astra("run", str(task), "--out", str(tmp_path / "afile" / "sub"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot create" in proc.stderr and "Traceback" not in proc.stderr


def every_file(out: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in out.iterdir())
