"""MCP servers as tools (SPEC §2 `mcp_servers`, §3; docs/mcp.md).

    mcp_servers:
      git:  {command: python, args: [-m, mcp_server_git], where: sandbox, timeout: 60s}
      docs: {url: http://127.0.0.1:8765/mcp, headers: {Authorization: "Bearer ${DOCS_TOKEN}"}}
      repo: {from_repo: true}            # opt in to the repo's own .mcp.json

- **stdio in the sandbox** (the default for `command`): started with `Sandbox.spawn`, so in the
  container it sees only the workspace and, in the agent phase, no network. **stdio on the host**
  (`where: host`): a host subprocess in its own process group with a clean environment (PATH,
  HOME, LANG and the spec's `env`). **Streamable HTTP** (`url`): reached from the host.
- `${NAME}` in `env` / `headers` takes a host variable; those values are added to the redactor.
- **The repo's `.mcp.json` is untrusted.** It is read only when the task has an entry with
  `from_repo: true`, and then only its stdio servers are used, each run *inside the sandbox*
  (never on the host, whatever the file says), named `<entry>_<name>`, with its `env` taken
  literally (no host variables). HTTP servers in it are skipped: they would be reached from the
  host. The file is read inside the sandbox, so a symlink in it cannot make the host read a file.
- Tools listed at start become `mcp__<server>__<tool>` (valid for the Messages API,
  deduplicated), schemas passed through; policy rules match them by name.
- Failures: a required server that does not start (or names a `${NAME}` the host does not set)
  ends the run (`McpError`, exit 4) with its stderr tail; an `optional: true` one is skipped with
  a warning. A server that dies mid-run
  makes its tools fail (the model is told) and a warning note records it. Every call has the
  server's `timeout`. `close()` leaves no server process behind, on the host or in the container.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from runner.agent.events import Event, Note
from runner.errors import ConfigError, InfraError
from runner.mcp.client import Connection, ServerPlan
from runner.mcp.config import RepoConfigError, plan_from_task, plans_from_repo, read_repo_config
from runner.mcp.tools import McpTool, tool_name
from runner.redact import Redactor
from runner.sandbox.base import Sandbox
from runner.task import McpServerSpec
from runner.tools.base import Tool

__all__ = ["McpError", "McpServers", "McpTool", "ServerPlan"]


class McpError(InfraError):
    """A required MCP server could not be used (exit 4, error kind `mcp`)."""


class McpServers:
    """The run's MCP servers: started together, their tools, closed together."""

    def __init__(self, connections: list[Connection], tools: list[Tool]) -> None:
        self._connections = connections
        self._tools = tools

    @classmethod
    async def start(
        cls,
        servers: Mapping[str, McpServerSpec],
        *,
        sandbox: Sandbox,
        emit: Callable[[Event], None],
        redactor: Redactor,
    ) -> McpServers:
        plans: list[ServerPlan] = []
        for name, spec in servers.items():
            if spec.from_repo:
                plans += await _repo_plans(name, spec, sandbox, emit)
                continue
            try:
                plan, host_values = plan_from_task(name, spec)
            except ConfigError as exc:  # a ${NAME} not set on the host
                if spec.optional:
                    emit(Note(f"MCP server {name!r}: {exc}\n(optional: skipped, the run goes on)", level="warning"))
                    continue
                raise McpError(f"MCP server {name!r}: {exc}") from None
            redactor.add(host_values)
            plans.append(plan)
        seen: set[str] = set()
        for plan in plans:
            if plan.name in seen:
                raise McpError(f"two MCP servers are named {plan.name!r} (after making names valid)")
            seen.add(plan.name)

        def on_death(message: str) -> None:
            emit(Note(message, level="warning"))

        connections = [Connection(plan, sandbox, on_death) for plan in plans]
        for plan in plans:
            emit(Note(f"starting the {plan.label} from {plan.origin}"))
        try:
            outcomes = await asyncio.gather(*(c.start() for c in connections), return_exceptions=True)
        except BaseException:  # cancelled (wall clock, signal): nothing may keep running
            await asyncio.shield(asyncio.gather(*(c.close() for c in connections), return_exceptions=True))
            raise
        started: list[Connection] = []
        tools: list[Tool] = []
        taken: set[str] = set()
        failures: list[str] = []
        for conn, outcome in zip(connections, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    await cls(connections, []).close()
                    raise outcome
                message = f"{conn.plan.label} failed to start: {outcome}"
                if conn.plan.optional:
                    emit(Note(f"{message}\n(optional: skipped, the run goes on)", level="warning"))
                else:
                    failures.append(message)
                continue
            started.append(conn)
            for mcp_tool in outcome:
                tools.append(McpTool.make(tool_name(conn.plan.name, mcp_tool.name, taken), conn.plan.name,
                                          mcp_tool, conn.call))
            emit(Note(f"{conn.plan.label}: {len(outcome)} tools"))
        servers_ = cls(started, tools)
        if failures:
            await servers_.close()
            raise McpError("\n".join(failures))
        return servers_

    def tools(self) -> list[Tool]:
        return list(self._tools)

    async def close(self) -> None:
        """Stop every server; afterwards no server process is left (host or container)."""
        await asyncio.gather(*(c.close() for c in self._connections), return_exceptions=True)


async def _repo_plans(entry: str, spec: McpServerSpec, sandbox: Sandbox,
                      emit: Callable[[Event], None]) -> list[ServerPlan]:
    try:
        text = await read_repo_config(sandbox)
        if text is None:
            emit(Note(f"mcp_servers.{entry}: the repo has no .mcp.json: no servers from it", level="warning"))
            return []
        plans, skipped = plans_from_repo(entry, spec, text)
    except RepoConfigError as exc:
        if spec.optional:
            emit(Note(f"mcp_servers.{entry}: {exc} (optional: skipped)", level="warning"))
            return []
        raise McpError(f"mcp_servers.{entry}: {exc}") from None
    for note in skipped:
        emit(Note(f"mcp_servers.{entry}: {note}", level="warning"))
    return plans
