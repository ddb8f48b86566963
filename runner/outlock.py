"""One writer per output directory: an exclusive lock held for a run's (or a batch's) whole life.

Two runs writing into one directory interleaved their trajectories into invalid JSONL and both
exited 0. Now the second one stops before it writes anything, with exit 2 and who holds the lock.
The lock is `flock` on OUT/.astra-run.lock: released by the kernel when the process ends,
however it ends, so a crashed run never leaves a stale lock behind. The file itself stays (it
holds the last holder's pid); removing it would let two runs lock two different files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from runner.errors import ConfigError, InfraError

LOCK_NAME = ".astra-run.lock"
_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EIO)


class OutputDirBusy(ConfigError):
    """Another astra-run is writing into this output directory (exit 2: nothing was run)."""


@contextlib.contextmanager
def hold_output_dir(out_dir: Path) -> Iterator[None]:
    path = Path(out_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        problem = f"output directory {out_dir}: cannot create {LOCK_NAME}: {exc.strerror or exc}"
        raise (InfraError(problem) if exc.errno in _DISK_ERRORS else ConfigError(problem)) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            raise OutputDirBusy(
                f"output directory {out_dir}: another astra-run{f' (pid {holder})' if holder else ''} is writing "
                "into it; wait for it to end, or give this run another --out") from None
        except OSError:  # a filesystem without locks (some network mounts): go on unguarded
            pass
        with contextlib.suppress(OSError):  # who holds it, for the message above; a full disk may refuse
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        if text.isdigit():
            return text
    return ""
