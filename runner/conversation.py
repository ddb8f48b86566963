"""The conversation as JSON for resume, exactly and generically (whatever block types
runner.models.base has): each block tagged with its class and all its fields, so it is sent back
verbatim (thinking signatures and every `wire` field included). The trajectory records blocks in
the API's own shape instead (runner.agent.loop `_recorded`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from runner.models import base


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
