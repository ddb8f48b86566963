"""`astra-run run --resume OUT_DIR`: a stopped run continues from its saved conversation.

Through the CLI, with the real SDK against the fake Messages API (whose script simply goes on
across the two processes) or the scripted model, real git and the local sandbox.
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

from runner.resume import NOT_COMPLETED, STATE_FILE
from tests.core.test_run_e2e import astra, scenario
from tests.e2e.test_api_e2e import API_KEY, cli_env, result, setup_task
from tests.fakes.messages_api import FakeMessagesAPI

PRICEY = {"input_tokens": 100_000, "output_tokens": 1000, "cache_creation_input_tokens": 0,
          "cache_read_input_tokens": 0}
"""$0.21 a turn at claude-sonnet-5-5's price: one turn is over a $0.10 limit."""
TWO_PARTS: list[dict[str, Any]] = [
    {"text": "First I note the plan.", "usage": PRICEY,
     "tool_calls": [{"name": "write", "input": {"path": "NOTES.md", "content": "part one\n"}}]},
    {"text": "Now the fix.", "usage": PRICEY,
     "tool_calls": [{"name": "edit", "input": {"path": "calc.py", "old_string": "    return sum",
                                               "new_string": "    if not xs:\n        return 0\n    return sum"}}]},
    {"text": "Fixed mean([]) and noted the plan.", "usage": PRICEY},
]


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "run", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def events(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_resume_after_a_cost_limit_finishes_the_work(tmp_path: Path, backend: str) -> None:
    task, _, out = setup_task(tmp_path, backend, limits={"max_cost_usd": 0.1})
    with FakeMessagesAPI(TWO_PARTS, api_key=API_KEY) as api:
        env = cli_env(api, tmp_path)
        first = cli(env, tmp_path, str(task))
        assert first.returncode == 3, first.stdout + first.stderr
        stopped = result(out)
        assert stopped["status"] == "limit" and "max_cost_usd" in stopped["reason"] and stopped["resumable"]
        assert "--resume" in first.stdout
        state = tmp_path / "cache" / "runs" / stopped["run_id"] / STATE_FILE
        assert state.is_file() and (state.stat().st_mode & 0o777) == 0o600
        assert not list(out.glob(STATE_FILE)) and "NOTES.md" in (out / "patch.diff").read_text()

        # the same limit again would stop at once: said up front, nothing runs
        again = cli(env, tmp_path, "--resume", str(out))
        assert again.returncode == 2 and "give --max-cost-usd above" in again.stderr
        assert len(api.requests) == 1

        second = cli(env, tmp_path, "--resume", str(out), "--max-cost-usd", "5")
        assert second.returncode == 0, second.stdout + second.stderr
        requests = list(api.requests)
    r = result(out)
    assert r["status"] == "success" and r["run_id"] == stopped["run_id"] and r["resumed"] == 1
    assert r["turns"] == 3 and r["tool_calls"] == 2 and not r["resumable"]
    assert r["cost_usd"] > stopped["cost_usd"] and r["duration_s"] > stopped["duration_s"]
    patch = (out / "patch.diff").read_text()
    assert "part one" in patch and "if not xs:" in patch  # the work of both parts
    assert r["final_message"] == TWO_PARTS[-1]["text"]
    # the resumed part sent the whole conversation back, with the same system prompt
    assert requests[1]["system"] == requests[0]["system"]
    assert [m["role"] for m in requests[1]["messages"]] == ["user", "assistant", "user"]
    sent_back = requests[1]["messages"][1]["content"]
    assert [b["text"] for b in sent_back if b["type"] == "text"] == [TWO_PARTS[0]["text"]]
    # a thinking block goes back exactly as it came, signature included (the API checks it)
    for block in (b for b in sent_back if b["type"] == "thinking"):
        assert block["signature"]
    kinds = [e["type"] for e in events(out)]
    assert kinds.count("run_started") == 1 and kinds.count("run_resumed") == 1 and kinds.count("run_finished") == 2
    resumed = next(e for e in events(out) if e["type"] == "run_resumed")
    assert resumed["limits"]["max_cost_usd"] == 5 and resumed["turns"] == 1
    # done: the saved state and the kept worktree are gone
    assert not state.exists() and not (state.parent / "worktree").exists()
    assert "resumed" in (out / "report.html").read_text()


def test_resume_after_an_interrupt_closes_the_open_call(tmp_path: Path) -> None:
    turns = [{"text": "wait", "tool_calls": [{"name": "bash", "input": {"command": "sleep 60"}}]},
             {"tool_calls": [{"name": "write", "input": {"path": "after.txt", "content": "resumed\n"}}]},
             {"text": "All done after the resume."}]
    task, _, out = scenario(tmp_path, turns, policy={"default": "allow"}, verify=[])
    env = {**os.environ, "ASTRA_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(task)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        trajectory = out / "trajectory.jsonl"
        if trajectory.exists() and '"tool_call"' in trajectory.read_text():
            break
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert result(out)["status"] == "interrupted" and result(out)["resumable"]
    second = astra("run", "--resume", str(out), cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    r = result(out)
    assert r["turns"] == 3 and r["final_message"] == "All done after the resume."
    assert "resumed" in (out / "patch.diff").read_text()
    # the scripted model went on with its second turn, not from the start
    turns_seen = [e for e in events(out) if e["type"] == "model_turn"]
    assert [t["turn"] for t in turns_seen] == [1, 2, 3]
    assert turns_seen[1]["tool_uses"][0]["name"] == "write"


def test_nothing_to_resume_is_a_clear_error(tmp_path: Path) -> None:
    nothing = astra("run", "--resume", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert nothing.returncode == 2 and "no result.json" in nothing.stderr and "nothing to resume" in nothing.stderr
    task, _, out = scenario(tmp_path, [{"text": "done"}], verify=[], expect_changes=False)
    assert astra("run", str(task), cwd=tmp_path).returncode == 0
    finished = astra("run", "--resume", str(out), cwd=tmp_path)
    assert finished.returncode == 2 and "status 'success': nothing to resume" in finished.stderr
    assert "Traceback" not in finished.stderr
    stray = astra("run", str(task), "--max-turns", "3", cwd=tmp_path)
    assert stray.returncode == 2 and "go with --resume" in stray.stderr


def test_a_resumable_run_whose_state_was_cleaned_up(tmp_path: Path) -> None:
    task, _, out = scenario(tmp_path, [{"tool_calls": [{"name": "ls", "input": {}}]}] * 3,
                            limits={"max_turns": 1}, verify=[])
    assert astra("run", str(task), cwd=tmp_path).returncode == 3
    assert astra("cleanup", cwd=tmp_path).returncode == 0
    gone = astra("run", "--resume", str(out), "--max-turns", "5", cwd=tmp_path)
    assert gone.returncode == 2 and "is gone" in gone.stderr


def test_the_open_call_result_text() -> None:
    from runner.models.base import Message, TextBlock, ToolResult, ToolUse
    from runner.resume import _close_open_calls

    messages = [Message("user", [TextBlock("task")]),
                Message("assistant", [TextBlock("x"), ToolUse("t1", "bash", {}), ToolUse("t2", "ls", {})])]
    closed = _close_open_calls(messages)
    assert closed[-1].role == "user"
    assert closed[-1].content == [ToolResult("t1", NOT_COMPLETED, True), ToolResult("t2", NOT_COMPLETED, True)]


def test_resume_after_an_interrupt_through_the_real_sdk(tmp_path: Path) -> None:
    """The Messages API refuses a tool_use without its tool_result: the cut-off call must get one."""
    turns = [{"text": "waiting", "tool_calls": [{"name": "bash", "input": {"command": "sleep 61.3"}}]},
             {"text": "Resumed and done."}]
    task, _, out = setup_task(tmp_path, policy={"default": "allow"}, verify=[])
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        env = cli_env(api, tmp_path)
        proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(task)], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                (out / "trajectory.jsonl").exists() and "sleep 61.3" in (out / "trajectory.jsonl").read_text()):
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        assert proc.returncode == 143
        second = cli(env, tmp_path, "--resume", str(out))
        assert second.returncode == 0, second.stdout + second.stderr
        last = api.requests[-1]["messages"]
    assert last[-1]["role"] == "user"
    (block,) = last[-1]["content"]
    assert block["type"] == "tool_result" and block["is_error"] and "may or may not" in block["content"]
    assert result(out)["final_message"] == "Resumed and done."


def test_the_saved_conversation_comes_back_exactly() -> None:
    from runner.conversation import messages_from_state, messages_to_state
    from runner.models.base import (
        CompactionBlock,
        Message,
        OpaqueBlock,
        RedactedThinkingBlock,
        TextBlock,
        ThinkingBlock,
        ToolResult,
        ToolUse,
    )

    wire = {"type": "thinking", "thinking": "hm", "signature": "sig==", "future_field": [1, 2]}
    messages = [
        Message("user", [TextBlock("task")]),
        Message("assistant", [CompactionBlock("summary", {"type": "compaction", "content": "summary"}),
                              ThinkingBlock("hm", "sig==", wire), RedactedThinkingBlock("enc", {"data": "enc"}),
                              OpaqueBlock("server_tool_use", {"type": "server_tool_use", "id": "s1"}),
                              TextBlock("x"), ToolUse("t1", "bash", {"command": "ls"})]),
        Message("user", [ToolResult("t1", "out", True)]),
    ]
    back = messages_from_state(json.loads(json.dumps(messages_to_state(messages))))
    assert back == messages
    assert back[1].content[1].wire == wire  # type: ignore[union-attr]  # compare=False: checked by hand
