"""Stdio MCP servers: the process (on the host or in the sandbox) and the transport over its pipes.

The SDK's own `stdio_client` spawns a host subprocess itself, so it cannot drive a server that
`Sandbox.spawn` started inside the container (a `docker exec -i`). `process_transport` is the
same newline-delimited JSON-RPC transport over the pipes of any `asyncio.subprocess.Process`.

Killing a `docker exec` client does not kill what it started, so a server in the sandbox is
launched through a tiny python3 wrapper that makes it a process-group leader and prints its group
id on stderr; `ServerProcess.stop` kills that group from inside the sandbox (`sandbox.exec`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Literal

import anyio
from mcp.client._transport import TransportStreams
from mcp.shared.message import SessionMessage
from mcp_types import jsonrpc_message_adapter

from runner.sandbox.base import Sandbox

STDERR_TAIL = 4000
"""Bytes of a server's stderr kept for error messages."""
MAX_LINE = 64 * 1024 * 1024
"""A JSON-RPC line longer than this ends the connection (a runaway server)."""
READ_CHUNK = 65536
EXIT_GRACE_S = 2.0
"""How long a server may take to exit by itself once its stdin is closed (the MCP shutdown)."""
HOST_ENV_KEEP = ("PATH", "HOME", "LANG")

_PGID_MARK = re.compile(rb"^astra-mcp-pgid (\d+)$")
# Runs in the sandbox before the server: own process group (so it can be killed whole from
# inside), report the group id, then become the server.
_WRAPPER = r"""
import os, sys
try:
    os.setsid()
except OSError:
    pass
os.write(2, b"astra-mcp-pgid %d\n" % os.getpgid(0))
try:
    os.execvp(sys.argv[1], sys.argv[1:])
except OSError as exc:
    os.write(2, ("cannot run %s: %s\n" % (sys.argv[1], exc.strerror)).encode())
    os._exit(127)
"""


def host_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A host server's environment: PATH, HOME and LANG from ours, then what its spec gives."""
    env = {k: os.environ[k] for k in HOST_ENV_KEEP if k in os.environ}
    env.update(extra)
    return env


class ServerProcess:
    """One stdio server process and what is needed to make sure it is gone."""

    def __init__(self, proc: asyncio.subprocess.Process, where: Literal["host", "sandbox"],
                 sandbox: Sandbox | None) -> None:
        assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
        self.proc = proc
        self.where = where
        self._sandbox = sandbox
        self._tail = bytearray()
        self._pgid: int | None = proc.pid if where == "host" else None
        self._stopped = False
        self.killed = False
        """True when stop() had to kill it (its exit code then says nothing about the server)."""
        self._stderr_task = asyncio.create_task(self._read_stderr())

    @classmethod
    async def launch(cls, command: str, args: Sequence[str], env: Mapping[str, str], *,
                     where: Literal["host", "sandbox"], sandbox: Sandbox) -> ServerProcess:
        """Start the server. OSError / SandboxError when it cannot even be started."""
        if where == "host":
            proc = await asyncio.create_subprocess_exec(
                command, *args, env=host_env(env), start_new_session=True,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            return cls(proc, "host", None)
        proc = await sandbox.spawn(["python3", "-c", _WRAPPER, command, *args], dict(env))
        return cls(proc, "sandbox", sandbox)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        first = True
        with contextlib.suppress(Exception):
            while chunk := await self.proc.stderr.read(65536):
                if first and self.where == "sandbox":
                    first = False
                    line, _, chunk = chunk.partition(b"\n")
                    if m := _PGID_MARK.match(line.strip()):
                        self._pgid = int(m.group(1))
                    else:
                        chunk = line + b"\n" + chunk
                self._tail += chunk
                del self._tail[:-STDERR_TAIL]

    async def stderr_tail(self, wait: float = 1.0) -> str:
        """The last lines the server wrote on stderr (waits briefly for a dead server's last words)."""
        if not self._stderr_task.done():
            await asyncio.wait({self._stderr_task}, timeout=wait)
        return self._tail.decode("utf-8", "replace").strip()

    async def exit_code(self, wait: float = 1.0) -> int | None:
        """The exit code, waiting up to `wait` seconds; None while it runs.

        Polls instead of `proc.wait()`, which also waits for the pipes to close: a grandchild
        that inherited them would make an exited server look alive.
        """
        deadline = asyncio.get_running_loop().time() + wait
        while self.proc.returncode is None and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return self.proc.returncode

    async def stop(self) -> None:
        """Close stdin (the MCP shutdown), give the server a moment, then kill its whole group."""
        assert self.proc.stdin is not None
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
        await self.exit_code(EXIT_GRACE_S)
        self.killed = self.proc.returncode is None
        # Always: a server that exited may have left children in its group.
        if self.where == "host":
            self._kill_host_group()
        else:
            await self._kill_sandbox_group()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.exit_code(5)
        await self._drain_stdout()
        # Its last words stay readable (stderr_tail); a grandchild holding stderr open is not waited for.
        await asyncio.wait({self._stderr_task}, timeout=1.0)
        if not self._stderr_task.done():
            self._stderr_task.cancel()

    async def _drain_stdout(self, wait: float = 1.0) -> None:
        """Read what is left of its output to the end: a transport that stopped reading (a line
        over MAX_LINE) leaves the pipe paused, and a pipe never read to its end is never closed."""
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        with contextlib.suppress(Exception):
            async with asyncio.timeout(wait):
                while await stdout.read(READ_CHUNK):
                    pass

    def _kill_host_group(self) -> None:
        if self._pgid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, signal.SIGKILL)

    async def _kill_sandbox_group(self) -> None:
        if self._pgid is None or self._sandbox is None:
            return  # no group id reported: the container's removal ends the server
        g = self._pgid
        script = f"kill -TERM -- -{g} 2>/dev/null && sleep 0.3; kill -KILL -- -{g} 2>/dev/null; true"
        with contextlib.suppress(Exception):
            await self._sandbox.exec(script, timeout=10)


@asynccontextmanager
async def process_transport(
    proc: asyncio.subprocess.Process, on_eof: Callable[[str | None], None] = lambda why: None
) -> AsyncIterator[TransportStreams]:
    """MCP's stdio transport over the pipes of a process we started ourselves.

    `on_eof` is called when the transport stops reading the server's stdout: with None when the
    output ended (the server is gone or going), or with the reason when the transport gave up on
    it (a line longer than MAX_LINE).
    """
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)

    async def deliver(line: bytearray) -> None:
        if not line.strip().startswith(b"{"):
            return  # not JSON-RPC: a server printing to stdout by mistake
        item: SessionMessage | Exception
        try:
            item = SessionMessage(jsonrpc_message_adapter.validate_json(line, by_name=False))
        except ValueError as exc:
            item = exc
        await read_send.send(item)

    async def reader() -> None:
        # Linear in the output: the buffer grows in place, and a search for the end of the line
        # starts where the last one stopped (a long line arrives in many reads).
        buffer = bytearray()
        scanned = 0
        why: str | None = None
        try:
            async with read_send:
                while chunk := await stdout.read(READ_CHUNK):
                    buffer += chunk
                    while (end := buffer.find(b"\n", scanned)) >= 0 and end <= MAX_LINE:
                        line = buffer[:end]
                        del buffer[: end + 1]
                        scanned = 0
                        await deliver(line)
                    scanned = len(buffer) if end < 0 else end
                    if scanned > MAX_LINE:
                        why = f"sent a line over {MAX_LINE} bytes"
                        return
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass
        finally:
            on_eof(why)

    async def writer() -> None:
        try:
            async with write_recv:
                async for message in write_recv:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    stdin.write(data.encode() + b"\n")
                    await stdin.drain()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_send.aclose()  # the session sees the connection end, not a hung request

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        tg.start_soon(writer)
        try:
            yield read_recv, write_send
        finally:
            tg.cancel_scope.cancel()
            for stream in (read_recv, write_send):
                await stream.aclose()
