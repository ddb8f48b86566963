"""Small process helpers shared by the workspace reaper, the sandbox reaper and the sandbox's host commands."""

from __future__ import annotations

import asyncio
import contextlib
import os


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one we may not signal counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def communicate(proc: asyncio.subprocess.Process, data: bytes | None = None) -> tuple[bytes, bytes]:
    """`proc.communicate(data)`; when that is cancelled (a limit, a signal, a sandbox closing
    under it) the process is killed and reaped first. Left running, it would outlive the run,
    and its pipes would be closed by the garbage collector after the event loop is gone."""
    try:
        return await proc.communicate(data)
    except BaseException:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
        raise
