"""Keeping a long run inside the model's context window (SPEC §2 `context`).

The strategy is chosen per model from runner/models/models.json:
- `compact` where the API has threshold compaction (`compact_20260112`): the API summarizes the
  history once the prompt reaches the trigger and answers from the summary; we send every
  block back as it came, the compaction block included (build-with-claude/compaction-threshold);
- `clear` where the API has context editing (`clear_tool_uses_20250919`): the API replaces the
  oldest tool results by a placeholder, in steps of `clear_at_least` tokens, so the prompt's
  prefix (and with it the prompt cache) stays the same between steps
  (build-with-claude/context-editing: "clear enough tokens to make the cache invalidation
  worthwhile");
- `client`, the fallback for a model with neither: we clear old tool results ourselves, in the
  same large steps, in the view we send (the history we keep and record is never rewritten).
  Only models without preserved thinking get here: editing what came before a thinking block
  would invalidate it on the models that check (build-with-claude/preserved-thinking).

`auto` picks the first the model has, in that order. Triggers come from the model's window and
from the API's own usage figures (the last prompt's size as billed, plus what was added since,
measured by the API's token counting when the estimate comes near the trigger), not from guesses.
A prompt that is too long anyway is retried once with the most the strategy can do; when it
still does not fit, the run stops at the context-window limit (exit 3).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from runner.errors import ConfigError, LimitExceeded
from runner.models.base import ContextRequest, Message, ModelResponse, PromptTooLong, ToolResult
from runner.models.catalog import ModelInfo

Mechanism = Literal["api_compaction", "api_clearing", "client_clearing", "none"]
COMPACT_AT = 0.7
"""Default compaction trigger: this share of the window (the summary step reads the whole prompt)."""
CLEAR_AT = 0.75
CLEAR_STEP = 0.5
"""Default clearing trigger and step: at 75% of the window, clear at least half of it at a time.
A step rewrites the cache after the first cleared result once; between steps every prompt reads
all but its newest part from the cache (bench/context.py: the share read from cache)."""
KEEP_TOOL_USES = 3
CLEARED = "[astra-run: this tool result was cleared to keep the conversation inside the context window]"
CHARS_PER_TOKEN = 4
"""Only to estimate what was added since the API last counted; the API's count is used near a trigger."""
COUNT_WHEN = 0.9
MAX_OVERFLOW_RETRIES = 2

CountTokens = Callable[[Sequence[Message]], Awaitable[int | None]]


@dataclass(frozen=True)
class Compaction:
    """One step that made the conversation smaller (for the trajectory and result.json)."""

    mechanism: Mechanism
    tokens_before: int
    tokens_after: int | None
    detail: str


def choose(strategy: str, info: ModelInfo, where: Callable[[str], str] = lambda f: f) -> Mechanism:
    if strategy == "none":
        return "none"
    if strategy == "auto":
        if info.compaction:
            return "api_compaction"
        if info.context_editing:
            return "api_clearing"
        return "client_clearing"
    if strategy == "compact":
        if info.compaction:
            return "api_compaction"
        raise ConfigError(
            f"{where('context.strategy')}: {info.id} has no API compaction (per runner/models/models.json); "
            "use `clear` or `auto`"
        )
    if info.context_editing:
        return "api_clearing"
    return "client_clearing"


class ContextManager:
    def __init__(self, info: ModelInfo, mechanism: Mechanism, trigger_tokens: int | None = None) -> None:
        self.info = info
        self.mechanism = mechanism
        window = info.context_window
        default = COMPACT_AT if mechanism == "api_compaction" else CLEAR_AT
        self.trigger = min(trigger_tokens or int(window * default), window)
        self.step = max(1, int(self.trigger * CLEAR_STEP / CLEAR_AT))
        """Clear at least this much at a time: two thirds of the trigger (half the window by default)."""
        self.compactions: list[Compaction] = []
        self._forced = False
        self._overflows = 0
        self._cleared_uses = 0
        """Server-side: the API's last count of cleared tool uses. Client-side: how many of the
        oldest tool results our view replaces."""
        self._last_prompt = 0
        self._last_messages = 0

    # -- before a call ---------------------------------------------------------------------------
    def request(self) -> ContextRequest | None:
        """Server-side context management for the next call; a forced shrink applies once."""
        forced = self._forced
        if self.mechanism == "api_compaction":
            self._forced = False
            return ContextRequest(compact_at_tokens=0 if forced else self.trigger)
        if self.mechanism == "api_clearing":
            self._forced = False
            if forced:
                return ContextRequest(clear_at_tokens=0, clear_keep=1, clear_at_least=0)
            return ContextRequest(clear_at_tokens=self.trigger, clear_keep=KEEP_TOOL_USES, clear_at_least=self.step)
        if self.mechanism == "client_clearing" and self._cleared_uses and self.info.preserved_thinking:
            # Our clearing changed what came before later thinking blocks: on a model that checks,
            # those blocks would fail; the API drops them instead (the model redoes that reasoning).
            return ContextRequest(drop_mismatched_thinking=True)
        return None

    async def view(self, messages: list[Message], count: CountTokens | None) -> list[Message]:
        """The messages to send. Client-side clearing replaces the oldest tool results, in steps;
        everything else sends the history as it is."""
        if self.mechanism != "client_clearing":
            return messages
        estimate = self._estimate(messages)
        if self._forced or estimate >= self.trigger * COUNT_WHEN:
            counted = await count(self._cleared(messages, self._cleared_uses)) if count is not None else None
            size = counted if counted is not None else estimate
            if self._forced or size >= self.trigger:
                self._clear_more(messages, size)
        return self._cleared(messages, self._cleared_uses)

    def _estimate(self, messages: list[Message]) -> int:
        added = messages[self._last_messages :] if self._last_prompt else messages
        chars = sum(len(json.dumps(dataclasses.asdict(m), default=str)) for m in added)
        return self._last_prompt + chars // CHARS_PER_TOKEN

    def _clear_more(self, messages: list[Message], size: int) -> None:
        places = _results(messages)
        keep = 1 if self._forced else KEEP_TOOL_USES
        clearable = places[: max(0, len(places) - keep)]
        target = size - self.trigger + self.step if not self._forced else size
        freed, uses = 0, self._cleared_uses
        while uses < len(clearable) and freed < target:
            i, j = clearable[uses]
            freed += len(str(_block(messages, i, j).content)) // CHARS_PER_TOKEN
            uses += 1
        if uses > self._cleared_uses:
            self.compactions.append(Compaction(
                "client_clearing", size, max(0, size - freed),
                f"cleared the {uses - self._cleared_uses} oldest tool results not yet cleared ({uses} in all)",
            ))
            self._cleared_uses = uses
        self._forced = False

    def _cleared(self, messages: list[Message], uses: int) -> list[Message]:
        if not uses:
            return messages
        places = set(_results(messages)[:uses])
        out: list[Message] = []
        for i, m in enumerate(messages):
            if not any((i, j) in places for j in range(len(m.content))):
                out.append(m)
                continue
            blocks = [dataclasses.replace(b, content=CLEARED) if (i, j) in places and isinstance(b, ToolResult) else b
                      for j, b in enumerate(m.content)]
            out.append(Message(m.role, blocks))
        return out

    # -- after a call ----------------------------------------------------------------------------
    def observe(self, response: ModelResponse, sent: Sequence[Message]) -> Compaction | None:
        """Note the API's own figures; return the compaction this response made, if any."""
        self._overflows = 0
        self._last_prompt = response.usage.prompt_tokens + response.usage.output_tokens
        self._last_messages = len(sent) + 1
        if response.compacted:
            self._forced = False
            before = response.iterations[0].prompt_tokens if response.iterations else 0
            step = Compaction("api_compaction", before, response.usage.prompt_tokens,
                              "the API summarized the conversation (compaction block)")
            self.compactions.append(step)
            return step
        for edit in response.context_edits:
            cleared = int(edit.get("cleared_tool_uses") or 0)
            if edit.get("type") == "clear_tool_uses_20250919" and cleared > self._cleared_uses:
                self._forced = False
                step = Compaction(
                    "api_clearing", response.usage.prompt_tokens + int(edit.get("cleared_input_tokens") or 0),
                    response.usage.prompt_tokens, f"the API cleared {cleared} old tool results",
                )
                self._cleared_uses = cleared
                self.compactions.append(step)
                return step
        return None

    def force_next(self) -> None:
        """The window is full (model_context_window_exceeded): shrink on the next call."""
        if self.mechanism != "none":
            self._forced = True

    def overflow(self, exc: PromptTooLong) -> None:
        """The API refused the prompt as too long: retry once with the most the strategy can
        do, else stop at the context-window limit."""
        self._overflows += 1
        if self.mechanism == "none" or self._overflows > MAX_OVERFLOW_RETRIES:
            size = f"{exc.tokens} tokens" if exc.tokens else "the conversation"
            raise LimitExceeded(
                f"context window: {size} no longer fit {self.info.id}'s context window of "
                f"{exc.maximum or self.info.context_window} tokens"
                + ("" if self.mechanism == "none" else " even after compacting (context.strategy: "
                   f"{self.mechanism})") + f"; {exc}",
                limit="context_window", value=exc.maximum or self.info.context_window,
            )
        self._forced = True


def _results(messages: Sequence[Message]) -> list[tuple[int, int]]:
    return [(i, j) for i, m in enumerate(messages) for j, b in enumerate(m.content) if isinstance(b, ToolResult)]


def _block(messages: Sequence[Message], i: int, j: int) -> ToolResult:
    block = messages[i].content[j]
    assert isinstance(block, ToolResult)
    return block
