"""Claude as it is documented today, end to end: the CLI, the real `anthropic` SDK and the fake
Messages API, which thinks by default on the models that do, checks every thinking block's
signature when it comes back, holds each model to its context window, compacts and clears.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_api_e2e import API_KEY, FIX_TURNS, cli_env, result, run, setup_task
from tests.fakes.messages_api import FakeMessagesAPI
from tests.fakes.messages_rules import rules_for

BIG = "".join(f"line {i:05d} " + "x" * 50 + "\n" for i in range(470))  # ~30k characters
"""A tool output as large as the model is ever shown (runner.tools.base.MODEL_OUTPUT_LIMIT)."""


def trajectory(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()]


def test_fix_on_sonnet_5_5_with_thinking_blocks(tmp_path: Path) -> None:
    """claude-sonnet-5-5 thinks by default: every response starts with a signed thinking block
    (empty text, as with the default display; some with text between tool calls). The run passes
    only if every block goes back exactly as it came."""
    turns = [dict(t) for t in FIX_TURNS]
    turns[0]["thinking"] = "The test calls mean([]); run the tests first."
    turns[1]["redacted_thinking"] = True
    task, _, out = setup_task(tmp_path)
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
        calls = api.calls
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [c.status for c in calls] == [200, 200, 200]
    assert result(out)["status"] == "success"
    # turn 2 and 3 carried the earlier assistant turns back, each starting with its thinking block
    last = calls[-1].body["messages"]
    assistant = [m["content"] for m in last if m["role"] == "assistant"]
    assert [blocks[0]["type"] for blocks in assistant] == ["thinking", "thinking"]
    assert assistant[0][0]["thinking"] == "The test calls mean([]); run the tests first."
    assert assistant[1][0]["thinking"] == "" and assistant[1][0]["signature"]
    assert assistant[1][1]["type"] == "redacted_thinking"
    turns_recorded = [e for e in trajectory(out) if e["type"] == "model_turn"]
    assert turns_recorded[0]["content"][0]["type"] == "thinking"


def test_dropping_a_thinking_block_is_what_the_fake_rejects(tmp_path: Path) -> None:
    """The fake is not lenient: the conversation the old runner sent (no thinking blocks) is a 400."""
    with FakeMessagesAPI([{"tool_calls": [{"name": "ls", "input": {}}]}], api_key=API_KEY) as api:
        import anthropic

        client = anthropic.Anthropic(api_key=API_KEY, base_url=api.base_url, max_retries=0)
        first = client.messages.create(model="claude-sonnet-5-5", max_tokens=100,
                                       messages=[{"role": "user", "content": "go"}], tools=[{
                                           "name": "ls", "description": "list", "input_schema": {"type": "object"}}])
        kept = [b.to_dict() for b in first.content if b.type != "thinking"]
        tool_id = next(b["id"] for b in kept if b["type"] == "tool_use")
        with pytest.raises(anthropic.BadRequestError, match="Expected `thinking` or `redacted_thinking`"):
            client.messages.create(model="claude-sonnet-5-5", max_tokens=100, tools=[{
                "name": "ls", "description": "list", "input_schema": {"type": "object"}}], messages=[
                {"role": "user", "content": "go"}, {"role": "assistant", "content": kept},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "a"}]}])


def long_run(turns: int) -> Any:
    """A model that reads a 30k-character file `turns` times, then finishes."""

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        done = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if done + 1 >= turns:
            return {"text": "Read everything."}
        return {"tool_calls": [{"name": "bash", "input": {"command": f"cat big.txt # {done}"}}]}

    return answer


def prompt_sizes(api: FakeMessagesAPI) -> list[int]:
    from tests.fakes.messages_rules import effective_prompt

    return [effective_prompt(c.body).total for c in api.calls if c.status == 200]


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "claude-sonnet-5-5", "claude-sonnet-4-0"])
def test_150_turns_of_large_tool_outputs_finish_inside_the_window(tmp_path: Path, model: str) -> None:
    """haiku-4-5 (200k) has context editing, sonnet-5-5 API compaction (its 1M window given a
    150k trigger), sonnet-4-0 neither (the client clears). Every request is accepted."""
    task, repo, out = setup_task(tmp_path, model=model, verify=[], expect_changes=False,
                                 limits={"max_turns": 200, "max_cost_usd": 100},
                                 **({"context": {"trigger_tokens": 150_000}} if model == "claude-sonnet-5-5" else {}))
    (repo / "big.txt").write_text(BIG)
    import subprocess

    subprocess.run(["git", "-C", str(repo), "add", "big.txt"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "big"],
                   check=True)
    with FakeMessagesAPI(hook=long_run(150), api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path), timeout=600)
        statuses = [c.status for c in api.calls if c.path.startswith("/v1/messages?") or c.path == "/v1/messages"]
        sizes = prompt_sizes(api)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert set(statuses) == {200} and len(statuses) == 150
    r = result(out)
    assert r["turns"] == 150 and r["compactions"] >= 1
    assert max(sizes) < rules_for(model).window
    events = [e for e in trajectory(out) if e["type"] == "context_compacted"]
    assert len(events) == r["compactions"]


def test_a_turn_that_fills_the_window_is_recovered_from(tmp_path: Path) -> None:
    """model_context_window_exceeded: the response was cut. The call being written is not run,
    the model is told, and the next request makes the context smaller."""
    turns: list[dict[str, Any]] = [
        {"text": "Let me look.", "tool_calls": [{"name": "ls", "input": {}},
                                                {"id": "toolu_cut", "name": "bash", "input_json": '{"command": "ca'}],
         "stop_reason": "model_context_window_exceeded"},
        {"text": "Done after the cut."},
    ]
    task, _, out = setup_task(tmp_path, model="claude-sonnet-5-5", verify=[], expect_changes=False)
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
        calls = api.calls
    assert proc.returncode == 0, proc.stdout + proc.stderr
    second = calls[1].body
    sent_back = [b for m in second["messages"] if m["role"] == "assistant" for b in m["content"]]
    assert "toolu_cut" not in json.dumps(sent_back)  # never replayed as if whole
    note = json.dumps(second["messages"][-1])
    assert "cut off" in note and "not run" in note
    assert second["context_management"]["edits"][0]["trigger"]["value"] == 50_000  # compact now
    r = result(out)
    assert (r["status"], r["tool_calls"]) == ("success", 1)


def test_a_prompt_that_cannot_fit_stops_as_a_limit_with_all_outputs(tmp_path: Path) -> None:
    task, repo, out = setup_task(tmp_path, model="claude-haiku-4-5", verify=[], expect_changes=False,
                                 context={"strategy": "none"}, limits={"max_turns": 100, "max_cost_usd": 100})
    (repo / "big.txt").write_text(BIG)
    import subprocess

    subprocess.run(["git", "-C", str(repo), "add", "big.txt"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "big"],
                   check=True)
    with FakeMessagesAPI(hook=long_run(100), api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path), timeout=300)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    r = result(out)
    assert r["status"] == "limit" and "context window" in r["reason"] and "200000" in r["reason"]
    for name in ("result.json", "patch.diff", "junit.xml", "cost.json", "summary.md", "trajectory.jsonl"):
        assert (out / name).exists(), name


def test_model_options_reach_the_request_or_stop_the_run_with_file_and_line(tmp_path: Path) -> None:
    task, _, _ = setup_task(tmp_path, verify=[], expect_changes=False,
                              model_options={"thinking": "between_tools", "effort": "low", "max_output_tokens": 9000})
    with FakeMessagesAPI([{"text": "done"}], api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
        body = api.requests[0]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (body["thinking"], body["output_config"], body["max_tokens"]) == (
        {"type": "between_tools"}, {"effort": "low"}, 9000)
    task, _, _ = setup_task(tmp_path / "off", verify=[], model_options={"thinking": "off"})
    with FakeMessagesAPI([], api_key=API_KEY) as api:
        proc = run(task, cli_env(api, tmp_path))
        assert api.requests == []
    assert proc.returncode == 2
    assert f"{task}:" in proc.stderr + proc.stdout and "model_options.thinking" in proc.stderr + proc.stdout
