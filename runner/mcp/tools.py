"""MCP tools as registry tools: names the Messages API accepts, schemas passed through, results as text."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, cast

import mcp_types as types
from pydantic import ConfigDict

from runner.models.base import ToolSpec
from runner.sandbox.base import ToolFailure
from runner.tools.base import Tool, ToolContext, ToolInput

NAME_MAX = 64
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")

CallFn = Callable[[str, dict[str, Any]], Awaitable[types.CallToolResult]]
"""Calls one tool of the server by its MCP name; raises ToolFailure."""


def tool_name(server: str, tool: str, taken: set[str]) -> str:
    """`mcp__<server>__<tool>` made valid for the Messages API (`^[a-zA-Z0-9_-]{1,64}$`) and unique
    among `taken` (which it is added to): invalid characters become `_`, long names are cut, a
    clash gets `_2`, `_3`, ..."""
    base = _INVALID.sub("_", f"mcp__{server}__{tool}")[:NAME_MAX]
    name, n = base, 1
    while name in taken:
        n += 1
        suffix = f"_{n}"
        name = base[: NAME_MAX - len(suffix)] + suffix
    taken.add(name)
    return name


class McpArguments(ToolInput):
    """Whatever the model sent: the server validates it against its own schema."""

    model_config = ConfigDict(extra="forbid")
    arguments: dict[str, Any]


class McpTool(Tool):
    """One tool of one MCP server, under its registry name.

    `Tool.name` and `Tool.description` are class attributes, and every MCP tool has its own: each
    one is an instance of a subclass of its own, made by `make`.
    """

    Input = McpArguments

    def __init__(self, server: str, tool: types.Tool, call: CallFn) -> None:
        self.server = server
        self.mcp_name = tool.name
        schema = dict(tool.input_schema)
        schema.setdefault("type", "object")
        self.input_schema = schema
        self._call = call

    @classmethod
    def make(cls, name: str, server: str, tool: types.Tool, call: CallFn) -> McpTool:
        """The tool `name` (a registry name, see `tool_name`) calling `tool` of the MCP server `server`."""
        desc = (tool.description or tool.title or "").strip()
        attrs = {"name": name, "description": desc or f"The tool {tool.name} of the MCP server {server}.",
                 "__module__": cls.__module__, "__qualname__": f"{cls.__qualname__}[{name}]"}
        subclass = cast("type[McpTool]", type(f"{cls.__name__}[{name}]", (cls,), attrs))
        return subclass(server, tool, call)

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.input_schema)

    def parse(self, raw: dict[str, Any]) -> ToolInput:
        return McpArguments(arguments=dict(raw))

    async def run(self, args: Any, ctx: ToolContext) -> str:
        assert isinstance(args, McpArguments)
        result = await self._call(self.mcp_name, args.arguments)
        text = render_result(result)
        if result.is_error:
            raise ToolFailure(text or f"{self.name} reported an error (no details)")
        return text


def _size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return len(data) * 3 // 4


def render_block(block: types.ContentBlock) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent):
        return f"[image: {block.mime_type}, {_size(block.data)} bytes]"
    if isinstance(block, types.AudioContent):
        return f"[audio: {block.mime_type}, {_size(block.data)} bytes]"
    if isinstance(block, types.ResourceLink):
        return f"[resource link: {block.uri}" + (f" ({block.name})" if block.name else "") + "]"
    if isinstance(block, types.EmbeddedResource):
        res = block.resource
        if isinstance(res, types.TextResourceContents):
            return f"[resource {res.uri}]\n{res.text}"
        return f"[resource {res.uri}: {res.mime_type or 'binary'}, {_size(res.blob)} bytes]"
    return f"[{getattr(block, 'type', 'unknown')} content]"


def render_result(result: types.CallToolResult) -> str:
    """Text, images (described), resources and structured content as one text for the model."""
    parts = [render_block(b) for b in result.content]
    # A server that returns structured content also sends it as text (the spec says SHOULD, the
    # SDK does): the text is what the model gets then; the JSON only when there is no text.
    has_text = any(isinstance(b, types.TextContent) for b in result.content)
    if result.structured_content is not None and not has_text:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)
