"""The agent loop's handling of stop reasons and context limits, with a model that replays responses."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest

from runner.agent.context import CLEARED, ContextManager
from runner.agent.guards import Guards
from runner.agent.loop import Agent, AgentState
from runner.errors import LimitExceeded
from runner.models.base import (
    Message,
    ModelRequest,
    ModelResponse,
    PromptTooLong,
    TextBlock,
    ThinkingBlock,
    ToolResult,
    ToolUse,
    Usage,
)
from runner.models.catalog import model_info
from runner.outcome import set_outcome
from runner.policy import Policy
from runner.result import RunResult
from runner.task import PolicySpec
from runner.tools import ToolContext, ToolRegistry
from runner.tools.shell import Bash


class Replay:
    name = "claude-sonnet-4-0"

    def __init__(self, *answers: ModelResponse | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(ModelRequest(request.system, request.tools, list(request.messages),
                                          request.max_tokens, context=request.context))
        answer = self.answers.pop(0) if self.answers else ModelResponse([TextBlock("done")], "end_turn", Usage(), self.name)
        if isinstance(answer, Exception):
            raise answer
        if answer.usage.input_tokens < 0:  # report the size of what was sent, as the API does
            sent = sum(len(str(b)) for m in request.messages for b in m.content) // 4
            return dataclasses.replace(answer, usage=Usage(input_tokens=sent))
        return answer

    async def aclose(self) -> None:
        return None


class EchoBash(Bash):
    async def run(self, args: Any, ctx: ToolContext) -> str:
        return "o" * 4000


def agent(model: Replay, context: ContextManager | None = None) -> Agent:
    return Agent(model=model, tools=ToolRegistry([EchoBash()]), policy=Policy.from_spec(PolicySpec(default="allow")),
                 tool_context=ToolContext(cast(Any, None), 10.0), guards=Guards(50, 100.0, 5), system="s",
                 task_message="t", cost_of=lambda u: 0.0, model_retry_backoff_s=0.0, context=context)


async def drain(a: Agent) -> AgentState:
    async for _ in a.run():
        pass
    return a.state


def resp(*blocks: Any, stop: str = "end_turn", prompt: int = 0, **kw: Any) -> ModelResponse:
    return ModelResponse(list(blocks), stop, Usage(input_tokens=prompt), "claude-sonnet-4-0", **kw)


async def test_pause_turn_sends_the_assistant_content_back_to_continue() -> None:
    model = Replay(resp(ThinkingBlock("", "sig"), TextBlock("searching"), stop="pause_turn"), resp(TextBlock("found")))
    state = await drain(agent(model))
    assert state.finished and state.final_text == "found"
    last = model.requests[1].messages[-1]
    assert last.role == "assistant" and isinstance(last.content[0], ThinkingBlock)


async def test_a_refusal_fails_with_its_stop_details() -> None:
    model = Replay(resp(TextBlock("I can't."), stop="refusal",
                        stop_details={"type": "refusal", "category": "cyber", "explanation": "high-risk request"}))
    state = await drain(agent(model))
    result = RunResult(run_id="r", task="t", model="m")
    set_outcome(result, state, None, [])
    assert (result.status, result.exit_code) == ("failed", 1)
    assert "category: cyber" in result.reason and "high-risk request" in result.reason


async def test_max_tokens_mid_tool_call_runs_the_whole_calls_only() -> None:
    model = Replay(resp(TextBlock("two calls"), ToolUse("t1", "bash", {"command": "ls"}),
                        ToolUse("t2", "bash", {}, input_error="cut"), stop="max_tokens"))
    state = await drain(agent(model))
    assert state.tool_calls == 1
    sent = model.requests[1].messages
    assert [b.id for b in sent[-2].content if isinstance(b, ToolUse)] == ["t1"]
    note = " ".join(b.text for b in sent[-1].content if isinstance(b, TextBlock))
    assert "cut off" in note and "not run" in note


async def test_client_clearing_sends_a_cleared_view_in_steps_and_keeps_the_history() -> None:
    info = model_info("claude-sonnet-4-0")
    context = ContextManager(info, "client_clearing", trigger_tokens=6_000)
    calls = [resp(ToolUse(f"t{i}", "bash", {"command": "ls"}), stop="tool_use", prompt=-1) for i in range(14)]
    model = Replay(*calls)
    state = await drain(agent(model, context))
    views = [[b for m in r.messages for b in m.content if isinstance(b, ToolResult)] for r in model.requests]
    cleared = [sum(1 for b in v if b.content == CLEARED) for v in views]
    assert cleared == sorted(cleared) and cleared[-1] > 0  # grows in steps, never undone
    steps = {n for n in cleared if n}
    assert len(steps) < len([n for n in cleared if n])  # the same view for several calls in a row
    assert all(b.content != CLEARED for m in state.messages for b in m.content if isinstance(b, ToolResult))
    assert state.compactions == len(steps)


async def test_a_prompt_too_long_with_nothing_left_to_do_is_the_context_limit() -> None:
    info = model_info("claude-haiku-4-5")
    too_long = PromptTooLong("prompt is too long: 230000 tokens > 200000 maximum", tokens=230_000, maximum=200_000)
    model = Replay(too_long, too_long, too_long, too_long)
    with pytest.raises(LimitExceeded) as info_:
        await drain(agent(model, ContextManager(info, "api_clearing")))
    assert info_.value.limit == "context_window" and "200000" in str(info_.value)
    assert len(model.requests) == 3  # the first try and two with the most the strategy can do
    assert model.requests[1].context is not None and model.requests[1].context.clear_at_tokens == 0


def test_message_content_list_stays_ours() -> None:
    assert Message("user", [TextBlock("x")]).content[0] == TextBlock("x")
