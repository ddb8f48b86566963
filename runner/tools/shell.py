"""`bash`: one command line in the sandbox at /workspace, its own process group, stdin closed."""

from __future__ import annotations

from pydantic import Field

from runner.sandbox.base import ToolFailure
from runner.tools.base import Tool, ToolContext, ToolInput


class BashInput(ToolInput):
    command: str = Field(description="The command line, run with bash -c at the workspace root.")
    timeout: int | None = Field(
        default=None, gt=0, description="Seconds before the command is killed (at most the task's tool timeout)."
    )


class Bash(Tool):
    name = "bash"
    description = (
        "Run a shell command in the sandbox (bash -c, working directory /workspace, no network, no stdin). "
        "Returns the combined stdout/stderr and the exit code. Long output keeps its head and tail. "
        "Background processes are killed when the command returns. Prefer read/grep/glob/ls/edit for files."
    )
    Input = BashInput

    async def run(self, args: BashInput, ctx: ToolContext) -> str:
        if not args.command.strip():
            raise ToolFailure("`command` is empty")
        timeout = min(float(args.timeout), ctx.tool_timeout) if args.timeout else ctx.tool_timeout
        result = await ctx.sandbox.exec(args.command, timeout=timeout, output_limit=ctx.output_limit)
        output = result.output.rstrip("\n")
        if result.timed_out:
            raise ToolFailure(
                f"{output}\n[command timed out after {timeout:g}s and was killed with all its processes]".lstrip()
            )
        if result.exit_code != 0:
            raise ToolFailure(f"{output}\n[exit code {result.exit_code}]".lstrip())
        return output if output else "[no output, exit code 0]"
