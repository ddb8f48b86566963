"""The sandbox interface every backend implements, and the client of the in-sandbox helper.

A backend decides *where* the helper runs (a host subprocess for `local`, `docker exec -i` for
`docker`) and how the sandbox is born and dies. Everything a tool does is one request to that
helper, so the tools, path checks and output caps are written once (`helper.py`) and behave the
same in every backend - which is what the conformance suite checks.

Two lanes of failure (DESIGN.md): `ToolFailure` is a tool-level problem the model is told about
(file not found, bad path, ambiguous edit); `SandboxError` means the sandbox itself is broken and
ends the run with exit 4.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from runner.diskcap import statvfs_usage
from runner.errors import LimitExceeded, SandboxError
from runner.procs import communicate
from runner.sandbox.docker_attach import AttachedProcess
from runner.sandbox.helper import KEY_BYTES, TO_HELPER, TO_HOST, ChannelError, seal, unseal

HELPER_PATH = Path(__file__).with_name("helper.py")
WORKSPACE = "/workspace"
"""The workspace root as the model sees it, in every backend."""
DEFAULT_OUTPUT_LIMIT = 30_000
"""Bytes of command output kept (head and tail halves) before the model sees it."""
DISK_POLL_S = 2.0
"""How often the worktree's size is measured while a command runs (and once after every call)."""
FULL_SLACK = 1024 * 1024
"""On its own file system, the worktree is full (a limit) when less than this is left to write."""
_HELPER_REPLY_GRACE_S = 15.0
"""How long past a command's own deadline the helper may take to answer before it is declared dead."""


class ToolFailure(Exception):
    """A tool call failed in a way the model should hear about (and may fix)."""


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_env(env: Mapping[str, str], *, one_line: bool = False) -> dict[str, str]:
    """Environment for a sandboxed process, checked: ToolFailure on a name that is not
    `[A-Za-z_][A-Za-z0-9_]*`, a value with a NUL, or (`one_line`: for an env file) a newline or
    CR. Names and values may come from the repository (`.mcp.json`): they must stay data."""
    bad = "\n\r\0" if one_line else "\0"
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ToolFailure(f"invalid environment variable name {name!r}")
        if not isinstance(value, str) or any(c in value for c in bad):
            raise ToolFailure(f"environment variable {name}: the value must be one line of text without NUL")
    return dict(env)


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one command run in the sandbox."""

    exit_code: int | None
    """None when the command was killed at its timeout."""
    output: str
    """stdout and stderr interleaved, decoded leniently, capped with head and tail kept."""
    timed_out: bool = False
    truncated: bool = False
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


SETUP_TAIL = 4000
"""Characters of each setup command's output kept for the trajectory and the console."""


@dataclass(frozen=True)
class SetupStep:
    """One setup command as it ran (shown on the console with -v and written to the trajectory)."""

    command: str
    exit_code: int | None
    duration_s: float
    output_tail: str
    timed_out: bool = False


@dataclass(frozen=True)
class SandboxConfig:
    """What a backend needs to know about the run, independent of the backend."""

    run_id: str
    worktree: Path
    """The host directory mounted (docker) or used (local) as the workspace."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for commands (sandbox.env, already expanded)."""
    setup: Sequence[str] = ()
    setup_timeout_s: float = 600.0
    """Wall clock for all setup commands together (the task's sandbox.setup_timeout)."""
    deadline_s: float = 1800.0
    """Wall clock of the whole run: the sandbox must not outlive it by much."""
    image: str = "astra-sandbox:latest"
    network: str = "none"
    cpus: float = 2.0
    memory: str = "4g"
    pids: int = 512
    git_dir: Path | None = None
    """The trusted git dir (docker mounts its objects read-only so git works inside). For a
    `git worktree`, either its private dir or the common dir: the objects are found through
    `git rev-parse --git-common-dir`."""
    git_objects: Path | None = None
    """The trusted objects directory, when the caller knows it (overrides the lookup via git_dir)."""
    git_objects_ready: Callable[[], Awaitable[None]] | None = None
    """Awaited before git is set up inside: git_objects may still be being written (its directory
    exists, so the container is created with it mounted meanwhile). Its error fails the start."""
    uid: int | None = None
    """The uid commands run as (docker); default: the invoking user's, so files stay theirs."""
    gid: int | None = None
    base_commit: str | None = None
    """The commit the worktree was made from; HEAD of the sandbox's private git dir. Default:
    HEAD of git_dir."""
    disk: str | None = None
    """sandbox.disk: the most the worktree may hold (`10g`); None: no limit."""
    disk_fsid: int | None = None
    """Set when the worktree is its own file system sized to `disk` (runner/diskcap.py): its
    `statvfs` f_fsid. The kernel then holds the total; measuring it is one statvfs; and every
    helper must report this id for its root, or the sandbox does not see the worktree."""

    @property
    def disk_bytes(self) -> int | None:
        return size_bytes(self.disk) if self.disk else None


def size_bytes(size: str) -> int:
    """`512m`, `10g`, `2048` (bytes) -> bytes (binary units, as docker reads memory sizes)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([bkmgBKMG]?)", size.strip())
    if not m:
        raise ValueError(f"{size!r} is not a size like 512m or 4g")
    return int(float(m.group(1)) * 1024 ** "bkmg".index((m.group(2) or "b").lower()))


async def disk_used(root: Path) -> int:
    """Bytes the files under `root` occupy on disk (allocated blocks: `fallocate` counts, holes
    of a sparse file do not), by host `du`: one file system, any depth, no symlink followed."""
    proc = await asyncio.create_subprocess_exec(
        "du", "-s", "-x", "-B1", str(root), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await communicate(proc)
    try:  # du exits 1 when a file vanished meanwhile: its total is still right
        return int(out.split()[0])
    except (IndexError, ValueError):
        raise SandboxError(f"cannot measure the size of the worktree {root}") from None


class HelperClient:
    """Talks signed JSON lines to one helper process; many requests may be in flight at once.

    The channel is part of the trust boundary (helper.py's docstring): a fresh key per helper,
    handed over as the first line, signs every line both ways. A line that does not verify, or a
    signed one that is not a well-formed reply, ends every pending and later request with a
    SandboxError naming it (exit 4) - the reader never dies of it and never acts on it.
    """

    def __init__(self, proc: asyncio.subprocess.Process | AttachedProcess, name: str) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self._proc = proc
        self._name = name
        self._key = secrets.token_bytes(KEY_BYTES)
        proc.stdin.write((json.dumps({"channel_key": self._key.hex()}) + "\n").encode())  # drained by the first send
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read_loop())
        self._stderr_tail = b""
        self._dead: str | None = None

    @property
    def pid(self) -> int:
        return self._proc.pid

    async def _read_loop(self) -> None:
        assert self._proc.stdout is not None
        broken: str | None = None
        try:
            while True:
                try:
                    line = await self._proc.stdout.readline()
                except ValueError:  # longer than the stream's limit: nothing the helper sends
                    raise ChannelError("a line longer than any reply") from None
                if not line:
                    break
                if not line.strip():
                    continue
                msg = unseal(self._key, TO_HOST, line)
                if msg.get("fatal"):
                    raise ChannelError(str(msg["fatal"]))
                fut = self._pending.pop(msg["id"], None) if msg.get("id") is not None else None
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except ChannelError as exc:
            broken = (f"the channel to the sandbox helper ({self._name}) carried {exc}; "
                      "something in the sandbox reached it, so no further reply can be trusted")
        finally:
            if broken is None and self._proc.stderr is not None:
                with contextlib.suppress(Exception):
                    self._stderr_tail = (await asyncio.wait_for(self._proc.stderr.read(), 1.0))[-2000:]
            self._dead = broken or f"the sandbox helper ({self._name}) stopped"
            if self._stderr_tail:
                self._dead += ": " + self._stderr_tail.decode("utf-8", "replace").strip()
            elif broken is None:
                self._dead += await self._exit_said()
            if broken is not None:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(SandboxError(self._dead))
            self._pending.clear()

    async def _exit_said(self) -> str:
        """How the helper's process ended, when it said nothing on stderr: its exit code, and for
        a SIGKILL (137: `docker exec` of a killed process) the likeliest cause."""
        try:
            code = await asyncio.wait_for(self._proc.wait(), 1.0)
        except (TimeoutError, Exception):
            return ""
        if code in (137, -9):
            return (f" (exit code {code}: killed by SIGKILL - most often the kernel's out-of-memory killer; "
                    "is sandbox.memory large enough?)")
        return f" (exit code {code})"

    async def request(self, op: str, *, timeout: float, **args: Any) -> dict[str, Any]:  # noqa: ASYNC109
        """Send one request and wait for its answer.

        `timeout` bounds the wait for the answer (for exec, the command's own deadline plus a
        grace). A cancelled wait (wall clock, SIGTERM) asks the helper to kill the command.
        """
        if self._dead:
            raise SandboxError(self._dead)
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            await self._send({"id": rid, "op": op, **args})
            msg = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._send({"id": next(self._ids), "op": "cancel", "target": rid}), 2)
            raise
        except TimeoutError:
            raise SandboxError(f"the sandbox helper did not answer a {op} request within {timeout:.0f}s") from None
        finally:
            self._pending.pop(rid, None)
        if not msg.get("ok"):
            raise ToolFailure(str(msg.get("error") or "unknown error"))
        result = msg.get("result")
        return result if isinstance(result, dict) else {}

    async def _send(self, msg: dict[str, Any]) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(seal(self._key, TO_HELPER, msg))
            await self._proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise SandboxError(self._dead or f"the sandbox helper ({self._name}) is gone: {exc}") from None

    async def close(self) -> None:
        """Close stdin (the helper kills what still runs and exits), then make sure it is gone."""
        if self._proc.stdin is not None:
            with contextlib.suppress(Exception):
                self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 3)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


async def clear_setid_bits(root: Path) -> None:
    """Clear every setuid/setgid bit under `root` (the host worktree), from the host.

    Run when a sandbox closes, after its last process is gone: the agent phase (a root job's
    agent is uid 0 inside) and verify may leave a setuid-root file in a worktree that lives on
    on the host (`--keep`). Host `find` walks any depth and follows no symlink; the host user
    owns every file the sandbox could set a bit on (or is root).
    """
    proc = await asyncio.create_subprocess_exec(
        "find", str(root), "-xdev", "!", "-type", "l", "-perm", "/6000", "-exec", "chmod", "ug-s", "{}", "+",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await communicate(proc)
    if proc.returncode != 0 and root.exists():
        raise SandboxError(f"could not clear setuid/setgid bits in {root}: {err.decode(errors='replace')[-500:]}")


class Sandbox(ABC):
    """Where the model's tools run. Use as `async with backend(config) as sandbox:`."""

    workspace = WORKSPACE

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._helper: HelperClient | None = None
        self.setup_log: list[SetupStep] = []
        """Each setup command that ran, in order (also when one failed)."""

    # -- lifecycle: what a backend implements

    @abstractmethod
    async def start(self) -> None:
        """Create the sandbox, run setup (as root, network on), cut the network, start the helper."""

    @abstractmethod
    async def close(self) -> None:
        """Stop everything the sandbox started. Safe to call twice and after a failed start."""

    @abstractmethod
    async def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> asyncio.subprocess.Process:
        """Start a long-lived process in the sandbox with stdin/stdout piped (MCP stdio servers)."""

    async def pause(self) -> None:  # noqa: B027 - a no-op unless the backend can freeze
        """Freeze every process of the sandbox (while host git reads the worktree); `resume`
        thaws them. A no-op where the backend cannot freeze (local)."""

    async def resume(self) -> None:  # noqa: B027
        """Undo `pause`."""

    async def git_ready(self) -> None:  # noqa: B027 - nothing to wait for unless the backend sets git up late
        """Wait until git inside the sandbox is set up (docker: after its objects are written);
        every command already waits for it. Raises what made that setup fail."""

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- what tools use: every call is one helper request

    @property
    def helper(self) -> HelperClient:
        if self._helper is None:
            raise SandboxError("the sandbox is not started")
        return self._helper

    async def exec(
        self,
        command: str,
        *,
        timeout: float,  # noqa: ASYNC109 - the command's own deadline, enforced in the sandbox
        env: Mapping[str, str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        """Run `bash -c command` at the workspace root in a new process group, stdin closed.

        On timeout the whole process group is killed; `exit_code` is then None.
        """
        call = asyncio.ensure_future(self.helper.request(
            "exec",
            timeout=timeout + _HELPER_REPLY_GRACE_S,
            command=command,
            timeout_s=timeout,
            limit=output_limit,
            env=check_env(env or {}),
        ))
        try:
            while self.config.disk_bytes is not None and not call.done():
                await asyncio.wait({call}, timeout=DISK_POLL_S)
                if not call.done():
                    await self.check_disk()  # a command filling the disk is stopped while it runs
            r = await call
        finally:
            if not call.done():
                call.cancel()  # the helper is asked to kill the command (see request)
                with contextlib.suppress(BaseException):
                    await call
        await self.check_disk()
        return ExecResult(
            exit_code=r.get("exit_code"),
            output=str(r.get("output", "")),
            timed_out=bool(r.get("timed_out")),
            truncated=bool(r.get("truncated")),
            duration_s=float(r.get("duration_s", 0.0)),
        )

    async def file_op(self, op: str, **args: Any) -> dict[str, Any]:
        """read, write, edit, ls, glob, grep, stat - see helper.py for each op's arguments."""
        result = await self.helper.request(op, timeout=120.0, **args)
        if op in ("write", "edit"):
            await self.check_disk()
        return result

    async def check_disk(self) -> None:
        """LimitExceeded (exit 3, the patch is still taken) when the worktree holds more than
        sandbox.disk - or, on its own file system (`disk_fsid`), when that is full (the model's
        writes get ENOSPC from then on). Each single file is also capped by the kernel at that
        size (RLIMIT_FSIZE, set by the helper). Without its own file system the total is a `du`
        of the tree, which no kernel limit holds (docs/security.md)."""
        limit = self.config.disk_bytes
        if limit is None:
            return
        if self.config.disk_fsid is not None:
            used, free, inodes = statvfs_usage(self.config.worktree)
            if free < min(FULL_SLACK, limit // 16) or inodes == 0:
                raise LimitExceeded(f"disk: the worktree's file system is full ({used / 2**20:.0f} MiB"
                                    f"{'' if inodes else ', no inode left'}; sandbox.disk is {self.config.disk})",
                                    limit="disk", value=self.config.disk)
        else:
            used = await disk_used(self.config.worktree)
        if used > limit:
            raise LimitExceeded(f"disk: the worktree holds {used / 2**20:.0f} MiB, over sandbox.disk "
                                f"({self.config.disk})", limit="disk", value=self.config.disk)

    def check_root(self, info: Mapping[str, Any]) -> None:
        """SandboxError unless the helper's root is the worktree's own file system (when it has one):
        a daemon that does not see our mount would show the model an empty directory."""
        expected = self.config.disk_fsid
        if expected is not None and info.get("fsid") != expected:
            raise SandboxError(
                f"the sandbox does not see the worktree's file system (file system id {info.get('fsid')}, "
                f"expected {expected}): the Docker daemon does not share this machine's mounts; "
                "set ASTRA_DISK_CAP=poll")

    def helper_limits(self) -> list[str]:
        """Helper arguments that set the kernel's limits for every command it runs."""
        limit = self.config.disk_bytes
        return ["--max-file-bytes", str(limit)] if limit is not None else []

    async def _start_helper(
        self, argv: Sequence[str], env: Mapping[str, str] | None, name: str | None = None
    ) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(env) if env is not None else None,
                limit=64 * 1024 * 1024,
            )
        except OSError as exc:
            raise SandboxError(f"cannot start the sandbox helper: {exc}") from None
        await self._connect_helper(proc, name)

    async def _connect_helper(self, proc: asyncio.subprocess.Process | AttachedProcess, name: str | None) -> None:
        """Hand the helper its channel key and wait for its first answer (`helper_info`)."""
        self._helper = HelperClient(proc, name or type(self).__name__)
        try:
            info = await self._helper.request("ping", timeout=30.0)
        except ToolFailure as exc:
            raise SandboxError(f"the sandbox helper failed to start: {exc}") from None
        self.helper_info = info
        self.check_root(info)
