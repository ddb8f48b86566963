"""The agent loop: model ⇄ tools, as an async generator of typed events.

One turn is one model call plus the tool calls it asked for. Every `tool_use` gets exactly one
`tool_result` (run, refused, or failed). The run ends when the model ends its turn without
calling a tool. Limits and the breaker raise LimitExceeded from inside the loop; the state
(`AgentState`) stays readable afterwards, so a stopped run still reports what it did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.agent.context import ContextManager, CountTokens
from runner.agent.events import (
    ContextCompacted,
    Event,
    ModelError,
    ModelTurn,
    PolicyDecision,
    ToolCallFinished,
    ToolCallStarted,
)
from runner.agent.guards import Guards
from runner.errors import LimitExceeded
from runner.models.base import (
    AssistantBlock,
    Block,
    Message,
    Model,
    ModelCallFailed,
    ModelRequest,
    ModelResponse,
    PromptTooLong,
    TextBlock,
    ToolResult,
    ToolSpec,
    ToolUse,
    Usage,
)
from runner.models.wire import block_to_wire
from runner.policy import Deny, Policy
from runner.result import PermissionDenial
from runner.sandbox.base import ToolFailure
from runner.tools import ToolContext, ToolRegistry

CostFn = Callable[[Mapping[str, Usage]], float | None]
TurnCostFn = Callable[[str, Usage], float | None]

FINISHED_STOP_REASONS = frozenset({"end_turn", "stop_sequence"})
TRUNCATED_STOP_REASONS = frozenset({"max_tokens", "model_context_window_exceeded"})
"""build-with-claude/handling-stop-reasons: the response was cut; treat it as truncated."""
MAX_TOKENS_NUDGE = "Your previous reply was cut off at the output token limit. Continue where you stopped."
WINDOW_NUDGE = (
    "Your previous reply was cut off because the conversation filled the context window; older context "
    "was made smaller. Continue where you stopped."
)
MAX_RETRY_WAIT_S = 60.0
"""The longest the loop waits before retrying a failed model call, whatever retry-after says."""


def _cut_call_note(call: ToolUse) -> str:
    return (
        f"[astra-run: your {call.name} call was cut off before its input was complete, so it was not run. "
        "Send it again in full.]"
    )


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
    stop_details: dict[str, Any] | None = None
    """What the API said about the last stop (a refusal's category and explanation)."""
    final_text: str = ""
    compactions: int = 0
    """Times the conversation was made smaller to stay inside the context window."""
    cost_by_model: dict[str, float | None] = field(default_factory=dict)
    """USD per model, priced turn by turn (prices that depend on the prompt's length need that)."""


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
        max_tokens: int | None = None,
        context: ContextManager | None = None,
        turn_cost_of: TurnCostFn | None = None,
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
        self.context = context
        self.turn_cost_of = turn_cost_of
        self.state = AgentState(messages=[Message("user", [TextBlock(task_message)])])

    async def run(self) -> AsyncIterator[Event]:
        state = self.state
        specs = self.tools.specs()
        while True:
            self.guards.before_model_call()
            started = time.monotonic()
            sent = state.messages
            try:
                if self.context is not None:
                    before = len(self.context.compactions)
                    sent = await self.context.view(state.messages, self._counter(specs))
                    for step in self.context.compactions[before:]:
                        state.compactions += 1
                        yield ContextCompacted(state.turns + 1, step.mechanism, step.tokens_before,
                                               step.tokens_after, step.detail)
                request = ModelRequest(self.system, specs, sent, max_tokens=self.max_tokens,
                                       context=self.context.request() if self.context is not None else None)
                response = await self.model.complete(request)
            except PromptTooLong as exc:
                yield ModelError(state.turns + 1, f"the prompt is too long for the context window: {exc}", 0)
                if self.context is None:
                    raise LimitExceeded(f"context window: {exc}", limit="context_window", value=exc.maximum) from None
                self.context.overflow(exc)  # raises LimitExceeded when nothing more can be done
                continue
            except ModelCallFailed as exc:
                yield ModelError(state.turns + 1, str(exc), self.guards.model_failures + 1)
                self.guards.model_call_failed(str(exc))
                wait = min(self.backoff_s * 2 ** (self.guards.model_failures - 1), 30.0)
                if exc.retry_after_s is not None:
                    wait = max(wait, min(exc.retry_after_s, MAX_RETRY_WAIT_S))
                await asyncio.sleep(wait)
                continue
            self.guards.model_call_succeeded()
            state.turns += 1
            self.guards.turns = state.turns
            self._account(response)
            content = list(response.content)
            truncated = response.stop_reason in TRUNCATED_STOP_REASONS
            cut: ToolUse | None = None
            if truncated and content and isinstance(content[-1], ToolUse):
                # The call being written when the output stopped is incomplete: never run or
                # replay it as if whole; the model is told and sends it again.
                last = content.pop()
                assert isinstance(last, ToolUse)
                cut = last
            yield ModelTurn(
                turn=state.turns,
                model=response.model,
                stop_reason=response.stop_reason,
                text=response.text,
                tool_uses=[{"id": t.id, "name": t.name, "input": t.input} for t in response.tool_uses if t is not cut],
                usage=response.usage,
                cost_usd=state.cost_usd,
                duration_s=round(time.monotonic() - started, 3),
                retries=response.retries,
                content=[_recorded(b) for b in response.content],
                stop_details=response.stop_details,
                billed_usage=response.billed_usage if response.iterations else None,
            )
            made = self.context.observe(response, sent) if self.context is not None else None
            if made is not None:
                state.compactions += 1
                yield ContextCompacted(state.turns, made.mechanism, made.tokens_before, made.tokens_after, made.detail)
            if content:
                state.messages.append(Message("assistant", list[Block](content)))
            state.stop_reason = response.stop_reason
            state.stop_details = response.stop_details
            calls = [b for b in content if isinstance(b, ToolUse)]
            if response.stop_reason == "pause_turn":
                continue  # handling-stop-reasons: send the assistant content back to continue
            if response.stop_reason == "model_context_window_exceeded" and self.context is not None:
                self.context.force_next()
            notes: list[Block] = []
            if truncated:
                if cut is not None:
                    notes.append(TextBlock(_cut_call_note(cut)))
                notes.append(TextBlock(WINDOW_NUDGE if response.stop_reason != "max_tokens" else MAX_TOKENS_NUDGE))
            if not calls:
                if truncated:
                    state.messages.append(Message("user", notes))
                    continue
                # A refusal (or any stop we do not know) is not the agent saying it is done.
                state.finished = response.stop_reason in FINISHED_STOP_REASONS
                state.final_text = response.text
                return
            results: list[ToolResult] = []
            for call in calls:
                async for event in self._tool_call(call, results):
                    yield event
            state.messages.append(Message("user", [*results, *notes]))
            self.guards.check_breaker()

    def _counter(self, specs: Sequence[ToolSpec]) -> CountTokens | None:
        """The API's token counting for a view of the conversation, when the model has it."""
        count = getattr(self.model, "count_tokens", None)
        if count is None:
            return None

        async def counter(messages: Sequence[Message]) -> int | None:
            result = await count(ModelRequest(self.system, specs, messages, max_tokens=self.max_tokens))
            return result if isinstance(result, int) else None

        return counter

    def _account(self, response: ModelResponse) -> None:
        usage = self.state.usage
        billed = response.billed_usage  # compaction's own iterations are billed too
        usage[response.model] = usage.get(response.model, Usage()) + billed
        if self.turn_cost_of is not None:
            costs = self.state.cost_by_model
            turn = self.turn_cost_of(response.model, billed)
            before = costs.get(response.model, 0.0)
            costs[response.model] = None if turn is None or before is None else before + turn
            values = list(costs.values())
            self.state.cost_usd = None if any(v is None for v in values) else sum(v for v in values if v is not None)
        else:
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


def _recorded(block: AssistantBlock) -> dict[str, Any]:
    """A block as the trajectory records it (the writer redacts it like everything else)."""
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    return block_to_wire(block) or {"type": "text", "text": ""}


def tool_input_summary(tool_input: Mapping[str, Any], width: int = 80) -> str:
    """One short line describing a call's input (for consoles and summaries)."""
    for key in ("command", "path", "pattern"):
        if isinstance(tool_input.get(key), str):
            text = " ".join(str(tool_input[key]).split())
            return text if len(text) <= width else text[: width - 1] + "…"
    return ""
