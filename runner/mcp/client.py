"""One connection to one MCP server, with the mcp 2.x SDK's `ClientSession`.

The session (and the transport under it) lives in a task of its own: anyio task groups and cancel
scopes must be left in the task that entered them, and the run closes its servers from another
task (its `finally` is shielded). Calls come from the agent's task; the session is safe for that.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx2
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from runner.mcp.stdio import ServerProcess, process_transport
from runner.sandbox.base import Sandbox, ToolFailure

CLOSE_TIMEOUT_S = 15.0
MAX_TOOL_PAGES = 50


@dataclass(frozen=True)
class ServerPlan:
    """A server to start, resolved from the task (host variables expanded) or from .mcp.json."""

    name: str
    """The server's name in tool names (`mcp__<name>__<tool>`)."""
    timeout: float
    optional: bool = False
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    where: Literal["sandbox", "host"] = "sandbox"
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    origin: str = "the task"

    @property
    def label(self) -> str:
        if self.url is not None:
            return f"MCP server {self.name!r} ({self.url})"
        return f"MCP server {self.name!r} ({self.command}, in the {self.where})"


class StartFailed(Exception):
    """The server could not be started; the message says why (and its stderr tail)."""


class Connection:
    def __init__(self, plan: ServerPlan, sandbox: Sandbox, on_death: Callable[[str], None]) -> None:
        self.plan = plan
        self._sandbox = sandbox
        self._on_death = on_death
        self._session: ClientSession | None = None
        self._process: ServerProcess | None = None
        self._stop = asyncio.Event()
        self._ready: asyncio.Future[list[types.Tool]] = asyncio.get_running_loop().create_future()
        self._owner: asyncio.Task[None] | None = None
        self._closing = False
        self._report_task: asyncio.Task[None] | None = None
        self.dead: str | None = None
        """Why the server is gone, once it died during the run."""

    async def start(self) -> list[types.Tool]:
        """Connect, initialize and list the tools. Raises StartFailed."""
        self._owner = asyncio.create_task(self._own(), name=f"mcp:{self.plan.name}")
        try:
            return await asyncio.shield(self._ready)
        except BaseException:
            await self.close()
            raise

    async def _own(self) -> None:
        plan = self.plan
        try:
            async with AsyncExitStack() as stack:
                if plan.url is not None:
                    client = _http_client(plan.url, plan.headers)
                    await stack.enter_async_context(client)
                    streams = await stack.enter_async_context(streamable_http_client(plan.url, http_client=client))
                else:
                    assert plan.command is not None
                    try:
                        self._process = await ServerProcess.launch(
                            plan.command, plan.args, plan.env, where=plan.where, sandbox=self._sandbox)
                    except Exception as exc:
                        raise StartFailed(f"cannot start {plan.command}: {exc}") from None
                    stack.push_async_callback(self._process.stop)
                    streams = await stack.enter_async_context(process_transport(self._process.proc, self._eof))
                session = await stack.enter_async_context(ClientSession(*streams))
                async with asyncio.timeout(plan.timeout):
                    await session.initialize()
                    tools = await _list_tools(session)
                self._session = session
                self._ready.set_result(tools)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(await self._start_failure(exc))
            elif isinstance(exc, Exception) and not self._closing and self.dead is None:
                # the connection failed after start (an HTTP server went away, the SDK's reader
                # broke): the server is gone for the rest of the run, and the run is told so
                self._session = None
                self.dead = f"lost its connection ({_describe(exc)})"
                await self._report_death(self.dead)
            if not isinstance(exc, Exception):
                raise

    async def _start_failure(self, exc: BaseException) -> StartFailed:
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]  # from the SDK's task groups
        if isinstance(exc, StartFailed):
            why = str(exc)
        elif isinstance(exc, TimeoutError):
            why = f"no answer to initialize / tools/list within {self.plan.timeout:g}s"
        elif isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED:
            why = "the connection closed during start-up"
        else:
            why = _describe(exc)
        if self._process is not None:
            code = await self._process.exit_code(wait=0.5)
            if code is not None and not self._process.killed:
                why += f" (exit code {code})"
            tail = await self._process.stderr_tail()
            why += f"\nits stderr ends with:\n{tail[-2000:]}" if tail else "\n(nothing on its stderr)"
        return StartFailed(why)

    def _eof(self, why: str | None) -> None:
        """The transport stopped reading the server's output: `why`, or None when it ended."""
        if self._closing or self.dead is not None or not self._ready.done():
            return
        self.dead = why or "its output ended"
        self._report_task = asyncio.get_running_loop().create_task(self._report_death(why))

    async def _report_death(self, why: str | None = None) -> None:
        """Say once, as a warning, why the server is gone (`why`, else its exit code and stderr)."""
        if why is None:
            why = "closed its connection"
            if self._process is not None:
                code = await self._process.exit_code()
                why = f"exited with code {code}" if code is not None else "closed its output"
        # a server that is still running (we gave up on it) has no last words to wait for
        if self._process is not None and (tail := await self._process.stderr_tail(wait=1.0 if why is None else 0)):
            why += f"; its stderr ends with: {tail[-1000:]}"
        self.dead = why
        if not self._closing:
            self._on_death(f"{self.plan.label} {why}; its tools now return errors and the run goes on")

    async def call(self, tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """One tools/call with the server's timeout. Every failure is a ToolFailure."""
        plan = self.plan
        if self.dead is not None or self._session is None:
            raise ToolFailure(f"the MCP server {plan.name} is not running ({self.dead or 'closed'})")
        try:
            async with asyncio.timeout(plan.timeout + 5):  # the SDK's own timeout comes first
                return await self._session.call_tool(tool, arguments, read_timeout_seconds=plan.timeout)
        except TimeoutError:
            raise ToolFailure(f"{tool} on MCP server {plan.name}: no answer within {plan.timeout:g}s") from None
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise ToolFailure(
                    f"{tool} on MCP server {plan.name}: no answer within {plan.timeout:g}s (cancelled)") from None
            if exc.code == CONNECTION_CLOSED:
                if self.dead is None and not self._closing:  # HTTP: no process to watch
                    self.dead = "closed its connection"
                    await self._report_death()
                else:  # a stdio server: its death is being recorded; the message says why
                    await asyncio.sleep(0.05)
                    if self._report_task is not None:
                        await asyncio.wait({self._report_task}, timeout=3)
                raise ToolFailure(f"the MCP server {plan.name} is gone: {self.dead or 'connection closed'}") from None
            raise ToolFailure(f"{tool} on MCP server {plan.name} failed: {exc.message}") from None
        except ToolFailure:
            raise
        except Exception as exc:
            raise ToolFailure(f"{tool} on MCP server {plan.name} failed: {_describe(exc)}") from None

    async def close(self) -> None:
        """Leave the session, stop the server (its whole process group). Idempotent."""
        self._closing = True
        self._session = None  # later calls: "not running (closed)"
        self._stop.set()
        report = self._report_task
        if report is not None and not report.done():
            report.cancel()  # the run is ending: nobody is left to tell
            await asyncio.wait({report}, timeout=5)
        owner = self._owner
        if owner is None:
            return
        await asyncio.wait({owner}, timeout=CLOSE_TIMEOUT_S)
        if not owner.done():
            owner.cancel()
            await asyncio.wait({owner}, timeout=5)
        if owner.done() and not owner.cancelled():
            owner.exception()  # retrieved: it was reported (start failure) or does not matter now
        if self._process is not None:  # in case the owner could not finish its own cleanup
            await self._process.stop()


async def _list_tools(session: ClientSession) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _http_client(url: str, headers: dict[str, str]) -> httpx2.AsyncClient:
    """The SDK's default timeouts, our headers. A loopback server is reached directly, never
    through a proxy from HTTP(S)_PROXY (which CI machines often set without NO_PROXY)."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return httpx2.AsyncClient(headers=dict(headers), trust_env=not loopback,
                              timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    if isinstance(exc, MCPError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
