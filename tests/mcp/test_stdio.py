"""Connections in-process: the stdio transport (long lines, the line cap), host servers, and how a
server's death after start is told."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import runner.mcp.stdio as stdio
from runner.agent.events import Event, Note
from runner.mcp import McpServers
from runner.mcp.tools import McpArguments
from runner.redact import Redactor
from runner.sandbox.base import ToolFailure
from runner.task import McpServerSpec
from runner.tools import ToolContext
from tests.mcp.conftest import STDLIB_SERVER, HttpServer, assert_no_process_left, new_tag


class _TrickleOut:
    """A server's stdout that hands out its data in small reads, as a slow pipe does."""

    def __init__(self, data: bytes, piece: int) -> None:
        self._data, self._piece, self._at = data, piece, 0

    async def read(self, n: int) -> bytes:
        await asyncio.sleep(0)
        chunk = self._data[self._at:self._at + min(n, self._piece)]
        self._at += len(chunk)
        if not chunk:
            await asyncio.sleep(3600)  # the server is still there, just silent
        return chunk


class _Sink:
    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


class _FakeProcess:
    def __init__(self, data: bytes, piece: int) -> None:
        self.stdout = _TrickleOut(data, piece)
        self.stdin = _Sink()


def _notification(size: int) -> bytes:
    return (json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                        "params": {"level": "info", "data": "x" * size}}) + "\n").encode()


async def test_a_long_line_in_many_small_reads_takes_linear_time() -> None:
    """5 MB in 512-byte reads: re-joining and re-splitting the whole buffer per read is quadratic."""
    data = _notification(5_000_000) + _notification(10)
    started = time.monotonic()
    async with stdio.process_transport(_FakeProcess(data, 512)) as (read, _):  # type: ignore[arg-type]
        big = await read.receive()
        small = await read.receive()
    elapsed = time.monotonic() - started
    assert not isinstance(big, Exception) and not isinstance(small, Exception)
    assert len(big.message.params["data"]) == 5_000_000  # type: ignore[union-attr]
    assert small.message.params["data"] == "x" * 10  # type: ignore[union-attr]
    assert elapsed < 2, f"{elapsed:.1f}s for a 5 MB line"


async def test_a_line_over_the_cap_is_said_to_be_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio, "MAX_LINE", 100_000)
    reasons: list[str | None] = []
    async with stdio.process_transport(_FakeProcess(_notification(200_000), 4096),  # type: ignore[arg-type]
                                       reasons.append) as (read, _):
        with pytest.raises(Exception):  # noqa: B017 - the stream ends, whatever the SDK's stream says
            await read.receive()
    assert reasons == ["sent a line over 100000 bytes"]


async def _host_server(tag: str, events: list[Event]) -> McpServers:
    spec = McpServerSpec(command=sys.executable, args=[str(STDLIB_SERVER), "--tag", tag], where="host",
                         timeout=10)
    # where: host never touches the sandbox
    return await McpServers.start({"s": spec}, sandbox=None, emit=events.append,  # type: ignore[arg-type]
                                  redactor=Redactor())


def _warnings(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, Note) and e.level == "warning"]


async def test_a_server_sending_a_5mb_line_works_and_is_fast() -> None:
    tag = new_tag()
    events: list[Event] = []
    servers = await _host_server(tag, events)
    try:
        tools = {t.name: t for t in servers.tools()}
        ctx = ToolContext(None, 30)  # type: ignore[arg-type]
        started = time.monotonic()
        out = await tools["mcp__s__big"].run(McpArguments(arguments={"size": 5_000_000}), ctx)
        elapsed = time.monotonic() - started
        assert out == "x" * 5_000_000
        assert elapsed < 2, f"{elapsed:.1f}s for a 5 MB result"
        assert await tools["mcp__s__echo"].run(McpArguments(arguments={"text": "after"}), ctx) == "after"
    finally:
        await servers.close()
    assert not _warnings(events)
    assert_no_process_left(tag)


async def test_a_server_sending_a_line_over_the_cap_is_reported_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio, "MAX_LINE", 1_000_000)
    tag = new_tag()
    events: list[Event] = []
    servers = await _host_server(tag, events)
    try:
        tools = {t.name: t for t in servers.tools()}
        ctx = ToolContext(None, 30)  # type: ignore[arg-type]
        with pytest.raises(ToolFailure) as info:
            await tools["mcp__s__big"].run(McpArguments(arguments={"size": 2_000_000}), ctx)
        assert "sent a line over 1000000 bytes" in str(info.value)
        with pytest.raises(ToolFailure, match=r"not running .*sent a line over"):
            await tools["mcp__s__echo"].run(McpArguments(arguments={"text": "x"}), ctx)
    finally:
        await servers.close()
    deaths: list[Any] = _warnings(events)
    assert len(deaths) == 1 and "'s'" in deaths[0] and "sent a line over 1000000 bytes" in deaths[0], deaths
    assert "closed its output" not in deaths[0]
    assert_no_process_left(tag)


async def test_a_connection_failing_after_start_marks_the_server_dead_at_once(
    monkeypatch: pytest.MonkeyPatch, http_server: HttpServer
) -> None:
    """The transport under a ready session fails on its own (not in a call of ours): the server is
    dead from then on, a warning says so once, and its tools say why."""
    import runner.mcp.client as client

    real = client.streamable_http_client
    broken = asyncio.Event()

    @contextlib.asynccontextmanager
    async def failing_later(url: str, **kwargs: Any) -> AsyncIterator[Any]:
        async with real(url, **kwargs) as streams, anyio.create_task_group() as tg:
            async def fail() -> None:
                await broken.wait()
                raise ConnectionResetError("the network went away")

            tg.start_soon(fail)
            yield streams

    monkeypatch.setattr(client, "streamable_http_client", failing_later)
    events: list[Event] = []
    spec = McpServerSpec(url=http_server.url, headers={"Authorization": f"Bearer {http_server.token}"}, timeout=5)
    servers = await McpServers.start({"docs": spec}, sandbox=None, emit=events.append,  # type: ignore[arg-type]
                                     redactor=Redactor())
    try:
        tools = {t.name: t for t in servers.tools()}
        ctx = ToolContext(None, 30)  # type: ignore[arg-type]
        assert await tools["mcp__docs__echo"].run(McpArguments(arguments={"text": "up"}), ctx) == "up"
        broken.set()
        for _ in range(100):
            if _warnings(events):
                break
            await asyncio.sleep(0.02)
        deaths = _warnings(events)
        assert len(deaths) == 1 and "'docs'" in deaths[0] and "the network went away" in deaths[0], events
        with pytest.raises(ToolFailure, match=r"not running .*lost its connection"):
            await tools["mcp__docs__echo"].run(McpArguments(arguments={"text": "down"}), ctx)
    finally:
        await servers.close()
    assert len(_warnings(events)) == 1


async def test_close_does_not_leave_the_report_of_a_death_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server dies and close() comes while its death is still being reported (its last words
    are slow to come): close() ends that report instead of leaving it pending."""
    async def slow_tail(self: stdio.ServerProcess, wait: float = 1.0) -> str:
        await asyncio.sleep(60)
        return ""

    monkeypatch.setattr(stdio.ServerProcess, "stderr_tail", slow_tail)
    tag = new_tag()
    events: list[Event] = []
    servers = await _host_server(tag, events)
    conn = servers._connections[0]
    assert conn._process is not None
    os.kill(conn._process.proc.pid, signal.SIGKILL)
    for _ in range(500):
        if conn._report_task is not None:
            break
        await asyncio.sleep(0.01)
    report = conn._report_task
    assert report is not None and not report.done()
    started = time.monotonic()
    await servers.close()
    assert report.done() and time.monotonic() - started < 10
    assert not _warnings(events)  # the run was ending: nothing to tell
    assert_no_process_left(tag)
