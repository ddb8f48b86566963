"""From the task's `mcp_servers` (and, when it opts in, the repo's `.mcp.json`) to servers to start."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from runner.errors import ConfigError
from runner.mcp.client import ServerPlan
from runner.redact import expand_host_vars
from runner.sandbox.base import Sandbox
from runner.task import McpServerSpec
from runner.yamlio import format_loc, load_json

MCP_JSON = ".mcp.json"
MCP_JSON_LIMIT = 1024 * 1024
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")


class RepoConfigError(Exception):
    """The repo's .mcp.json cannot be used (missing, unreadable or malformed)."""


def server_name(name: str) -> str:
    """A server's name as it appears in tool names: invalid characters become `_`."""
    return _INVALID.sub("_", name) or "_"


def plan_from_task(name: str, spec: McpServerSpec) -> tuple[ServerPlan, list[str]]:
    """A task's server with `${NAME}` host variables expanded; also returns the host values (to redact)."""
    env, env_values = expand_host_vars(dict(spec.env), f"mcp_servers.{name}.env")
    headers, header_values = expand_host_vars(dict(spec.headers), f"mcp_servers.{name}.headers")
    plan = ServerPlan(
        name=server_name(name), timeout=spec.timeout, optional=spec.optional,
        command=spec.command, args=tuple(spec.args), env=env,
        where="host" if spec.url is not None else (spec.where or "sandbox"),
        url=spec.url, headers=headers,
    )
    return plan, env_values + header_values


async def read_repo_config(sandbox: Sandbox) -> str | None:
    """The text of the workspace's .mcp.json, read *inside* the sandbox (it may be a symlink to
    anywhere: the host never opens it). None when there is none."""
    res = await sandbox.exec(f"test -f {MCP_JSON} && cat -- {MCP_JSON}", timeout=30,
                             output_limit=MCP_JSON_LIMIT)
    if res.exit_code != 0:
        return None
    if res.truncated:
        raise RepoConfigError(f"{MCP_JSON} is larger than {MCP_JSON_LIMIT} bytes")
    return res.output


def plans_from_repo(entry: str, spec: McpServerSpec, text: str) -> tuple[list[ServerPlan], list[str]]:
    """The stdio servers of a `.mcp.json` (Claude Code's format), all in the sandbox, named
    `<entry>_<name>`. Nothing is expanded: `${NAME}` stays as written (the file is untrusted and
    must not pull host values into the sandbox). Returns the plans and notes on what was skipped,
    each `.mcp.json:LINE: field: problem`. The file is read with the task file's limits (nesting,
    values; a duplicate key is refused: JSON would silently keep the last one)."""
    try:
        data, positions, problems = load_json(text, MCP_JSON)
    except ConfigError as exc:
        raise RepoConfigError(str(exc)) from None
    if problems:
        raise RepoConfigError("; ".join(str(p) for p in problems))
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise RepoConfigError(f'{MCP_JSON}:{positions.line(("mcpServers",))}: mcpServers: there is no '
                              '"mcpServers" object')
    plans: list[ServerPlan] = []
    skipped: list[str] = []
    for key, raw in servers.items():
        try:
            plan = _repo_plan(entry, spec, str(key), raw)
        except _Bad as exc:
            loc = ("mcpServers", str(key), *exc.loc)
            skipped.append(f"{MCP_JSON}:{positions.line(loc)}: {format_loc(loc)}: server {key!r} skipped: {exc}")
            continue
        plans.append(plan)
    return plans, skipped


class _Bad(Exception):
    """One server of .mcp.json cannot be used; `loc` is the field under the server."""

    def __init__(self, message: str, *loc: str) -> None:
        super().__init__(message)
        self.loc = loc


def _repo_plan(entry: str, spec: McpServerSpec, key: str, raw: Any) -> ServerPlan:
    if not isinstance(raw, Mapping):
        raise _Bad("not an object")
    kind = raw.get("type", "stdio")
    if kind != "stdio" or "url" in raw:
        raise _Bad(f"only stdio servers are taken from the repo (this one is {kind!r}): "
                   "an HTTP server would be reached from the host", "type" if "type" in raw else "url")
    command = raw.get("command")
    args = raw.get("args", [])
    env = raw.get("env", {})
    if not isinstance(command, str) or not command.strip():
        raise _Bad('"command" must be a non-empty string', "command")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise _Bad('"args" must be a list of strings', "args")
    if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise _Bad('"env" must map strings to strings', "env")
    return ServerPlan(
        name=server_name(f"{entry}_{key}"), timeout=spec.timeout, optional=spec.optional,
        command=command, args=tuple(args), env=dict(env), where="sandbox", origin=MCP_JSON,
    )
