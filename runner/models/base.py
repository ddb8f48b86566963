"""The model interface: what the agent loop needs from any model (Anthropic, scripted).

Messages are kept in our own typed blocks and converted to the wire format only in the
Anthropic client, so the loop, the trajectory and the scripted model never touch SDK types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class TextBlock:
    text: str


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    input: dict[str, Any]
    input_error: str | None = None
    """Set when the model's input could not be parsed (broken streamed JSON): the call is not
    run, and the model is told why."""


@dataclass(frozen=True)
class ToolResult:
    tool_use_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class ThinkingBlock:
    """A `thinking` block, kept exactly as the API sent it: its text (often empty, with the
    default `display`) and the `signature` that carries the model's reasoning.

    The API checks the signature against everything before the block (system, tools, earlier
    messages) and rejects a request whose assistant turn ending in `tool_use` does not start with
    its thinking block (platform.claude.com build-with-claude/preserved-thinking), so a thinking
    block is never dropped, edited, reordered or redacted in what we send back."""

    thinking: str
    signature: str
    wire: dict[str, Any] = field(default_factory=dict, compare=False)
    """Every field as received (the API may add fields); sent back as is."""


@dataclass(frozen=True)
class RedactedThinkingBlock:
    """A `redacted_thinking` block: encrypted reasoning, sent back untouched."""

    data: str
    wire: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class CompactionBlock:
    """A `compaction` block: the API's summary of the conversation before it
    (build-with-claude/compaction-threshold). The API ignores what came before it, so it goes
    back first in its assistant message, exactly as received."""

    content: str | None
    wire: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class OpaqueBlock:
    """A content block of a type we do not know (yet): kept whole and sent back in its place."""

    type: str
    wire: dict[str, Any] = field(default_factory=dict)


AssistantBlock = TextBlock | ToolUse | ThinkingBlock | RedactedThinkingBlock | CompactionBlock | OpaqueBlock
"""What an assistant message may hold, in the order the API sent it."""
Block = AssistantBlock | ToolResult


@dataclass
class Message:
    role: Literal["user", "assistant"]
    content: list[Block]


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it (name, description, JSON schema of its input)."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    """All cache writes (5-minute and 1-hour)."""
    cache_read_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    """The part of cache_creation_input_tokens written with the 1-hour TTL (priced higher)."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            self.cache_creation_1h_input_tokens + other.cache_creation_1h_input_tokens,
        )

    @property
    def prompt_tokens(self) -> int:
        """The whole prompt of a call: uncached input, cache writes and cache reads."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation_1h_input_tokens": self.cache_creation_1h_input_tokens,
        }


@dataclass(frozen=True)
class ModelResponse:
    content: list[AssistantBlock]
    stop_reason: str
    """end_turn, tool_use, max_tokens, stop_sequence, refusal, pause_turn,
    model_context_window_exceeded, compaction ..."""
    usage: Usage
    """The usage of the response itself (the API's top-level usage)."""
    model: str
    """The model that answered (as reported by the API); usage is summed under this name."""
    retries: int = 0
    """Turns re-sent because a stream died midway (the SDK's own retries are not counted)."""
    request_id: str | None = None
    stop_details: dict[str, Any] | None = None
    """What the API says about the stop (a refusal's category and explanation)."""
    iterations: list[Usage] = field(default_factory=list)
    """Sampling steps the API billed besides the response (`usage.iterations` entries of type
    `compaction`): not in the top-level usage, so added to the bill (see `billed_usage`)."""
    context_edits: list[dict[str, Any]] = field(default_factory=list)
    """Server-side context edits the API applied to this request (`context_management.applied_edits`)."""

    @property
    def billed_usage(self) -> Usage:
        total = self.usage
        for extra in self.iterations:
            total = total + extra
        return total

    @property
    def compacted(self) -> bool:
        return any(isinstance(b, CompactionBlock) for b in self.content)

    @property
    def tool_uses(self) -> list[ToolUse]:
        return [b for b in self.content if isinstance(b, ToolUse)]

    @property
    def text(self) -> str:
        return "".join(b.text for b in self.content if isinstance(b, TextBlock))


class ModelCallFailed(Exception):
    """A model call failed after the SDK's retries (429, 529, 5xx, a stream that kept dying).

    Not fatal by itself: the loop counts it towards the circuit breaker and tries again.
    Errors that no retry can fix (bad key, bad request, unreachable) raise
    `runner.errors.ModelAPIError` instead and end the run with exit 4.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        """What the API asked us to wait (`retry-after`), if it said."""


class PromptTooLong(Exception):
    """The API refused the prompt as longer than the model's context window (a 400
    invalid_request_error "prompt is too long: N tokens > M maximum"). Not an infrastructure
    failure: the loop shrinks the context and tries again, or stops at the context limit."""

    def __init__(self, message: str, *, tokens: int | None = None, maximum: int | None = None) -> None:
        super().__init__(message)
        self.tokens = tokens
        self.maximum = maximum


@dataclass
class ModelRequest:
    system: str
    tools: Sequence[ToolSpec]
    messages: Sequence[Message]
    max_tokens: int | None = None
    """None: the model's own default output limit (runner.models.catalog)."""
    extra: dict[str, Any] = field(default_factory=dict)
    context: ContextRequest | None = None
    """Server-side context management for this call (compaction or tool-result clearing)."""


@dataclass(frozen=True)
class ContextRequest:
    """What the API should do with a long history, per call (see runner.agent.context)."""

    compact_at_tokens: int | None = None
    """Threshold compaction (`compact_20260112`) at this many input tokens."""
    clear_at_tokens: int | None = None
    """Clear old tool results (`clear_tool_uses_20250919`) at this many input tokens..."""
    clear_keep: int = 3
    """...keeping the newest this many tool uses..."""
    clear_at_least: int = 0
    """...and clearing at least this many tokens each time (large steps keep the cache useful)."""
    drop_mismatched_thinking: bool = False
    """The client edited what came before some thinking blocks (client-side clearing): ask the API
    to drop the blocks that fail the prefix check instead of refusing the request
    (build-with-claude/preserved-thinking: `prefix_mismatch_behavior: "drop_block"`)."""


class Model(Protocol):
    name: str

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One model call. Raises ModelCallFailed (retryable) or ModelAPIError (fatal)."""
        ...

    async def aclose(self) -> None: ...
