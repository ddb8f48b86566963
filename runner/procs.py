"""Small process helpers shared by the workspace reaper, the sandbox reaper and the sandbox's host commands."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal


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


async def communicate(
    proc: asyncio.subprocess.Process, data: bytes | None = None, *, group: bool = False
) -> tuple[bytes, bytes]:
    """`proc.communicate(data)`; when that is cancelled (a limit, a signal, a sandbox closing
    under it) the process is killed and reaped first - with its whole process group when
    `group` (one started with `start_new_session`). Left running, it would outlive the run, and
    its pipes would be closed by the garbage collector after the event loop is gone."""
    try:
        return await proc.communicate(data)
    except BaseException:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            await asyncio.shield(proc.wait())
        raise
