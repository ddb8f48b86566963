"""A 150-turn run with large tool outputs, with and without context management.

    .venv/bin/python bench/context.py [--turns 150] [--chars 30000]

Each turn the model (tests/fakes/messages_api.py, answering at once, through the real anthropic
SDK and runner.models.anthropic) calls `bash`, whose output is a scripted 30k-character text
(no sandbox: the bench measures the conversation, not the tools). The fake computes usage from
the request's cache breakpoints, so "from cache" is what prompt caching would serve. Rows:

- claude-haiku-4-5 (200k window) with `context.strategy: none`: the run stops when the prompt no
  longer fits (exit 3, the context-window limit);
- claude-haiku-4-5 with `auto`: the API clears old tool results (context editing) in large steps;
- claude-sonnet-4-0 with `auto`: no API feature, the client clears in the same steps;
- claude-sonnet-5-5 with `auto` and a 150k trigger: API compaction.

Columns: turns done, how the run ended, compactions, total input tokens (uncached + cache writes
+ cache reads, compaction iterations included), the share read from cache, cost at
runner/models/prices.json, and the largest prompt of a turn. Goal: >= 85% read from cache.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.agent.context import ContextManager, choose  # noqa: E402
from runner.agent.events import ModelTurn  # noqa: E402
from runner.agent.guards import Guards  # noqa: E402
from runner.agent.loop import Agent  # noqa: E402
from runner.errors import LimitExceeded  # noqa: E402
from runner.models.anthropic import AnthropicModel  # noqa: E402
from runner.models.catalog import model_info  # noqa: E402
from runner.models.pricing import load_prices  # noqa: E402
from runner.policy import Policy  # noqa: E402
from runner.task import PolicySpec  # noqa: E402
from runner.tools import ToolContext, ToolRegistry  # noqa: E402
from runner.tools.shell import Bash  # noqa: E402
from tests.fakes.messages_api import FakeMessagesAPI  # noqa: E402

KEY = "sk-ant-bench"


class ScriptedBash(Bash):
    """`bash` whose output is a fixed large text (numbered, so every output differs)."""

    def __init__(self, chars: int) -> None:
        super().__init__()
        self.chars = chars
        self.calls = 0

    async def run(self, args: Any, ctx: ToolContext) -> str:
        self.calls += 1
        line = f"call {self.calls:04d} " + "x" * 60 + "\n"
        return (line * (self.chars // len(line) + 1))[: self.chars]


@dataclass
class Row:
    label: str
    turns: int
    ended: str
    compactions: int
    input_tokens: int
    cached: int
    cost: float | None
    largest: int
    seconds: float


def answer(turns: int) -> Any:
    def hook(body: dict[str, Any]) -> dict[str, Any]:
        done = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if done + 1 >= turns:
            return {"text": "Read everything."}
        return {"tool_calls": [{"name": "bash", "input": {"command": f"cat part-{done}.log"}}]}

    return hook


async def one(label: str, model: str, strategy: str, trigger: int | None, turns: int, chars: int) -> Row:
    prices = load_prices()
    info = model_info(model)
    started = time.monotonic()
    with FakeMessagesAPI(hook=answer(turns), api_key=KEY) as api:
        llm = AnthropicModel(model, api_key=KEY, base_url=api.base_url, max_retries=0)
        context = ContextManager(info, choose(strategy, info), trigger)
        agent = Agent(
            model=llm, tools=ToolRegistry([ScriptedBash(chars)]),
            policy=Policy.from_spec(PolicySpec(default="allow")),
            tool_context=ToolContext(cast(Any, None), 60.0),
            guards=Guards(max_turns=turns + 5, max_cost_usd=1e9, circuit_breaker=5),
            system="You read logs.", task_message="Read every log part.",
            cost_of=prices.total, turn_cost_of=prices.turn_cost, model_retry_backoff_s=0.0,
            context=context if strategy != "none" else ContextManager(info, "none"),
        )
        largest = total = cached = 0
        ended = "finished"
        try:
            async for event in agent.run():
                if isinstance(event, ModelTurn):
                    billed = event.billed_usage or event.usage
                    largest = max(largest, event.usage.prompt_tokens)
                    total += billed.prompt_tokens
                    cached += billed.cache_read_input_tokens
        except LimitExceeded as exc:
            ended = f"limit: {exc.limit}"
        await llm.aclose()
    state = agent.state
    return Row(label, state.turns, ended, state.compactions, total, cached, state.cost_usd, largest,
               time.monotonic() - started)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--turns", type=int, default=150)
    p.add_argument("--chars", type=int, default=30_000)
    args = p.parse_args()
    cases = [
        ("haiku-4-5, strategy none", "claude-haiku-4-5", "none", None),
        ("haiku-4-5, auto (API context editing)", "claude-haiku-4-5", "auto", None),
        ("sonnet-4-0, auto (client-side clearing)", "claude-sonnet-4-0", "auto", None),
        ("sonnet-5-5, auto (API compaction at 150k)", "claude-sonnet-5-5", "auto", 150_000),
    ]
    rows = [asyncio.run(one(label, m, s, t, args.turns, args.chars)) for label, m, s, t in cases]
    head = f"{'run':44} {'turns':>5} {'ended':>22} {'compact':>7} {'input tokens':>13} {'from cache':>10} " \
           f"{'cost USD':>9} {'largest prompt':>14} {'s':>6}"
    print(f"{args.turns}-turn run, {args.chars}-character tool outputs")
    print(head)
    print("-" * len(head))
    for r in rows:
        share = f"{100 * r.cached / r.input_tokens:.1f}%" if r.input_tokens else "-"
        cost = f"{r.cost:.4f}" if r.cost is not None else "unknown"
        print(f"{r.label:44} {r.turns:>5} {r.ended:>22} {r.compactions:>7} {r.input_tokens:>13,} {share:>10} "
              f"{cost:>9} {r.largest:>14,} {r.seconds:>6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
