"""Assembling a response from the Messages API's stream events, every block kept verbatim.

Like anthropic-sdk-python's `lib/streaming` accumulation (`accumulate_event`): a block starts as
the `content_block` of its `content_block_start`, and each delta updates it in place —
`text_delta` appends text, `thinking_delta` appends thinking, `signature_delta` *sets* the
signature, `citations_delta` appends a citation, `compaction_delta` sets content and
encrypted_content, `input_json_delta` appends to the tool input's JSON; a delta of a type we do
not know leaves the block as it was. We dispatch on the wire `type`, not the SDK's classes, so a
block type newer than the SDK still comes back whole (an `OpaqueBlock`) and goes back in its place.

A broken tool-input JSON becomes a `ToolUse` with `input_error` instead of an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from runner.models.base import (
    AssistantBlock,
    CompactionBlock,
    OpaqueBlock,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolUse,
    Usage,
)

_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass
class Assembled:
    content: list[AssistantBlock]
    stop_reason: str
    usage: Usage
    model: str
    request_id: str | None
    stop_details: dict[str, Any] | None = None
    iterations: list[Usage] = field(default_factory=list)
    context_edits: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Block:
    wire: dict[str, Any]
    json_parts: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return str(self.wire.get("type") or "unknown")


def _plain(value: Any) -> Any:
    """An SDK model (or anything else) as plain JSON data, with the API's own field names."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Assembler:
    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id
        self.blocks: dict[int, _Block] = {}
        self.usage: dict[str, Any] = {}
        self.model = ""
        self.stop_reason = ""
        self.stop_details: dict[str, Any] | None = None
        self.context_management: dict[str, Any] | None = None
        self.started = False
        self.stopped = False

    def feed(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.started = True
            message = getattr(event, "message", None)
            self.model = str(getattr(message, "model", "") or "")
            self._take_usage(getattr(message, "usage", None))
            self._take_context(getattr(message, "context_management", None))
        elif kind == "content_block_start":
            start = _plain(getattr(event, "content_block", None))
            index = int(getattr(event, "index", len(self.blocks)))
            self.blocks[index] = _Block(dict(start) if isinstance(start, dict) else {})
        elif kind == "content_block_delta":
            target = self.blocks.get(int(getattr(event, "index", -1)))
            if target is not None:
                _apply_delta(target, _plain(getattr(event, "delta", None)))
        elif kind == "message_delta":
            delta = getattr(event, "delta", None)
            stop_reason = getattr(delta, "stop_reason", None)
            if stop_reason:
                self.stop_reason = str(stop_reason)
            details = _plain(getattr(delta, "stop_details", None))
            if isinstance(details, dict):
                self.stop_details = details
            # message_delta usage is cumulative: a value given here replaces message_start's.
            self._take_usage(getattr(event, "usage", None))
            self._take_context(getattr(event, "context_management", None))
        elif kind == "message_stop":
            self.stopped = self.started

    def _take_usage(self, usage: object) -> None:
        if usage is None:
            return
        data = _plain(usage)
        if not isinstance(data, dict):
            return
        for name in (*_USAGE_FIELDS, "iterations", "cache_creation"):
            if data.get(name) is not None:
                self.usage[name] = data[name]

    def _take_context(self, value: object) -> None:
        data = _plain(value)
        if isinstance(data, dict):
            self.context_management = data

    def result(self, default_model: str) -> Assembled:
        content: list[AssistantBlock] = []
        for index in sorted(self.blocks):
            done = finish(self.blocks[index])
            if isinstance(done, TextBlock) and not done.text:
                continue
            content.append(done)
        iterations = [
            _usage(item) for item in self.usage.get("iterations") or []
            if isinstance(item, dict) and item.get("type") == "compaction"
        ]
        edits = (self.context_management or {}).get("applied_edits") or []
        return Assembled(
            content,
            self.stop_reason or ("tool_use" if any(isinstance(b, ToolUse) for b in content) else "end_turn"),
            _usage(self.usage),
            self.model or default_model,
            self.request_id,
            stop_details=self.stop_details,
            iterations=iterations,
            context_edits=[e for e in edits if isinstance(e, dict)],
        )


def _usage(data: dict[str, Any]) -> Usage:
    values = {name: int(data.get(name) or 0) for name in _USAGE_FIELDS}
    creation = data.get("cache_creation")
    one_hour = int(creation.get("ephemeral_1h_input_tokens") or 0) if isinstance(creation, dict) else 0
    return Usage(**values, cache_creation_1h_input_tokens=one_hour)


def _apply_delta(block: _Block, delta: Any) -> None:
    if not isinstance(delta, dict):
        return
    kind, wire = delta.get("type"), block.wire
    if kind == "text_delta" and block.kind == "text":
        wire["text"] = str(wire.get("text") or "") + str(delta.get("text") or "")
    elif kind == "thinking_delta" and block.kind == "thinking":
        wire["thinking"] = str(wire.get("thinking") or "") + str(delta.get("thinking") or "")
    elif kind == "signature_delta" and block.kind == "thinking":
        wire["signature"] = str(delta.get("signature") or "")
    elif kind == "citations_delta" and block.kind == "text":
        wire["citations"] = [*(wire.get("citations") or []), delta.get("citation")]
    elif kind == "compaction_delta" and block.kind == "compaction":
        wire["content"] = delta.get("content")
        if "encrypted_content" in delta:
            wire["encrypted_content"] = delta.get("encrypted_content")
    elif kind == "input_json_delta":
        block.json_parts.append(str(delta.get("partial_json") or ""))


def finish(block: _Block) -> AssistantBlock:
    wire = block.wire
    if block.kind == "text":
        return TextBlock(str(wire.get("text") or ""))
    if block.kind == "tool_use":
        return _tool_use(block)
    if block.kind == "thinking":
        return ThinkingBlock(str(wire.get("thinking") or ""), str(wire.get("signature") or ""), wire=wire)
    if block.kind == "redacted_thinking":
        return RedactedThinkingBlock(str(wire.get("data") or ""), wire=wire)
    if block.kind == "compaction":
        content = wire.get("content")
        return CompactionBlock(None if content is None else str(content), wire=wire)
    return OpaqueBlock(block.kind, wire=wire)


def _tool_use(block: _Block) -> ToolUse:
    wire = block.wire
    tool_id, name = str(wire.get("id") or ""), str(wire.get("name") or "")
    raw = "".join(block.json_parts)
    if not raw.strip():
        start = wire.get("input")
        return ToolUse(tool_id, name, dict(start) if isinstance(start, dict) else {})
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        problem = f"could not parse the tool input as JSON: {exc} (input was {_clip(raw)})"
        return ToolUse(tool_id, name, {}, input_error=problem)
    if not isinstance(value, dict):
        return ToolUse(
            tool_id, name, {},
            input_error=f"the tool input must be a JSON object, got {type(value).__name__}: {_clip(raw)}",
        )
    return ToolUse(tool_id, name, value)


def _clip(text: str, limit: int = 200) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"
