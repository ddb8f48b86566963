"""The agent loop: model ⇄ tools, as an async generator of typed events.

One turn is one model call plus the tool calls it asked for. Every `tool_use` gets exactly one
`tool_result` (run, refused, or failed). The run ends when the model ends its turn without
calling a tool. Limits and the breaker raise LimitExceeded from inside the loop; the state
(`AgentState`) stays readable afterwards, so a stopped run still reports what it did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.agent.events import (
    Event,
    ModelError,
    ModelTurn,
    PolicyDecision,
    ToolCallFinished,
    ToolCallStarted,
)
from runner.agent.guards import Guards
from runner.conversation import block_json
from runner.models.base import (
    Message,
    Model,
    ModelCallFailed,
    ModelRequest,
    ModelResponse,
    TextBlock,
    ToolResult,
    ToolUse,
    Usage,
)
from runner.policy import Deny, Policy
from runner.result import PermissionDenial
from runner.sandbox.base import ToolFailure
from runner.tools import ToolContext, ToolRegistry

CostFn = Callable[[Mapping[str, Usage]], float | None]

FINISHED_STOP_REASONS = frozenset({"end_turn", "stop_sequence"})
MAX_TOKENS_NUDGE = "Your previous reply was cut off at the output token limit. Continue where you stopped."


@dataclass
class AgentState:
    """What the loop has done so far; read by run.py whether the loop finished or was stopped."""

    messages: list[Message] = field(default_factory=list)
    turns: int = 0
    tool_calls: int = 0
    usage: dict[str, Usage] = field(default_factory=dict)
    cost_usd: float | None = 0.0
    denials: list[PermissionDenial] = field(default_factory=list)
    finished: bool = False
    """True when the model ended its turn without calling a tool (end_turn or a stop sequence)."""
    stop_reason: str = ""
    """The last model turn's stop reason (a `refusal` ends the run unfinished)."""
    final_text: str = ""


class Agent:
    def __init__(
        self,
        *,
        model: Model,
        tools: ToolRegistry,
        policy: Policy,
        tool_context: ToolContext,
        guards: Guards,
        system: str,
        task_message: str,
        cost_of: CostFn,
        cost_bound_of: CostFn | None = None,
        model_retry_backoff_s: float = 1.0,
        max_tokens: int = 16_000,
    ) -> None:
        self.model = model
        self.tools = tools
        self.policy = policy
        self.ctx = tool_context
        self.guards = guards
        self.system = system
        self.cost_of = cost_of
        self.cost_bound_of = cost_bound_of or cost_of
        self.backoff_s = model_retry_backoff_s
        self.max_tokens = max_tokens
        self.task_message = task_message
        self.state = AgentState(messages=[Message("user", [TextBlock(task_message)])])

    async def run(self) -> AsyncIterator[Event]:
        state = self.state
        specs = self.tools.specs()
        while True:
            self.guards.before_model_call()
            started = time.monotonic()
            try:
                response = await self.model.complete(
                    ModelRequest(self.system, specs, state.messages, max_tokens=self.max_tokens)
                )
            except ModelCallFailed as exc:
                yield ModelError(state.turns + 1, str(exc), self.guards.model_failures + 1)
                self.guards.model_call_failed(str(exc))
                await asyncio.sleep(min(self.backoff_s * 2 ** (self.guards.model_failures - 1), 30.0))
                continue
            self.guards.model_call_succeeded()
            state.turns += 1
            self.guards.turns = state.turns
            self._account(response)
            yield ModelTurn(
                turn=state.turns,
                model=response.model,
                stop_reason=response.stop_reason,
                text=response.text,
                tool_uses=[{"id": t.id, "name": t.name, "input": t.input} for t in response.tool_uses],
                usage=response.usage,
                cost_usd=self.cost_of({response.model: response.usage}),
                duration_s=round(time.monotonic() - started, 3),
                retries=response.retries,
                cumulative_cost_usd=state.cost_usd,
                content=[block_json(b) for b in response.content],
            )
            state.messages.append(Message("assistant", list(response.content)))
            state.stop_reason = response.stop_reason
            if not response.tool_uses:
                if response.stop_reason == "max_tokens":
                    state.messages.append(Message("user", [TextBlock(MAX_TOKENS_NUDGE)]))
                    continue
                # A refusal (or any stop we do not know) is not the agent saying it is done.
                state.finished = response.stop_reason in FINISHED_STOP_REASONS
                state.final_text = response.text
                return
            results: list[ToolResult] = []
            for call in response.tool_uses:
                async for event in self._tool_call(call, results):
                    yield event
            state.messages.append(Message("user", list(results)))
            self.guards.check_breaker()

    def _account(self, response: ModelResponse) -> None:
        usage = self.state.usage
        usage[response.model] = usage.get(response.model, Usage()) + response.usage
        self.state.cost_usd = self.cost_of(usage)
        # What max_cost_usd is checked against: the cost when every price is known, else an
        # upper estimate, so the limit holds even for a model the price file does not know.
        self.guards.cost_usd = self.state.cost_usd
        if self.state.cost_usd is None:
            self.guards.cost_usd = self.cost_bound_of(usage)
            self.guards.cost_estimated = True

    async def _tool_call(self, call: ToolUse, results: list[ToolResult]) -> AsyncIterator[Event]:
        """Run one call through every gate; append exactly one ToolResult for it."""
        state = self.state
        state.tool_calls += 1
        turn = state.turns
        yield ToolCallStarted(turn, call.id, call.name, call.input)
        started = time.monotonic()
        output, failed = "", True
        try:
            if call.input_error is not None:
                raise ToolFailure(f"your input for {call.name} was malformed: {call.input_error}")
            tool = self.tools.get(call.name)
            tool.parse(call.input)  # schema errors are reported before the policy sees the input
            decision = self.policy.check(call.name, call.input)
            if isinstance(decision, Deny):
                state.denials.append(PermissionDenial(call.name, call.input, decision.rule))
                yield PolicyDecision(call.id, call.name, False, decision.rule, decision.message)
                raise ToolFailure(f"permission denied: {decision.message}")
            yield PolicyDecision(call.id, call.name, True, decision.rule)
            output = await self.tools.call(call.name, call.input, self.ctx)
            failed = False
        except ToolFailure as exc:
            output = str(exc)
        if failed:
            callout = self.guards.tool_call_failed(call.name, call.input)
            if callout:
                output = f"{output}\n{callout}"
        else:
            self.guards.tool_call_succeeded()
        results.append(ToolResult(call.id, output, is_error=failed))
        yield ToolCallFinished(
            turn, call.id, call.name, failed, output, round(time.monotonic() - started, 3),
            self.guards.tool_failures,
        )


def tool_input_summary(tool_input: Mapping[str, Any], width: int = 80) -> str:
    """One short line describing a call's input (for consoles and summaries)."""
    for key in ("command", "path", "pattern"):
        if isinstance(tool_input.get(key), str):
            text = " ".join(str(tool_input[key]).split())
            return text if len(text) <= width else text[: width - 1] + "…"
    return ""
