"""The agent's helper as the container's own process, spoken to over the attach stream.

Without setup commands a run's container needs no root phase, so its process (PID 1: no
`docker-init`, no `sleep`) *is* the agent's helper, started by the container's start as the
invoking uid:gid with every capability dropped, and the host speaks the signed channel over the
container's stdin/stdout through the daemon's attach API. That saves the per-run `docker exec`
(a CLI process, an exec create/start and a runtime exec in the daemon: ~60-250 ms of wall time
and a share of the two cores a batch runs on) and the separate start of a `sleep`.

What holds as on the exec path (helper.py, docker.py):
- the channel: the same HMAC-signed lines under a per-run key sent as the first line, before any
  command can run (the helper reads it before it starts anything). The helper is non-dumpable
  from its first instruction, and being PID 1 nothing dumpable holds its stdin or stdout - no
  `docker-init` whose /proc/1/fd another process of the same uid could open;
- the container's lifetime: the helper exits when its stdin ends (the host closed it, or the
  runner died and the daemon closed it: StdinOnce) and at `--deadline-s` (the run's wall clock
  plus a margin, what PID 1's `sleep` bounded); PID 1 exiting ends every process in the
  container, and auto_remove removes it;
- orphans: PID 1 is everybody's reaper, as the subreaper helper is on the exec path; its sweep
  kills and reaps what calls leave behind.

The attach stream is attached *before* the container starts (nothing it writes is lost) and its
frames (an 8-byte header: stream 1 stdout / 2 stderr, then a big-endian length) are split here
into two StreamReaders, so `HelperClient` reads it as it reads a `docker exec -i` subprocess.
Only for daemons reached over a plain socket (unix://, tcp:// without TLS): anything else uses
the exec path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import struct
import threading
from typing import Any

_HEADER = struct.Struct(">BxxxL")


def attachable(client: Any) -> bool:
    """Whether the SDK client's attach socket is a plain socket asyncio can own."""
    base = str(getattr(getattr(client, "api", client), "base_url", ""))
    return base.startswith(("http+docker://localhost", "http+docker://localunixsocket", "http://"))


def attach_socket(client: Any, cid: str) -> tuple[socket.socket, Any]:
    """The container's stdin/stdout/stderr as one raw socket (blocking call, before start), and
    what must stay referenced as long as it is used (the SDK's socket wrapper and its HTTP
    response: collecting them would close it)."""
    raw = client.api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    sock = getattr(raw, "_sock", raw)
    if not isinstance(sock, socket.socket):
        raise TypeError(f"the attach stream is a {type(raw).__name__}, not a socket")
    return sock, raw


def watch_exit(client: Any, cid: str, limit_s: float) -> concurrent.futures.Future[int | None]:
    """The container's exit code, once it exits (None: not known). Call before the start: the
    daemon has registered the wait once it answers with its headers (it sends them at once), so
    an exit right after the start is not missed; the body comes at the exit, read in a thread
    of its own (not the executor's: it lasts the run). Bounded by `limit_s`."""
    api = client.api
    response = api._post(api._url("/containers/{0}/wait", cid), params={"condition": "next-exit"},
                         stream=True, timeout=limit_s)
    api._raise_for_status(response)
    done: concurrent.futures.Future[int | None] = concurrent.futures.Future()

    def read() -> None:
        code = None
        with contextlib.suppress(Exception):
            status = response.json().get("StatusCode")
            code = status if isinstance(status, int) else None
        with contextlib.suppress(Exception):
            response.close()
        # The waiter may have given up (cancelled: the run ended first); nothing is then owed.
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            done.set_result(code)

    threading.Thread(target=read, name="astra-docker-wait", daemon=True).start()
    return done


class _Stdin:
    """The writing half, with the StreamWriter calls HelperClient makes (write, drain, close)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        """End the container's stdin (a half-close: its answers still come back)."""
        with contextlib.suppress(OSError, RuntimeError):
            if self._writer.can_write_eof():
                self._writer.write_eof()


class AttachedProcess:
    """The container's process as `asyncio.subprocess.Process` looks to HelperClient."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, keep: Any,
                 container_id: str, exit_code: concurrent.futures.Future[int | None] | None = None) -> None:
        self.stdin = _Stdin(writer)
        self.stdout = asyncio.StreamReader(limit=64 * 1024 * 1024)
        self.stderr = asyncio.StreamReader()
        self.pid = 1  # inside the container
        self.returncode: int | None = None
        self._killed = False
        self.container_id = container_id
        self._writer = writer
        self._keep: Any = keep
        self._exit_code = exit_code
        self._demux = asyncio.ensure_future(self._split(reader))

    @classmethod
    async def open(cls, attached: tuple[socket.socket, Any], container_id: str,
                   exit_code: concurrent.futures.Future[int | None] | None = None) -> AttachedProcess:
        sock, keep = attached
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        return cls(reader, writer, keep, container_id, exit_code)

    async def _split(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(_HEADER.size)
                kind, size = _HEADER.unpack(header)
                data = await reader.readexactly(size) if size else b""
                (self.stderr if kind == 2 else self.stdout).feed_data(data)
        except (asyncio.IncompleteReadError, OSError):
            pass  # the stream ended: the container's process exited, or the connection dropped
        finally:  # never awaits: a cancelled task (the loop closing) must end at once
            self.stdout.feed_eof()
            self.stderr.feed_eof()
            self._writer.close()
            self._keep = None

    @property
    def exited(self) -> bool:
        """The stream ended by itself (the container's process exited), not by `kill`."""
        return self._demux.done() and not self._killed

    async def wait(self) -> int:
        """The stream's end; then the exit code the daemon reports (an OOM kill: 137), briefly
        waited for (a hung daemon must not hold the run: 0 then, as for a clean exit)."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._demux)
        if self.returncode is None and self._exit_code is not None and not self._killed:
            with contextlib.suppress(Exception):
                self.returncode = await asyncio.wait_for(asyncio.wrap_future(self._exit_code), 0.5)
        if self.returncode is None:
            self.returncode = -9 if self._killed else 0
        return self.returncode

    def kill(self) -> None:
        """Drop the connection: the daemon then closes the process's stdin and the helper exits
        (the container itself is removed by the sandbox's close)."""
        if self._demux.done():
            raise ProcessLookupError
        self._killed = True
        self._writer.close()
