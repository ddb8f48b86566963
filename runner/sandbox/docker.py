"""The `docker` backend: one hardened container per run, every tool call through one helper.

Lifecycle of a sandbox (DESIGN.md, "Decisions"):

1. reap the leftovers of dead runs; check the daemon and the image (never pulled: a missing image
   names the build command);
2. create the container. Without setup commands its process (PID 1) is the agent's helper,
   attached before the start and spoken to over the attach stream (docker_attach.py): steps
   3-5 do not happen, and the container ends with the helper's stdin or at the run's deadline
   plus a margin. With setup, PID 1 is `sleep <run deadline + margin>` under docker's init, so a
   container outlives a crashed runner by minutes at most (and removes itself: auto_remove);
   `cap_drop=ALL`, `no-new-privileges`, cpu/memory/pids limits, the worktree at /workspace,
   the helper and the base history's object store read-only (every mount source in the cache,
   none elsewhere on the runner: docker_files.py), no Docker socket, an environment built
   from nothing but SandboxConfig.env and a few harmless defaults;
3. setup commands (if any) through a root helper, with the network and the host CA bundle;
   then every process setup left is killed (`quiesce`: all but PID 1 and its sleep, checked
   again with `docker top`), setuid/setgid bits in the worktree are cleared, and what setup made
   there is handed back to the invoking user;
4. the network is cut (disconnected from every network) unless the task asks for `bridge`;
5. the agent helper starts as the invoking uid:gid via `docker exec -i` with no capabilities;
6. (both paths) git inside - a container-private git dir over the base commit's object store
   (docker_git.py) - is set up beside the model's first call: a first run on a commit may still
   be writing that store. Every command (`exec`, `spawn`) waits for it; file tools need no git.

This module is that lifecycle - the `DockerSandbox` class and the state of one run. What it
stands on lives beside it, each one idea: docker_engine.py (the SDK client, the `_control`
retry wrapper, labels, reaping leftovers, container names, the host CLI's env), docker_spec.py
(what the container is created as: capabilities, mounts, limits, environment) and docker_git.py
(why host git never reads what the sandbox wrote). Their public names are re-exported here.

The host `docker` CLI always runs with `cli_env()` and nothing else: values for the container
(setup's CA variables, `spawn`'s env from a possibly hostile `.mcp.json`) go in a 0600
`--env-file` in a private directory. Control-plane calls (create, start, inspect, disconnect,
pause, remove) go through `_control`: a timeout each, bounded jittered retries on 5xx/timeouts.

Why the attach stream rather than `docker exec -i` when there is no setup: a run then pays no
exec (a CLI process, an exec create and start, a runtime exec: ~60-250 ms and a share of a
batch's CPU). Per call the two are alike: well under a millisecond of transport
(bench/sandbox.py). The exec path stays for setup (root first, the agent after) and for daemons
reached over TLS or ssh, whose attach stream is not a plain socket.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.errors import SandboxError
from runner.sandbox.base import (
    DEFAULT_OUTPUT_LIMIT,
    SETUP_TAIL,
    WORKSPACE,
    ExecResult,
    Sandbox,
    SandboxConfig,
    SetupStep,
    check_env,
    clear_setid_bits,
)
from runner.sandbox.docker_attach import AttachedProcess, attach_socket, attachable, watch_exit
from runner.sandbox.docker_engine import (
    BUILD_HINT,
    CONTROL_ATTEMPTS,
    CONTROL_BACKOFF_S,
    CONTROL_TIMEOUT_S,
    LABEL,
    LABEL_DEADLINE,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_RUN_ID,
    START_HINT,
    _control,
    _docker_module,
    _remove_container,
    _short,
    cli_env,
    connect,
    container_name,
    engine_call,
    reap_leftovers,
    shared_client,
)
from runner.sandbox.docker_files import SandboxFiles, check_mount_source, make_sandbox_files
from runner.sandbox.docker_git import IN_GIT_DIR, IN_OBJECTS, _git_init_script, _git_source
from runner.sandbox.docker_runtime import interpreter_argv, planted
from runner.sandbox.docker_spec import (
    BASE_ENV,
    DEADLINE_MARGIN_S,
    HOST_CA_BUNDLE,
    IN_CA_BUNDLE,
    IN_HELPER,
    SETUP_CAPS,
    _container_spec,
    _setup_env,
    network_ever,
)
from runner.task import DEFAULT_IMAGE

__all__ = [  # what other modules and tests import from here; private ones are for the tests
    "BASE_ENV",
    "BUILD_HINT",
    "CONTROL_ATTEMPTS",
    "CONTROL_BACKOFF_S",
    "CONTROL_TIMEOUT_S",
    "DEADLINE_MARGIN_S",
    "HOST_CA_BUNDLE",
    "IN_CA_BUNDLE",
    "IN_GIT_DIR",
    "IN_HELPER",
    "IN_OBJECTS",
    "LABEL",
    "LABEL_DEADLINE",
    "LABEL_OWNER_HOST",
    "LABEL_OWNER_PID",
    "LABEL_RUN_ID",
    "SETUP_CAPS",
    "START_HINT",
    "DockerSandbox",
    "_control",
    "_remove_container",
    "connect",
    "reap_leftovers",
]


REAP_EVERY_S = 60.0
_last_reap = -REAP_EVERY_S


def _reap_now_and_then(client: Any) -> None:
    global _last_reap
    now = time.monotonic()
    if now - _last_reap >= REAP_EVERY_S:
        _last_reap = now
        reap_leftovers(client)


class DockerSandbox(Sandbox):
    """See the module docstring. One instance = one container = one run."""

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self._client: Any = None
        self.container_id: str | None = None
        self.container_name = container_name(config.run_id)
        self._uid = os.getuid() if config.uid is None else config.uid
        self._gid = os.getgid() if config.gid is None else config.gid
        self._docker_cli = ""
        self._env_dir: Path | None = None
        """Private (0700) host directory of the env files handed to `docker exec --env-file`."""
        self._env_cleanups: set[asyncio.Task[None]] = set()
        self._paused = False
        self._attached = False
        """The agent's helper is the container's own process (docker_attach.py)."""
        self._attached_proc: AttachedProcess | None = None
        self._exit_code: concurrent.futures.Future[int | None] | None = None
        """The attached container's exit code, from the daemon (docker_attach.watch_exit)."""
        self._quiet = False
        """`pause` found the attached helper alone, so nothing was frozen."""
        self._create_unsure = False
        """A create call was sent and has not answered (cancelled start): its container may exist."""
        self._files: SandboxFiles | None = None
        """The per-run copies of the helper, gitfile and CA bundle the container mounts (docker_files.py)."""
        self._git: asyncio.Future[None] | None = None
        """Setting up git inside (`_setup_git`), started when the helper answers; awaited by every command."""
        self._runtime: dict[str, Any] | None = None
        """What the image's python3 relies on, listed before setup ran (docker_runtime.py)."""

    # ------------------------------------------------------------------------------ start

    async def start(self) -> None:
        cfg = self.config
        self._docker_cli = shutil.which("docker") or ""
        if not self._docker_cli:
            raise SandboxError(f"the docker command-line client is not installed; {START_HINT}")
        if not cfg.worktree.is_dir():
            raise SandboxError(f"the worktree {cfg.worktree} does not exist")
        # On the start path, so what does not depend on each other runs at once.
        self._client, (objects, base) = await asyncio.gather(engine_call(shared_client, "connect"),
                                                            _git_source(self.config))
        # Reaping only touches containers of dead owners, never the one being created beside it;
        # once per REAP_EVERY_S per process is enough (a batch would otherwise list every
        # sandbox on the daemon once per task).
        reaping = asyncio.ensure_future(engine_call(lambda: _reap_now_and_then(self._client), "reap"))
        # Without setup the agent's helper is the container's own process, over the attach stream.
        helper = None if cfg.setup or not attachable(self._client) else [
            *interpreter_argv(None), IN_HELPER, "--root", WORKSPACE, "--virtual", WORKSPACE, "--drop-caps",
            *self.helper_limits()]
        try:
            self._files = files = await asyncio.to_thread(self._prepare_files, objects)
            # The image is not inspected separately: create() fails with ImageNotFound, never pulls.
            attached = await engine_call(lambda: self._create(objects, files, helper), "create")
        finally:
            await reaping
        if attached is not None:
            assert self.container_id is not None
            try:
                proc = await AttachedProcess.open(attached, self.container_id, self._exit_code)
            except BaseException:
                attached[0].close()
                raise
            self._attached, self._attached_proc = True, proc
            await self._connect_helper(proc, name=f"container {self.container_name}")
        else:
            if cfg.setup:
                await self._run_setup()
            if cfg.setup and cfg.network != "bridge":  # without setup it never had one
                await engine_call(self._cut_network, "cut-network")
            await self._start_helper(self._exec_argv(agent=True, argv=[
                *interpreter_argv(self._runtime), IN_HELPER, "--root", WORKSPACE, "--virtual", WORKSPACE,
                "--drop-caps", *self.helper_limits(),
            ]), cli_env(), name=f"container {self.container_name}")
        if objects is not None and base is not None:
            # Off the start path: the store may still be being written (a first run on its
            # commit), and the model's first call needs no git. Every command waits for it.
            self._git = asyncio.ensure_future(self._setup_git(base))
            self._git.add_done_callback(lambda t: t.cancelled() or t.exception())  # read by git_ready

    async def _setup_git(self, base: str) -> None:
        """The container-private git dir over the complete store (docker_git.py), as the agent's uid."""
        if self.config.git_objects_ready is not None:  # the store may still be being written
            await self.config.git_objects_ready()
        r = await super().exec(_git_init_script(base), timeout=120)
        if not r.ok:
            raise SandboxError(f"could not set up git inside the sandbox: {r.output.strip()[-1500:]}")

    async def git_ready(self) -> None:
        """Wait until git inside works (its objects written, its git dir set up); its error if that failed."""
        if self._git is not None:
            await asyncio.shield(self._git)

    async def exec(
        self,
        command: str,
        *,
        timeout: float,  # noqa: ASYNC109 - the command's own deadline, enforced in the sandbox
        env: Mapping[str, str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        """As `Sandbox.exec`, once git inside is set up: no command ever sees a store being written."""
        await self.git_ready()
        return await super().exec(command, timeout=timeout, env=env, output_limit=output_limit)

    def _prepare_files(self, objects: Path | None) -> SandboxFiles:
        """Check every host path the daemon will mount, and write the per-run files beside the worktree."""
        # Strict from the directory that holds the run dirs (the cache's runs/) or the stores down.
        check_mount_source(self.config.worktree, strict_below=self.config.worktree.resolve().parent.parent)
        if objects is not None:
            check_mount_source(objects, strict_below=objects.parent.parent)
        has_gitfile = (self.config.worktree / ".git").exists()
        return make_sandbox_files(self.config.worktree, uid=self._uid, gid=self._gid,
                                  git_dir_inside=IN_GIT_DIR if has_gitfile else None,
                                  ca_bundle=HOST_CA_BUNDLE if self.config.setup else None,
                                  hosts=not network_ever(self.config))

    def _create(self, objects: Path | None, files: SandboxFiles,
                helper: list[str] | None) -> tuple[socket.socket, Any] | None:
        """Create and start the container; with `helper` (its own process) attached before the
        start, and the attach stream returned."""
        docker = _docker_module()
        kwargs = _container_spec(self.config, self.container_name, self._uid, self._gid, objects, files, helper)
        tries = 0

        def create() -> str:
            nonlocal tries
            tries += 1
            try:
                return str(self._client.containers.create(**kwargs).id)
            except docker.errors.APIError as exc:
                # A try whose answer was lost may have made it: the name is ours alone.
                if exc.status_code != 409 or tries == 1:
                    raise
                found = self._client.api.inspect_container(self.container_name)
                if (found.get("Config", {}).get("Labels") or {}).get(LABEL_OWNER_PID) != str(os.getpid()):
                    raise
                return str(found["Id"])

        try:
            self._create_unsure = True  # until create answers: close() then looks the container up
            self.container_id = _control(create, "create the sandbox container")
            self._create_unsure = False
            cid = self.container_id
            attached = None if helper is None else _control(lambda: attach_socket(self._client, cid),
                                                            "attach to the sandbox container")
            if attached is not None:  # how its process ends (an OOM kill says 137), known to the daemon only
                with contextlib.suppress(Exception):
                    self._exit_code = watch_exit(self._client, cid, self.config.deadline_s + DEADLINE_MARGIN_S)
            try:
                _control(lambda: self._client.api.start(cid), "start the sandbox container")
            except BaseException:
                if attached is not None:
                    attached[0].close()
                raise
            return attached
        except docker.errors.ImageNotFound:
            ours = self.config.image.rsplit(":", 1)[0] == DEFAULT_IMAGE.rsplit(":", 1)[0]
            hint = BUILD_HINT if ours else (
                "build or load it on this machine (astra-run never pulls images); any image with python3 works")
            raise SandboxError(f"the sandbox image {self.config.image} is missing; {hint}") from None
        except Exception as exc:
            raise SandboxError(f"cannot start the sandbox container: {_short(exc)}") from None

    async def _run_setup(self) -> None:
        """Setup commands as root with the network, each under setup_timeout_s, via a root helper.

        Then nothing of setup may survive into the agent phase (its processes hold root and the
        setup capabilities): the root helper kills every process but PID 1 and the bounded
        sleep (`quiesce`), strips setuid/setgid bits in the worktree and hands it back to the
        user; after it exits, the daemon's process list must show those two alone.
        """
        env_file = self._env_file(_setup_env())
        argv = self._exec_argv(agent=False, argv=["python3", "-I", "-S", IN_HELPER, "--root", WORKSPACE,
                                                  "--virtual", WORKSPACE, "--setup-phase"], env_file=env_file)
        try:
            await self._start_helper(argv, cli_env(), name=f"setup in container {self.container_name}")
        finally:
            env_file.unlink(missing_ok=True)  # answered a ping: the CLI has read it
        self._runtime = self.helper_info.get("runtime")
        if not isinstance(self._runtime, dict) or not self._runtime.get("interpreter"):
            raise SandboxError("the setup helper did not say what its interpreter relies on")
        cid = self.container_id
        before = await engine_call(
            lambda: _control(lambda: self._client.api.diff(cid), "list the sandbox's changes"), "diff")
        try:
            budget_end = time.monotonic() + self.config.setup_timeout_s  # for all setup commands together
            for command in self.config.setup:
                started = time.monotonic()
                r = await self.exec(command, timeout=max(1.0, budget_end - started))
                self.setup_log.append(SetupStep(command, r.exit_code, round(time.monotonic() - started, 3),
                                                r.output[-SETUP_TAIL:], r.timed_out))
                if r.timed_out:
                    raise SandboxError(f"setup command timed out after {self.config.setup_timeout_s:g}s "
                                       f"(sandbox.setup_timeout, for all setup commands together): {command}")
                if r.exit_code != 0:
                    raise SandboxError(f"setup command failed (exit {r.exit_code}): {command}\n{r.output[-2000:]}")
            q = await self.helper.request("quiesce", timeout=60)
            if q.get("left"):
                raise SandboxError(f"processes started by setup could not be killed: pids {q['left']}")
            # No setuid/setgid file may reach the host, and what setup (or a process it left,
            # now dead) wrote in the worktree belongs to the user again.
            fix = f"find {WORKSPACE} -xdev -perm /6000 ! -type l -exec chmod ug-s {{}} +"
            if self._uid != 0:
                fix += (f" && find {WORKSPACE} -path {WORKSPACE}/.git -prune -o \\( ! -uid {self._uid} -o ! -gid "
                        f"{self._gid} \\) -exec chown -h {self._uid}:{self._gid} {{}} +")
            r = await self.exec(fix, timeout=300)
            if not r.ok:
                raise SandboxError(f"could not give the worktree back to uid {self._uid}: {r.output[-1000:]}")
        finally:
            if self._helper is not None:
                await self._helper.close()
                self._helper = None
        await engine_call(self._check_only_init_left, "top")
        await engine_call(lambda: self._check_nothing_planted(before or []), "diff")

    def _check_nothing_planted(self, before: list[dict[str, Any]]) -> None:
        """Setup changed nothing the agent's helper runs on - asked of the daemon (docker_runtime.py)."""
        assert self.container_id is not None and self._runtime is not None
        cid = self.container_id
        changes = _control(lambda: self._client.api.diff(cid), "list what setup changed in the sandbox") or []
        if found := planted(changes, self._runtime, before):
            shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
            raise SandboxError(f"setup changed what the sandbox helper runs on ({shown}); setup may install "
                               "software but not replace the image's python3, its libraries or its standard library")

    def _check_only_init_left(self) -> None:
        """Between setup and the agent: the container must run PID 1 and its sleep, nothing else.

        Asked of the daemon (`docker top`), not of anything inside: a setup process that
        survived by some way the helper did not foresee fails the run instead of living on as root.
        """
        assert self.container_id is not None
        cid = self.container_id
        rows: list[list[str]] = []
        for _ in range(20):  # the setup helper's exec may take a moment to leave the list
            top = _control(lambda: self._client.api.top(cid, ps_args="-o pid,ppid,uid,args"),
                           "list the sandbox's processes")
            rows = [list(map(str, row)) for row in top.get("Processes") or []]
            pids = {row[0] for row in rows}
            roots = [row for row in rows if row[1] not in pids]
            if len(rows) == 2 and len(roots) == 1 and all(row[1] == roots[0][0] for row in rows if row is not roots[0]):
                return
            time.sleep(0.1)
        raise SandboxError("processes started by setup are still running: " + "; ".join(" ".join(r) for r in rows))

    def _cut_network(self) -> None:
        assert self.container_id is not None
        cid = self.container_id
        api = self._client.api

        def networks() -> list[str]:
            attrs = _control(lambda: api.inspect_container(cid), "inspect the sandbox container")
            return [n for n in (attrs.get("NetworkSettings", {}).get("Networks") or {}) if n != "none"]

        try:
            for name in networks():
                # A retried disconnect whose first try worked gets a 4xx: the check below judges.
                with contextlib.suppress(_docker_module().errors.APIError):
                    _control(lambda n=name: api.disconnect_container_from_network(cid, n, force=True),  # type: ignore[misc]
                             "disconnect the sandbox from its network")
            left = networks()
        except Exception as exc:
            raise SandboxError(f"cannot cut the sandbox's network: {_short(exc)}") from None
        if left:
            raise SandboxError(f"the sandbox is still on the networks {left} after disconnecting")

    # ------------------------------------------------------------------- docker exec plumbing

    def _env_file(self, env: Mapping[str, str]) -> Path:
        """A 0600 file of `NAME=value` lines in a private 0700 directory, for `--env-file`.

        Neither the CLI's environment (it would configure the host CLI) nor its command line
        (visible to every host user in `ps`). Removed once the process has read it, or at close.
        """
        env = check_env(env, one_line=True)
        if self._env_dir is None:
            self._env_dir = Path(tempfile.mkdtemp(prefix="astra-env-"))  # mode 0700
        path = self._env_dir / f"{secrets.token_hex(8)}.env"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(f"{name}={value}\n" for name, value in env.items())
        return path

    def _exec_argv(self, *, agent: bool, argv: Sequence[str], env_file: Path | None = None) -> list[str]:
        """`docker exec -i` as the agent uid:gid (or root for setup), cwd /workspace."""
        assert self.container_id is not None
        user = f"{self._uid}:{self._gid}" if agent else "0:0"
        args = [self._docker_cli, "exec", "-i", "-u", user, "-w", WORKSPACE]
        if env_file is not None:
            args += ["--env-file", str(env_file)]
        return [*args, self.container_id, *argv]

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> asyncio.subprocess.Process:
        if self.container_id is None:
            raise SandboxError("the sandbox is not started")
        await self.git_ready()
        env_file = self._env_file(env or {}) if env else None
        # Through the helper's --exec: capabilities dropped (as for tools), then exec argv.
        wrapped = [*interpreter_argv(self._runtime), IN_HELPER, "--drop-caps", "--exec", *argv]
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._exec_argv(agent=True, argv=wrapped, env_file=env_file),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=cli_env(),
            )
        except OSError as exc:
            if env_file is not None:
                env_file.unlink(missing_ok=True)
            raise SandboxError(f"cannot start {argv[0]} in the sandbox: {exc}") from None
        if env_file is not None:
            task = asyncio.create_task(self._unlink_after_exit(proc, env_file))
            self._env_cleanups.add(task)
            task.add_done_callback(self._env_cleanups.discard)
        return proc

    @staticmethod
    async def _unlink_after_exit(proc: asyncio.subprocess.Process, path: Path) -> None:
        try:
            while proc.returncode is None:  # noqa: ASYNC110 - polls: wait() also waits for the pipes
                await asyncio.sleep(0.5)
        finally:
            path.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------ pause

    async def pause(self) -> None:
        """Freeze the container (cgroup freezer): no sandbox process runs until `resume`.

        Not needed, and skipped, when the attached helper (PID 1) is all that runs: it answers
        `alone` from the container's whole process table, which every process in the container
        (and in any namespace below it) is in, with no call of its own running. Then nothing
        inside can change the worktree, and nothing new starts before `resume`: only the host
        starts processes there (a request, a `docker exec`), and it makes none meanwhile.
        """
        if self._attached and self._helper is not None:
            with contextlib.suppress(Exception):  # no answer: freeze it
                if (await self._helper.request("alone", timeout=5)).get("alone") is True:
                    self._quiet = True
                    return
        await engine_call(lambda: self._set_paused(True), "pause")

    async def resume(self) -> None:
        if self._quiet:
            self._quiet = False
            return
        await engine_call(lambda: self._set_paused(False), "resume")

    def _set_paused(self, paused: bool) -> None:
        if self.container_id is None or self._client is None:
            raise SandboxError("the sandbox is not started")
        docker = _docker_module()
        cid, api = self.container_id, self._client.api

        def call() -> None:
            try:
                (api.pause if paused else api.unpause)(cid)
            except docker.errors.APIError as exc:
                # 409 when already in that state - e.g. a retry after a try whose answer was lost
                state = api.inspect_container(cid).get("State") or {}
                if exc.status_code != 409 or bool(state.get("Paused")) != paused:
                    raise

        try:
            _control(call, "pause the sandbox" if paused else "resume the sandbox")
        except Exception as exc:
            raise SandboxError(f"cannot {'pause' if paused else 'resume'} the sandbox: {_short(exc)}") from None
        self._paused = paused

    # ------------------------------------------------------------------------------ close

    async def close(self) -> None:
        """Stop the helper and remove the container (and any other of this run's). Idempotent."""
        if self._paused:  # a frozen helper cannot exit
            with contextlib.suppress(Exception):
                await self.resume()
        if self._git is not None:
            git, self._git = self._git, None
            git.cancel()
            with contextlib.suppress(BaseException):
                await git
        if self._helper is not None:
            helper, self._helper = self._helper, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(helper.close(), 5)
        failed: SandboxError | None = None
        if self.container_id is not None:
            try:  # every phase's setuid/setgid bits (setup's were cleared inside, before the agent)
                await clear_setid_bits(self.config.worktree)
            except SandboxError as exc:
                failed = exc
        for task in list(self._env_cleanups):
            task.cancel()
        if self._env_dir is not None:
            shutil.rmtree(self._env_dir, ignore_errors=True)
            self._env_dir = None
        if self._client is not None:
            await engine_call(self._remove_own, "remove")
        if self._files is not None:  # after the container: its mounts are gone with it
            self._files.remove()
            self._files = None
        if failed is not None:
            raise failed

    def _remove_own(self) -> None:
        ids = {self.container_id} if self.container_id else set()
        # A create call that never answered (a start cancelled or failed meanwhile) may still
        # have made a container: find it by label. When create answered, its id is the only one.
        if self._create_unsure:
            with contextlib.suppress(Exception):
                found = _control(lambda: self._client.api.containers(
                    all=True, filters={"label": f"{LABEL_RUN_ID}={self.config.run_id}"}), "list the run's containers")
                for c in found:
                    if (c.get("Labels") or {}).get(LABEL_OWNER_PID) == str(os.getpid()):
                        ids.add(str(c["Id"]))
        if self._attached_proc is not None and self._attached_proc.exited and self.container_id in ids:
            # The helper ended, and with it the container: auto_remove is removing it. One call
            # that answers once it is gone (404: gone already); anything else, remove it here.
            cid = self.container_id
            try:
                self._client.api.wait(cid, condition="removed", timeout=10)
                ids.discard(cid)
            except _docker_module().errors.NotFound:
                ids.discard(cid)
            except Exception:  # noqa: S110 - removed below instead
                pass
        for cid in ids:
            try:
                _remove_container(self._client, cid)
            except Exception as exc:
                raise SandboxError(f"cannot remove the sandbox container {cid[:12]}: {_short(exc)}") from None
        self.container_id = None
