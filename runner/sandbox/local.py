"""The `local` backend: tools run as plain host processes in the worktree.

For development on a machine without Docker. It is *not* a security boundary: a command can
read anything the user can. The helper still confines the file tools to the worktree, strips
the host environment down to a few harmless variables, and kills each command's process group
on timeout. The channel to the helper is signed as in docker (a forged reply written into one
of the runner's pipes ends the run as a sandbox error), and the runner makes itself
non-dumpable, so the commands - same uid - cannot open its fds or read its environment (the API
key) through /proc.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Mapping, Sequence

from runner.errors import SandboxError
from runner.procs import communicate
from runner.sandbox.base import HELPER_PATH, SETUP_TAIL, Sandbox, SetupStep, check_env, clear_setid_bits
from runner.sandbox.helper import PR_SET_DUMPABLE, _prctl

LOCAL_WARNING = (
    "--sandbox local runs the model's commands directly on this machine, "
    "with your user's rights and network; use it only for development"
)
_PASS_THROUGH = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")


def base_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A clean environment for sandboxed commands: no host secrets leak in by default."""
    env = {k: os.environ[k] for k in _PASS_THROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    home = os.environ.get("HOME", "/tmp")  # noqa: S108 - a fallback when HOME is unset
    env.update({"HOME": home, "TERM": "dumb", "PYTHONDONTWRITEBYTECODE": "1",
                "PAGER": "cat", "GIT_PAGER": "cat", "GIT_TERMINAL_PROMPT": "0"})
    env.update(extra)
    return env


class LocalSandbox(Sandbox):
    async def start(self) -> None:
        root = self.config.worktree
        if not root.is_dir():
            raise SandboxError(f"the worktree {root} does not exist")
        env = base_env(self.config.env)
        env["ASTRA_WORKSPACE"] = str(root)
        # Before anything of the model's runs as our uid: /proc/<runner>/{fd,environ,mem} closed.
        _prctl(PR_SET_DUMPABLE, 0)
        budget_end = time.monotonic() + self.config.setup_timeout_s  # for all setup commands together
        for command in self.config.setup:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                "/bin/bash", "-c", command, cwd=root, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )
            try:  # its time is up, or the run is cancelled: its process group is killed and reaped
                out, _ = await asyncio.wait_for(communicate(proc, group=True), max(1.0, budget_end - started))
            except TimeoutError:
                self.setup_log.append(SetupStep(command, None, round(time.monotonic() - started, 3), "", True))
                raise SandboxError(f"setup command timed out after {self.config.setup_timeout_s:g}s "
                                   f"(sandbox.setup_timeout): {command}") from None
            self.setup_log.append(SetupStep(command, proc.returncode, round(time.monotonic() - started, 3),
                                            out.decode("utf-8", "replace")[-SETUP_TAIL:]))
            if proc.returncode != 0:
                tail = out.decode("utf-8", "replace")[-2000:]
                raise SandboxError(f"setup command failed (exit {proc.returncode}): {command}\n{tail}")
        await self._start_helper(
            [sys.executable, "-I", "-S", str(HELPER_PATH), "--root", str(root), "--virtual", self.workspace,
             *self.helper_limits()], env
        )

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> asyncio.subprocess.Process:
        full_env = base_env(self.config.env)
        full_env.update(check_env(env or {}))
        return await asyncio.create_subprocess_exec(
            *argv, cwd=self.config.worktree, env=full_env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )

    async def close(self) -> None:
        if self._helper is not None:
            await self._helper.close()
            self._helper = None
            await clear_setid_bits(self.config.worktree)
