"""Content blocks and messages as JSON, generically: whatever block types runner.models.base has.

Two forms, for two readers:
- `block_json`: for the trajectory (and --json, report.html): `{"type": <wire type>, ...fields}`,
  the shape of the Messages API, so a reader sees text, tool_use, thinking, compaction or a block
  type added later without this module knowing it.
- `messages_to_state` / `messages_from_state`: for resume, exact: each block tagged with its class,
  so the conversation is sent back verbatim (signatures of thinking blocks included).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from runner.models import base

WIRE_TYPES = {"TextBlock": "text", "ToolUse": "tool_use", "ToolResult": "tool_result"}
"""Class names whose wire type is not their snake_cased name without `Block`."""


def wire_type(block: object) -> str:
    """The Messages API `type` of a block: its own `type` field when it has one (an unknown block
    keeps the type the API gave it), else derived from the class name (ThinkingBlock -> thinking)."""
    own = getattr(block, "type", None)
    if isinstance(own, str) and own:
        return own
    name = type(block).__name__
    if name in WIRE_TYPES:
        return WIRE_TYPES[name]
    stem = name.removesuffix("Block") or name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower()


def block_json(block: object) -> dict[str, Any]:
    """One block for the trajectory: its wire type and every field."""
    fields = dataclasses.asdict(block) if dataclasses.is_dataclass(block) and not isinstance(block, type) else {}
    if not fields and isinstance(block, dict):
        fields = dict(block)
    return {"type": wire_type(block), **{k: v for k, v in fields.items() if k != "type"}}


def messages_to_state(messages: list[base.Message]) -> list[dict[str, Any]]:
    """The conversation, exactly, for the run's private resume state."""
    return [
        {"role": m.role, "content": [{"class": type(b).__name__, "data": dataclasses.asdict(b)} for b in m.content]}
        for m in messages
    ]


class StateError(ValueError):
    """The saved conversation cannot be read back (a block type this version does not have)."""


def messages_from_state(data: list[dict[str, Any]]) -> list[base.Message]:
    messages = []
    for item in data:
        blocks: list[Any] = []
        for entry in item["content"]:
            cls = getattr(base, str(entry.get("class")), None)
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
                raise StateError(f"unknown content block {entry.get('class')!r}")
            blocks.append(cls(**entry["data"]))
        if item.get("role") not in ("user", "assistant"):
            raise StateError(f"unknown role {item.get('role')!r}")
        messages.append(base.Message(item["role"], blocks))
    return messages
