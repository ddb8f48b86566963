"""`read`, `write`, `edit`, `ls`: file tools, run by the helper inside the sandbox (never on the host)."""

from __future__ import annotations

from pydantic import Field

from runner.sandbox.base import ToolFailure
from runner.tools.base import Tool, ToolContext, ToolInput, listing

_PATH = "Path relative to the workspace root, or absolute under /workspace."


class ReadInput(ToolInput):
    path: str = Field(description=_PATH)
    offset: int | None = Field(default=None, ge=1, description="First line to show (1-based).")
    limit: int | None = Field(default=None, ge=1, description="How many lines to show (at most 2000).")


class Read(Tool):
    name = "read"
    description = "Read a text file; returns numbered lines (cat -n style). Use offset/limit for long files."
    Input = ReadInput

    async def run(self, args: ReadInput, ctx: ToolContext) -> str:
        r = await ctx.sandbox.file_op("read", path=args.path, offset=args.offset, limit=args.limit)
        resolved = r.get("resolved")
        if isinstance(resolved, str) and ctx.may_access is not None and not ctx.may_access("read", resolved):
            raise ToolFailure(f"permission denied: {args.path} leads to {resolved}, which the policy does not let read")
        content = str(r.get("content", ""))
        total, first, last = r.get("total_lines", 0), r.get("first", 1), r.get("last", 0)
        if total == 0:
            return "[empty file]"
        if first > 1 or last < total:
            content += f"\n[lines {first}-{last} of {total}; use offset/limit to see more]"
        return content


class WriteInput(ToolInput):
    path: str = Field(description=_PATH)
    content: str = Field(description="The whole new content of the file.")


class Write(Tool):
    name = "write"
    description = "Create a file or overwrite it entirely (parent directories are created)."
    Input = WriteInput

    async def run(self, args: WriteInput, ctx: ToolContext) -> str:
        r = await ctx.sandbox.file_op("write", path=args.path, content=args.content)
        verb = "created" if r.get("created") else "overwrote"
        return f"{verb} {r.get('path')} ({r.get('bytes')} bytes)"


class EditInput(ToolInput):
    path: str = Field(description=_PATH)
    old_string: str = Field(description="Exact text to replace; must be unique in the file unless replace_all.")
    new_string: str = Field(description="The replacement text.")
    replace_all: bool = Field(default=False, description="Replace every occurrence of old_string.")


class Edit(Tool):
    name = "edit"
    description = (
        "Replace an exact string in a file. old_string must match exactly once (include surrounding lines "
        "to make it unique) unless replace_all is true."
    )
    Input = EditInput

    async def run(self, args: EditInput, ctx: ToolContext) -> str:
        r = await ctx.sandbox.file_op(
            "edit", path=args.path, old_string=args.old_string, new_string=args.new_string,
            replace_all=args.replace_all,
        )
        n = r.get("replacements", 1)
        return f"edited {r.get('path')} ({n} replacement{'s' if n != 1 else ''})"


class LsInput(ToolInput):
    path: str = Field(default=".", description=_PATH + " Defaults to the workspace root.")


class Ls(Tool):
    name = "ls"
    description = "List a directory (directories end with /, symlinks show their target)."
    Input = LsInput

    async def run(self, args: LsInput, ctx: ToolContext) -> str:
        r = await ctx.sandbox.file_op("ls", path=args.path)
        entries = [str(e) for e in r.get("entries", [])]
        return listing(entries, int(r.get("total", len(entries))), empty="[empty directory]", noun="entries")
