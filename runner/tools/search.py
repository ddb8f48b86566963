"""`grep` and `glob`: search the workspace inside the sandbox, with capped results."""

from __future__ import annotations

from pydantic import Field

from runner.tools.base import Tool, ToolContext, ToolInput, listing


class GrepInput(ToolInput):
    pattern: str = Field(description="A regular expression (Python re syntax).")
    path: str | None = Field(default=None, description="File or directory to search; default the workspace.")
    glob: str | None = Field(default=None, description="Only files whose path matches this glob, e.g. *.py.")
    ignore_case: bool = Field(default=False)


class Grep(Tool):
    name = "grep"
    description = "Search file contents with a regular expression; returns path:line:text, capped at 500 matches."
    Input = GrepInput

    async def run(self, args: GrepInput, ctx: ToolContext) -> str:
        r = await ctx.sandbox.file_op(
            "grep", pattern=args.pattern, path=args.path, glob=args.glob, ignore_case=args.ignore_case
        )
        matches = [str(m) for m in r.get("matches", [])]
        hidden = 0
        if ctx.may_access is not None:  # no reading through grep what the policy keeps from grep
            denied = tuple(f + ":" for f in {m.split(":", 1)[0] for m in matches} | set(r.get("files", []))
                           if not ctx.may_access("grep", f))
            kept = [m for m in matches if not m.startswith(denied)] if denied else matches
            hidden, matches = len(matches) - len(kept), kept
        if not matches:
            return "[no matches]" + (f" ({hidden} in files the policy does not allow)" if hidden else "")
        tail = "\n[more matches not shown; narrow the pattern or path]" if r.get("truncated") else ""
        if hidden:
            tail += f"\n[{hidden} matches in files the policy does not allow are not shown]"
        return "\n".join(matches) + tail


class GlobInput(ToolInput):
    pattern: str = Field(description="A glob over workspace paths: * within a directory, ** across them.")


class Glob(Tool):
    name = "glob"
    description = "Find files by path pattern, e.g. **/*.py or src/*/test_*.py; capped at 1000 paths."
    Input = GlobInput

    async def run(self, args: GlobInput, ctx: ToolContext) -> str:
        r = await ctx.sandbox.file_op("glob", pattern=args.pattern)
        matches = [str(m) for m in r.get("matches", [])]
        return listing(matches, int(r.get("total", len(matches))), empty="[no files match]", noun="paths")
