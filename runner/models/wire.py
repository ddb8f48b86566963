"""Our typed blocks to the Messages API's JSON, and the request's cache breakpoints.

What the model said goes back exactly as it came: thinking blocks (text and signature, also
when the text is empty), redacted thinking, compaction blocks and block types we do not know are
sent as the JSON the API sent, in their place (build-with-claude/preserved-thinking: "Send
assistant turns back exactly as the API returned them"). Redaction is for what we write to
disk, never for this.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from runner.models.base import (
    CompactionBlock,
    Message,
    OpaqueBlock,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolResult,
    ToolSpec,
    ToolUse,
)

CACHE = {"type": "ephemeral"}
MAX_CACHE_BREAKPOINTS = 4
"""build-with-claude/prompt-caching: at most 4 blocks with cache_control per request."""
EMPTY_MESSAGE = "(no content)"
"""Stands in for a message whose blocks were all empty text: the API rejects empty content."""
CACHEABLE = frozenset({"text", "tool_use", "tool_result", "image", "document", "compaction"})
"""Block types a breakpoint may go on (never thinking blocks, which cannot carry cache_control)."""


def tool_to_wire(tool: ToolSpec) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}


def to_wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    return [{"role": m.role, "content": _content_to_wire(m)} for m in messages]


def block_to_wire(block: object) -> dict[str, Any] | None:
    """One assistant block as the API sent it (None: an empty text block, which is not sent)."""
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text} if block.text.strip() else None
    if isinstance(block, ToolUse):
        # A call whose input could not be parsed was not run; its input is sent as {} and
        # its tool_result (from the loop) says why.
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    if isinstance(block, ThinkingBlock):
        fields = {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
        return copy.deepcopy(block.wire) or fields
    if isinstance(block, RedactedThinkingBlock):
        return copy.deepcopy(block.wire) or {"type": "redacted_thinking", "data": block.data}
    if isinstance(block, CompactionBlock):
        return copy.deepcopy(block.wire) or {"type": "compaction", "content": block.content}
    if isinstance(block, OpaqueBlock):
        return copy.deepcopy(block.wire)
    return None


def _content_to_wire(message: Message) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, ToolResult):
            wire: dict[str, Any] = {"type": "tool_result", "tool_use_id": block.tool_use_id}
            if block.content:
                wire["content"] = block.content
            if block.is_error:
                wire["is_error"] = True
            results.append(wire)
        elif (out := block_to_wire(block)) is not None:
            others.append(out)
    # The API wants tool results before any other content of a user message.
    content = results + others
    return content or [{"type": "text", "text": EMPTY_MESSAGE}]


def add_cache_breakpoints(params: dict[str, Any]) -> None:
    """Mark the cacheable prefix: last tool, system prompt, newest message, and the user message
    that was newest one exchange earlier (so this call reads what the previous call wrote even
    when a turn added more blocks than the API's 20-block lookback). At most 4, as the API allows.
    """
    targets: list[dict[str, Any]] = []
    if params.get("tools"):
        targets.append(params["tools"][-1])
    if params.get("system"):
        targets.append(params["system"][-1])
    messages: list[dict[str, Any]] = params["messages"]
    if messages:
        if (last := _cacheable_block(messages[-1])) is not None:
            targets.append(last)
        earlier = [m for m in messages[:-1] if m["role"] == "user"]
        if earlier and (block := _cacheable_block(earlier[-1])) is not None:
            targets.append(block)
    for block in targets[:MAX_CACHE_BREAKPOINTS]:
        block["cache_control"] = dict(CACHE)


def _cacheable_block(message: dict[str, Any]) -> dict[str, Any] | None:
    for block in reversed(message["content"]):
        if block.get("type") in CACHEABLE:
            return block  # type: ignore[no-any-return]
    return None
