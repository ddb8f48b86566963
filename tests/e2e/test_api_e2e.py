"""End to end with the real `anthropic` SDK talking HTTP to the fake Messages API, through the CLI.

These are the runs a user gets with a real model: limits, the breaker, malformed model output,
denials, redaction, signals and infrastructure failures, each checked in the output files.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.models.base import Usage
from runner.models.pricing import load_prices
from tests.conftest import make_repo, tree_digest
from tests.fakes.messages_api import FakeMessagesAPI

API_KEY = "sk-ant-api03-" + "k" * 48
MODEL = "claude-sonnet-5-5"
BUGGY = "def mean(xs):\n    return sum(xs) / len(xs)\n"
TEST = "from calc import mean\n\ndef test_empty():\n    assert mean([]) == 0\n"
FIX_TURNS: list[dict[str, Any]] = [
    {"text": "Running the tests.", "tool_calls": [{"name": "bash", "input": {"command": "python -m pytest -q -p no:cacheprovider"}}],
     "usage": {"input_tokens": 1200, "output_tokens": 80, "cache_creation_input_tokens": 3000, "cache_read_input_tokens": 0}},
    {"tool_calls": [{"name": "edit", "input": {"path": "calc.py", "old_string": "    return sum",
                                                 "new_string": "    if not xs:\n        return 0\n    return sum"}}],
     "usage": {"input_tokens": 400, "output_tokens": 120, "cache_creation_input_tokens": 500, "cache_read_input_tokens": 3000}},
    {"text": "Fixed: mean([]) returns 0.",
     "usage": {"input_tokens": 300, "output_tokens": 40, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 3500}},
]


def setup_task(tmp_path: Path, backend: str = "local", **task: Any) -> tuple[Path, Path, Path]:
    repo = make_repo(tmp_path / "repo", {"calc.py": BUGGY, "test_calc.py": TEST,
                                         "AGENTS.md": "Always run the tests with pytest -q.\n"})
    spec: dict[str, Any] = {
        "name": "api-e2e", "repo": "repo", "prompt": "make mean([]) return 0", "model": MODEL,
        "sandbox": {"backend": backend},
        "verify": [{"name": "tests", "run": "python -m pytest -q -p no:cacheprovider --junitxml=$ASTRA_JUNIT"}],
        "outputs": {"dir": str(tmp_path / "out")},
    }
    if task.get("verify") == []:  # these runs are about the API, not about the change they make
        spec["expect_changes"] = False
    spec.update(task)
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "task.yaml", repo, tmp_path / "out"


def cli_env(api: FakeMessagesAPI, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env.update({"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": api.base_url,
                "ASTRA_CACHE": str(tmp_path / "cache"), "CI": "true", **extra})
    return env


def run(task: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "run", str(task)], capture_output=True, text=True,
                          env=env, cwd=task.parent, timeout=timeout)


def result(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "result.json").read_text())
    return data


def every_output(out: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in out.iterdir())


def check_fix(tmp_path: Path, backend: str) -> None:
    task, repo, out = setup_task(tmp_path, backend)
    before = tree_digest(repo)
    with FakeMessagesAPI(FIX_TURNS, api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
        requests = api.requests
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = result(out)
    assert (r["status"], r["turns"], r["tool_calls"]) == ("success", 3, 2)
    # what the model was sent: the task, the repo's AGENTS.md, the base commit, cache breakpoints
    first = requests[0]
    system = "".join(b["text"] for b in first["system"])
    assert "Always run the tests with pytest -q." in system and r["base_commit"] in system
    assert first["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert first["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert [t["name"] for t in first["tools"]] == ["bash", "read", "write", "edit", "grep", "glob", "ls"]
    assert "make mean([]) return 0" in json.dumps(first["messages"][0])
    last = requests[-1]["messages"][-1]["content"][-1]
    assert last["cache_control"] == {"type": "ephemeral"} and last["type"] == "tool_result"
    # cost.json matches a hand computation from the price file
    usage = Usage(1900, 240, 3700, 6500)
    price = load_prices().price_for(MODEL)
    assert price is not None
    expected = (1900 * price.input + 240 * price.output + 3700 * price.cache_write + 6500 * price.cache_read) / 1e6
    cost = json.loads((out / "cost.json").read_text())
    assert cost["total_cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert cost["models"][MODEL]["cache_read_input_tokens"] == usage.cache_read_input_tokens
    assert r["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert tree_digest(repo) == before
    assert API_KEY not in every_output(out) + proc.stdout + proc.stderr


def test_fix_through_the_real_sdk_local(tmp_path: Path) -> None:
    check_fix(tmp_path, "local")


@pytest.mark.docker
def test_fix_through_the_real_sdk_in_docker(tmp_path: Path) -> None:
    check_fix(tmp_path, "docker")


def test_cost_limit_is_checked_before_every_model_call(tmp_path: Path) -> None:
    big = {"input_tokens": 1_000_000, "output_tokens": 0}
    turns = [{"tool_calls": [{"name": "ls", "input": {}}], "usage": big}] * 5
    task, _, out = setup_task(tmp_path, limits={"max_cost_usd": 3.5}, verify=[])
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
        calls = len(api.requests)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    r = result(out)
    price = load_prices().price_for(MODEL)
    assert price is not None
    turns_to_limit = int(3.5 // price.input) + 1
    assert r["status"] == "limit" and r["reason"].startswith("max_cost_usd reached") and "3.5" in r["reason"]
    assert calls == r["turns"] == turns_to_limit
    for name in ("patch.diff", "junit.xml", "cost.json", "summary.md", "trajectory.jsonl"):
        assert (out / name).exists()
    assert '<failure' in (out / "junit.xml").read_text()


def test_overloaded_api_trips_the_breaker_after_sdk_retries(tmp_path: Path) -> None:
    turns = [{"error": {"status": 529, "retry_after": 0.01}}] * 12
    task, _, out = setup_task(tmp_path, limits={"circuit_breaker": 2}, verify=[])
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
        calls = len(api.calls)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    r = result(out)
    assert "2 consecutive failed model calls" in r["reason"] and "529" in r["reason"]
    assert calls == 6  # 2 failed model calls x (1 try + the SDK's 2 retries)


def test_a_stream_cut_halfway_is_retried(tmp_path: Path) -> None:
    turns = [{"text": "partial answer that will be cut", "cut_after": 3}, {"text": "Done, nothing to change."}]
    task, _, out = setup_task(tmp_path, verify=[])
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    turn = next(json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()
                if '"model_turn"' in line)
    assert turn["retries"] == 1 and turn["text"] == "Done, nothing to change."


def test_broken_tool_json_goes_back_to_the_model(tmp_path: Path) -> None:
    turns = [{"tool_calls": [{"name": "edit", "input_json": '{"path": "calc.py", "old'}]}, {"text": "ok"}]
    task, _, _ = setup_task(tmp_path, verify=[])
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
        second = api.requests[1]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tool_result = second["messages"][-1]["content"][0]
    assert tool_result["is_error"] is True and "malformed" in json.dumps(tool_result)


def test_denied_command_does_not_run_and_the_model_hears_the_rule(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    turns = [{"tool_calls": [{"name": "bash", "input": {"command": f"python -m pytest -q && git push; touch {marker}"}}]},
             {"text": "ok"}]
    task, _, out = setup_task(tmp_path, verify=[], policy={
        "default": "deny", "allow": ["bash(python -m pytest*)", "bash(touch*)"], "deny": ["bash(git push*)"]})
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
        told = json.dumps(api.requests[1]["messages"][-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not marker.exists()
    assert "git push*" in told and "permission denied" in told
    r = result(out)
    assert r["permission_denials"] == [{"tool": "bash", "input": {"command": f"python -m pytest -q && git push; touch {marker}"},
                                        "rule": "bash(git push*)"}]


def test_the_api_key_never_reaches_the_sandbox_or_an_output(tmp_path: Path) -> None:
    turns = [{"text": f"my key might be {API_KEY}",
              "tool_calls": [{"name": "bash", "input": {"command": "env | grep -c -i anthropic || true"}}]},
             {"text": "bye"}]
    task, _, out = setup_task(tmp_path, verify=[])
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
        sandbox_env_count = api.requests[1]["messages"][-1]["content"][0]["content"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0" in json.dumps(sandbox_env_count)
    assert API_KEY not in every_output(out) + proc.stdout + proc.stderr
    assert "[REDACTED]" in (out / "trajectory.jsonl").read_text()


def test_sigterm_during_a_model_stream(tmp_path: Path) -> None:
    turns = [{"text": "thinking very slowly", "stall_after": 2, "stall_s": 60}]
    task, _, out = setup_task(tmp_path, verify=[])
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(task)], env=cli_env(api, tmp_path),
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert api.wait_until(lambda a: a.stalls >= 1, timeout=30)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    assert elapsed < 5
    assert proc.returncode == 143
    assert result(out)["status"] == "interrupted"


@pytest.mark.parametrize("case", ["bad-key", "unreachable"])
def test_model_api_infrastructure_errors_exit_4(tmp_path: Path, case: str) -> None:
    task, _, out = setup_task(tmp_path, verify=[])
    with FakeMessagesAPI([], api_key=API_KEY) as api:
        env = cli_env(api, tmp_path)
        if case == "bad-key":
            env["ANTHROPIC_API_KEY"] = "sk-ant-api03-wrong" + "w" * 40
        else:
            env["ANTHROPIC_BASE_URL"] = "http://127.0.0.1:9"
        proc = run(task, env)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    r = result(out)
    assert r["status"] == "error"
    assert ("401" in r["reason"]) if case == "bad-key" else ("connect" in r["reason"].lower())
    if case == "bad-key":  # the API's error type and request id, in full, in result.json and on the console
        assert re.search(r"401 authentication_error: .+ \(request req_\w+\)", r["reason"]), r["reason"]
        assert r["reason"] in proc.stdout.replace("\n", " ") or r["reason"][:200] in proc.stdout, proc.stdout
    assert "<error" in (out / "junit.xml").read_text()
    assert "wwww" not in every_output(out)


@pytest.mark.docker
def test_docker_kill_mid_run_exits_4_with_the_patch_so_far(tmp_path: Path) -> None:
    turns = [{"tool_calls": [{"name": "write", "input": {"path": "progress.txt", "content": "half done\n"}}]},
             {"tool_calls": [{"name": "bash", "input": {"command": "sleep 77.7"}}]}]
    task, _, out = setup_task(tmp_path, "docker", verify=[])
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(task)], env=cli_env(api, tmp_path),
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        traj = out / "trajectory.jsonl"
        while time.monotonic() < deadline and not (traj.exists() and "sleep 77.7" in traj.read_text()):
            time.sleep(0.1)
        time.sleep(0.5)
        run_id = json.loads(traj.read_text().splitlines()[0])["run_id"]
        ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=astra-run.run-id={run_id}"],
                             capture_output=True, text=True).stdout.split()
        assert len(ids) == 1
        subprocess.run(["docker", "kill", *ids], check=True, capture_output=True)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 4, stdout + stderr
    r = result(out)
    assert r["status"] == "error" and r["exit_code"] == 4
    assert "sandbox" in r["reason"]
    assert "progress.txt" in (out / "patch.diff").read_text()
    assert subprocess.run(["docker", "ps", "-aq", "--filter", f"label=astra-run.run-id={run_id}"],
                          capture_output=True, text=True).stdout.strip() == ""


@pytest.mark.docker
def test_git_inside_sees_the_base_history_and_nothing_else(tmp_path: Path) -> None:
    from tests.conftest import sh_git

    task, repo, _ = setup_task(tmp_path, "docker", verify=[])
    sh_git(repo, "checkout", "-qb", "private")
    (repo / "creds.txt").write_text("PRIVATE-BRANCH-CRED\n")
    sh_git(repo, "add", "-A")
    sh_git(repo, "commit", "-qm", "private")
    sh_git(repo, "checkout", "-q", "main")
    (repo / "calc.py").write_text("PRIVATE-UNCOMMITTED-STASH\n")
    sh_git(repo, "stash", "-q")
    turns = [{"tool_calls": [{"name": "bash", "input": {
        "command": "git log --oneline | wc -l; git status --short | wc -l; "
                   "git cat-file --batch-all-objects --batch | grep -c PRIVATE || true"}}]},
             {"text": "done"}]
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
        seen = json.dumps(api.requests[1]["messages"][-1]["content"][0]["content"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PRIVATE" not in seen.replace("grep -c PRIVATE", "")
    assert seen.startswith('"1\\n0\\n0')  # one commit of history, a clean status, no private object


def test_a_refusal_is_not_success(tmp_path: Path) -> None:
    turns = [{"text": "I can't help with that.", "stop_reason": "refusal"}]
    task, _, out = setup_task(tmp_path, verify=[])
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    r = result(out)
    assert r["status"] == "failed" and r["reason"] == "the model refused: I can't help with that."


def test_the_cost_limit_holds_for_a_model_without_a_price(tmp_path: Path) -> None:
    turns = [{"tool_calls": [{"name": "ls", "input": {}}], "usage": {"input_tokens": 200_000, "output_tokens": 20_000}}] * 30
    task, _, out = setup_task(tmp_path, model="claude-mystery-9", limits={"max_cost_usd": 1}, verify=[])
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
        calls = len(api.requests)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    r = result(out)
    assert r["cost_usd"] is None  # unknown stays unknown in what is reported...
    assert "estimated" in r["reason"] and "max_cost_usd" in r["reason"]
    assert calls < 30  # ...but the limit held, at the highest known prices
    assert json.loads((out / "cost.json").read_text())["total_cost_usd"] is None


def test_an_mcp_tool_through_the_real_sdk(tmp_path: Path) -> None:
    """The model sees the server's tool with its schema, calls it, and gets its result back."""
    server = Path(__file__).resolve().parents[1] / "fakes" / "mcp_server.py"
    turns = [{"tool_calls": [{"name": "mcp__fake__add", "input": {"a": 20, "b": 22}}]}, {"text": "42 it is"}]
    task, _, out = setup_task(tmp_path, verify=[], mcp_servers={
        "fake": {"command": sys.executable, "args": [str(server), "--tag", "e2e-api"], "where": "host"}})
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
        first, second = api.requests[0], api.requests[1]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    add = next(t for t in first["tools"] if t["name"] == "mcp__fake__add")
    assert set(add["input_schema"]["properties"]) == {"a", "b"}
    assert "mcp__fake__add" in "".join(b["text"] for b in first["system"])
    answer = second["messages"][-1]["content"][0]
    assert answer["type"] == "tool_result" and "42" in json.dumps(answer["content"]) and not answer.get("is_error")
    results = [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()
               if '"tool_result"' in line]
    assert results[0]["tool"] == "mcp__fake__add" and "42" in results[0]["output"]
