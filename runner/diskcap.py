"""A kernel-enforced total for the worktree (`sandbox.disk`): a loop-mounted ext4 file system.

Where the runner can - root on Linux, loop devices, `mkfs.ext4`, and (for `docker`) a daemon
that sees our mounts - the worktree is its own file system, sized to `sandbox.disk`: a sparse
image file in the run's cache directory, `mkfs.ext4` without a journal or reserved blocks,
mounted `loop,nosuid,nodev` at the worktree path before `git worktree add`. A command that
writes past it gets ENOSPC from the kernel, however it writes (`fallocate`, many files, mmap),
and the host disk never holds more than the image. Measuring it is one `statvfs`.

Elsewhere (not root, no loop devices, a daemon in another mount namespace such as
Docker-in-Docker) the total is measured by `du` every DISK_POLL_S (runner/sandbox/base.py):
"poll". `ASTRA_DISK_CAP=auto|kernel|poll` forces the choice (auto: kernel when possible).

Why the mount namespace matters: the daemon bind-mounts the worktree *path*. A daemon in another
mount namespace would bind the empty directory under our mount, and the model would see an
empty worktree. So the daemon must share ours (its pid from SO_PEERCRED on its unix socket,
`/proc/PID/ns/mnt` compared with ours), and as a guard the sandbox helper reports the file
system id (`statvfs.f_fsid`) of the root it sees, which must be the image's (base.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from runner.errors import SandboxError

IMAGE_NAME = "worktree.img"
"""The image file, in the run's directory of the cache (beside the worktree it is mounted at)."""
MIN_IMAGE_BYTES = 4 * 1024 * 1024
"""mkfs.ext4 needs some room: a smaller sandbox.disk gets this image, and the poll-like check of
the total (base.py) stops the run at the limit."""
_BLOCK = 4096
_MKFS_TRIES = 4
_TIMEOUT_S = 60.0
_FITTED: dict[int, int] = {}
"""sandbox.disk -> the image size LoopMount.create settled on (a batch's tasks share their limit)."""


def mountinfo_points() -> set[str]:
    """Every mount point in our mount namespace (octal escapes of /proc/self/mountinfo decoded)."""
    points: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) > 4:
                points.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return points


def is_mounted(path: Path) -> bool:
    return os.path.realpath(path) in mountinfo_points()


def mounts_under(root: Path) -> list[str]:
    """The mount points at or below `root` (for tests and cleanup: nothing may be left mounted)."""
    top = os.path.realpath(root)
    return sorted(p for p in mountinfo_points() if p == top or p.startswith(top + "/"))


# ---------------------------------------------------------------------------- can we?


def _docker_socket() -> str | None:
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return host.removeprefix("unix://") if host.startswith("unix://") else None


def daemon_mount_problem() -> str | None:
    """None when the Docker daemon shares this process's mount namespace; else why not."""
    path = _docker_socket()
    if path is None:
        return "the Docker daemon is reached over the network (DOCKER_HOST), so it cannot see our mounts"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(path)
            pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    except OSError as exc:
        return f"cannot ask the Docker socket {path} who serves it ({exc})"
    if pid <= 0:
        return "the Docker daemon runs in another PID namespace"
    try:
        theirs, ours = os.stat(f"/proc/{pid}/ns/mnt"), os.stat("/proc/self/ns/mnt")
    except OSError as exc:
        return f"cannot see the Docker daemon's mount namespace ({exc})"
    if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
        return "the Docker daemon runs in another mount namespace (Docker-in-Docker, a VM, a socket proxy)"
    return None


def kernel_cap_problem(backend: str) -> str | None:
    """None when a loop-mounted worktree can be used with `backend`; else why not (one line)."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if os.geteuid() != 0:
        return "astra-run is not root (a loop-mounted file system needs root)"
    if not os.path.exists("/dev/loop-control"):
        return "no loop devices (/dev/loop-control is missing)"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return daemon_mount_problem() if backend == "docker" else None


# ----------------------------------------------------------------------------- the mount


def _run(argv: list[str], what: str) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"{what}: {exc}") from None
    if proc.returncode != 0:
        raise SandboxError(f"{what}: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc.stdout


def _mkfs(image: Path, size: int, uid: int, gid: int) -> None:
    # A new file (inode), never the old one rewritten: a loop device still attached to the old
    # inode (its autoclear waits for a last opener, as it may under load) is reused by `mount -o
    # loop` for the same backing file, and its cache holds the old file system's blocks - a bad
    # superblock, or directories that fail their checksums (EBADMSG), mid-run.
    image.unlink(missing_ok=True)
    with open(image, "xb") as f:
        f.truncate(size)  # sparse: the host disk holds only what is written
    # One inode per block: as many files fit as `du` would allow (each takes a block), and the
    # bigger inode tables cost the host nothing (not written: lazy_itable_init, a sparse image).
    _run(["mkfs.ext4", "-q", "-F", "-b", str(_BLOCK), "-T", "default", "-i", str(_BLOCK), "-m", "0",
          "-O", "^has_journal",
          "-E", f"lazy_itable_init=1,nodiscard,root_owner={uid}:{gid}", str(image)],
         "making the worktree's file system")


@dataclass
class LoopMount:
    """The worktree's own file system: `image` mounted at `mountpoint`."""

    image: Path
    mountpoint: Path

    @classmethod
    def create(cls, image: Path, mountpoint: Path, limit: int, *, uid: int, gid: int) -> LoopMount:
        """Make the image and mount it at the (new, empty) `mountpoint`. SandboxError on a failure,
        with nothing left behind."""
        mount = cls(image, mountpoint)
        try:
            mountpoint.mkdir()  # new: a mount must hide nothing
            # ext4's own overhead (inode tables, bitmaps) is ~7%, in steps: measured, not guessed
            # The size found for this limit before: mkfs is deterministic, so one try suffices.
            size = _FITTED.get(limit) or max(MIN_IMAGE_BYTES, limit + limit // 14 + 1024 * 1024)
            fits: int | None = None  # the smallest size tried whose free space holds the limit
            for attempt in range(_MKFS_TRIES + 1):
                size = -(-size // _BLOCK) * _BLOCK
                _mkfs(image, size, uid, gid)
                mount.mount()
                free = statvfs_usage(mountpoint)[1]
                if attempt == _MKFS_TRIES or (free >= limit and (
                        size == MIN_IMAGE_BYTES or free - limit <= max(1024 * 1024, limit // 256))):
                    break
                mount.unmount()
                if free >= limit:
                    fits = size if fits is None else min(fits, size)
                # overhead grows with the image: scale by what this one gave (a few blocks more)
                size = max(MIN_IMAGE_BYTES, size * limit // max(free, 1) + (4 * _BLOCK if free < limit else 0))
                if attempt == _MKFS_TRIES - 1:  # the last try: the best that held it, or surely enough
                    size = fits if fits is not None else size + 2 * max(0, limit - free) + 16 * 1024 * 1024
            _FITTED[limit] = size
            (mountpoint / "lost+found").rmdir()
        except BaseException:
            mount.remove()
            raise
        return mount

    def mount(self) -> None:
        _run(["mount", "-o", "loop,nosuid,nodev", str(self.image), str(self.mountpoint)],
             "mounting the worktree's file system")

    @property
    def fsid(self) -> int:
        return os.statvfs(self.mountpoint).f_fsid

    def unmount(self) -> None:
        """Unmount (lazily when busy: nothing stays visible). The loop device goes with it (autoclear)."""
        if not is_mounted(self.mountpoint):
            return
        proc = subprocess.run(["umount", str(self.mountpoint)], capture_output=True, timeout=_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0 and is_mounted(self.mountpoint):
            _run(["umount", "-l", str(self.mountpoint)], "unmounting the worktree's file system")

    def remove(self) -> None:
        """Unmount and delete the image. Never raises for a file already gone."""
        with contextlib.suppress(SandboxError):
            self.unmount()
        self.image.unlink(missing_ok=True)

    def copy_out(self) -> None:
        """Turn the mount into a plain directory with the same files (a worktree kept for a person).
        When the copy fails, the image is unmounted and kept (SandboxError says where)."""
        tmp = self.mountpoint.with_name(self.mountpoint.name + ".copy")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            _run(["cp", "-a", "--", f"{self.mountpoint}/.", str(tmp)], "copying the kept worktree off its file system")
        except SandboxError as exc:  # a full host disk: the files stay in the image, unmounted all the same
            shutil.rmtree(tmp, ignore_errors=True)
            self.unmount()
            raise SandboxError(f"{exc}; its files are in {self.image} (mount -o loop,ro {self.image} "
                               f"{self.mountpoint} to read them)") from None
        self.unmount()
        os.rmdir(self.mountpoint)
        os.rename(tmp, self.mountpoint)
        self.image.unlink(missing_ok=True)


def statvfs_usage(path: Path) -> tuple[int, int, int]:
    """(bytes used, bytes free to write, inodes free) of the file system at `path`."""
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_bavail * st.f_frsize, st.f_favail


def reclaim(run_dir: Path) -> None:
    """For `astra-run cleanup` and a crashed run: unmount whatever is mounted in the run's directory
    (its worktree, or the one a resume was moving it onto) and delete its image."""
    for point in sorted(mounts_under(run_dir), reverse=True):
        LoopMount(run_dir / IMAGE_NAME, Path(point)).unmount()
    (run_dir / IMAGE_NAME).unlink(missing_ok=True)
