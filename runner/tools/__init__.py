"""The tools the model sees (SPEC §3) and the registry that runs them.

MCP tools register here too (`runner.mcp`), so policy, limits, caps and the breaker treat every
tool the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runner.models.base import ToolSpec
from runner.sandbox.base import ToolFailure
from runner.tools.base import Tool, ToolContext, cap_text
from runner.tools.files import Edit, Ls, Read, Write
from runner.tools.search import Glob, Grep
from runner.tools.shell import Bash

__all__ = ["BUILTIN_TOOLS", "Tool", "ToolContext", "ToolFailure", "ToolRegistry", "cap_text"]

BUILTIN_TOOLS: tuple[type[Tool], ...] = (Bash, Read, Write, Edit, Grep, Glob, Ls)


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    @classmethod
    def builtin(cls) -> ToolRegistry:
        return cls(t() for t in BUILTIN_TOOLS)

    def add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"two tools are named {tool.name!r}")
        self._tools[tool.name] = tool

    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self._tools.values()]

    def get(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            raise ToolFailure(f"unknown tool {name!r}; the tools are: {', '.join(self._tools)}")
        return tool

    async def call(self, name: str, raw_input: dict[str, Any], ctx: ToolContext) -> str:
        """Run one call. Raises ToolFailure (told to the model) for unknown tools, bad input and
        failures; lets SandboxError (infrastructure) through."""
        tool = self.get(name)
        args = tool.parse(raw_input)
        try:
            output = await tool.run(args, ctx)
        except ToolFailure as exc:
            raise ToolFailure(cap_text(str(exc), ctx.output_limit)) from None
        return cap_text(output, ctx.output_limit)
