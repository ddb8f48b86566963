"""What a tool is: a typed input model, a description for the model, and an async run().

Tool inputs are pydantic models with unknown keys rejected: the JSON schema the model sees and
the validation of what it sends come from the same class, so they cannot drift apart.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from runner.models.base import ToolSpec
from runner.sandbox.base import Sandbox, ToolFailure

MODEL_OUTPUT_LIMIT = 30_000
"""Characters of tool output the model sees; longer output keeps its head and tail."""


class ToolInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


PathCheck = Callable[[str, str], bool]
"""(tool, workspace-relative path) -> may that tool touch it? The permission policy, for paths."""


@dataclass(frozen=True)
class ToolContext:
    sandbox: Sandbox
    tool_timeout: float
    """The task's limit for one call; a bash call may ask for less, never more."""
    output_limit: int = MODEL_OUTPUT_LIMIT
    may_access: PathCheck | None = None
    """The policy judged the path the model named; a symlink can lead elsewhere. Tools that read
    re-check the *real* paths they touched with this (writes through symlinks are refused)."""


def cap_text(text: str, limit: int = MODEL_OUTPUT_LIMIT) -> str:
    """Keep the head and the tail of `text`, and say in words what was cut."""
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut} characters cut: showing the first and last {half} ...]\n{text[-half:]}"


@functools.cache
def _input_schema(model: type[ToolInput]) -> dict[str, Any]:
    """The JSON schema the model sees (built once per tool class: pydantic makes it slowly)."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


def listing(items: list[str], total: int, *, empty: str, noun: str) -> str:
    """One item a line, saying how many more there were when the helper capped the list."""
    if not items:
        return empty
    more = f"\n[{total - len(items)} more {noun} not shown]" if total > len(items) else ""
    return "\n".join(items) + more


def input_problems(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "input"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


class Tool(ABC):
    """One tool the model can call. Raise ToolFailure for anything the model should hear about."""

    name: ClassVar[str]
    description: ClassVar[str]
    Input: ClassVar[type[ToolInput]]

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, _input_schema(self.Input))

    def parse(self, raw: dict[str, Any]) -> ToolInput:
        try:
            return self.Input.model_validate(raw)
        except ValidationError as exc:
            raise ToolFailure(f"invalid input for {self.name}: {input_problems(exc)}") from None

    @abstractmethod
    async def run(self, args: Any, ctx: ToolContext) -> str: ...
