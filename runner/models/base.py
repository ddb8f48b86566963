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


Block = TextBlock | ToolUse | ToolResult


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
    cache_read_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }


@dataclass(frozen=True)
class ModelResponse:
    content: list[TextBlock | ToolUse]
    stop_reason: str
    """end_turn, tool_use, max_tokens, stop_sequence, refusal, pause_turn ..."""
    usage: Usage
    model: str
    """The model that answered (as reported by the API); usage is summed under this name."""
    retries: int = 0
    """Requests re-sent for this turn: the SDK's own retries (429, 529, 5xx, connection) and ours
    (a stream that died midway)."""
    request_id: str | None = None

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


@dataclass
class ModelRequest:
    system: str
    tools: Sequence[ToolSpec]
    messages: Sequence[Message]
    max_tokens: int = 16_000
    extra: dict[str, Any] = field(default_factory=dict)


class Model(Protocol):
    name: str

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One model call. Raises ModelCallFailed (retryable) or ModelAPIError (fatal)."""
        ...

    async def aclose(self) -> None: ...
