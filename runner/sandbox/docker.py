"""The `docker` backend: one hardened container per run, every tool call through one helper.

Lifecycle of a sandbox (DESIGN.md, "Decisions"):

1. reap the leftovers of dead runs; check the daemon and the image (never pulled: a missing image
   names the build command);
2. create the container: PID 1 is `sleep <run deadline + margin>` under docker's init, so a
   container outlives a crashed runner by minutes at most (and removes itself: auto_remove);
   `cap_drop=ALL`, `no-new-privileges`, cpu/memory/pids limits, the worktree at /workspace,
   the helper and the trusted git objects read-only, no Docker socket, an environment built
   from nothing but SandboxConfig.env and a few harmless defaults;
3. setup commands (if any) through a root helper, with the network and the host CA bundle;
   then every process setup left is killed (`quiesce`: all but PID 1 and its sleep, checked
   again with `docker top`), setuid/setgid bits in the worktree are cleared, and what setup made
   there is handed back to the invoking user;
4. the network is cut (disconnected from every network) unless the task asks for `bridge`;
5. the agent helper starts as the invoking uid:gid via `docker exec -i` with no capabilities,
   and sets up a container-private git dir (see `_GIT_INIT`).

The host `docker` CLI always runs with `_cli_env()` and nothing else: values for the container
(setup's CA variables, `spawn`'s env from a possibly hostile `.mcp.json`) go in a 0600
`--env-file` in a private directory. Control-plane calls (create, start, inspect, disconnect,
pause, remove) go through `_control`: a timeout each, bounded jittered retries on 5xx/timeouts.

Why `docker exec -i` of the CLI for the helper rather than the SDK's exec socket: the CLI hands
us an asyncio subprocess whose pipes are already demultiplexed, which is exactly what
`HelperClient` speaks; measured per-call overhead is well under a millisecond of transport
(bench/sandbox.py), so a socket adapter would buy nothing measurable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from runner.errors import SandboxError
from runner.procs import pid_alive
from runner.sandbox.base import HELPER_PATH, WORKSPACE, Sandbox, SandboxConfig, check_env
from runner.task import DEFAULT_IMAGE

T = TypeVar("T")

LABEL = "astra-run"
LABEL_RUN_ID = "astra-run.run-id"
LABEL_OWNER_PID = "astra-run.owner-pid"
LABEL_OWNER_HOST = "astra-run.owner-host"
LABEL_DEADLINE = "astra-run.deadline"
"""Unix time after which the container is a leftover whoever owns it."""

BUILD_HINT = "build it with `sandbox-images/build.sh` (or `scripts/ensure-docker.sh`, which also starts Docker)"
START_HINT = (
    "start Docker with `scripts/ensure-docker.sh` (as root on Debian/Ubuntu: installs docker.io, "
    "starts dockerd, builds the image) or `sudo systemctl start docker`"
)
CONTROL_TIMEOUT_S = 30
"""Timeout of every Docker control-plane request (create, start, inspect, disconnect, pause,
remove, list): the SDK client's, set in `connect`."""
CONTROL_ATTEMPTS = 4
"""Tries of one control-plane call when the daemon answers 5xx, times out or drops the connection."""
CONTROL_BACKOFF_S = 0.5
"""First pause between tries; doubles each time, with +-50% jitter (a batch's runs must not retry
in lockstep)."""
DEADLINE_MARGIN_S = 300
"""How long PID 1 sleeps past the run's wall clock before the container ends itself."""

SETUP_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID", "KILL")
"""Capabilities the container holds *only when the task has setup commands*.

cap_drop/cap_add are fixed for a container's life, yet setup runs as root (apt-get, pip) and the
agent after it. The smallest set setup needs: CHOWN/FOWNER/FSETID for dpkg unpacking files with
their owners and modes (and for handing the worktree back to the user), DAC_OVERRIDE to write the
user-owned /workspace as root (`pip install -e .` writes egg-info there), SETUID/SETGID/KILL for
apt, which drops to the `_apt` user to download and kills its methods. Left out of docker's
default set: NET_RAW (spoofing), MKNOD, SETFCAP, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT,
AUDIT_WRITE.

Docker hands an exec'd process the container's capabilities only when the container's own
user is root, so such a container is created as root (PID 1 `sleep` runs as root; the agent
cannot signal it unless it is root itself, and then only ends its own run).

Why the agent phase still holds none of them: it runs as the invoking user's uid, and a non-root
process holds no effective or permitted capabilities (the image has no file capabilities, and
no-new-privileges stops setuid/file caps from granting any on exec). When that uid is 0 (a root
CI job), the helper clears its own permitted set at start (`helper.py --drop-caps`); with
no-new-privileges the kernel caps what any later exec may gain at that empty set. The conformance
suite checks CapEff == 0 from inside.
"""

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IN_HELPER = "/astra/helper.py"
IN_GIT_DIR = "/astra/git"
IN_OBJECTS = "/astra/objects"
IN_CA_BUNDLE = "/astra/ca-certificates.crt"
GIT_TMPFS_SIZE = "1g"

BASE_ENV: Mapping[str, str] = {
    "HOME": "/tmp",  # noqa: S108 - the container's own /tmp: always writable by any uid
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "GIT_TERMINAL_PROMPT": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
}
"""The whole environment of sandboxed commands, besides the image's own ENV and SandboxConfig.env.

PATH is left to the image (a custom image may put a venv first)."""

# Runs as the agent's uid inside the container. /astra/git is a tmpfs owned by that uid; its
# objects come from the trusted store (read-only at /astra/objects) through alternates; HEAD is
# a branch at the base commit; `git reset` builds the index from HEAD and the worktree's stat
# data, so `git status` is clean at start. Nothing here is ever read by host git. The files are
# written directly (one git process instead of seven: this is on the start path).
_GIT_INIT = """set -e
command -v git >/dev/null 2>&1 || exit 0   # a custom image without git: no git inside, that's all
g={git_dir}
mkdir -p $g/objects/info $g/refs/heads $g/refs/tags
cat > $g/config <<'EOF'
[core]
\trepositoryformatversion = {format_version}
\tfilemode = true
\tbare = false
\tlogallrefupdates = true
\tworktree = {workspace}
[user]
\tname = astra-agent
\temail = agent@astra-run.invalid
{extensions}EOF
echo {objects} > $g/objects/info/alternates
echo {base} > $g/refs/heads/astra
echo 'ref: refs/heads/astra' > $g/HEAD
cd {workspace} && GIT_DIR=$g git reset -q
"""


def _git_init_script(base: str) -> str:
    sha256 = len(base) == 64
    return _GIT_INIT.format(
        git_dir=IN_GIT_DIR, workspace=WORKSPACE, objects=IN_OBJECTS, base=base,
        format_version=1 if sha256 else 0,
        extensions="[extensions]\n\tobjectformat = sha256\n" if sha256 else "",
    )


def _docker_module() -> Any:
    try:
        import docker
    except ImportError as exc:  # a broken install, not a user error
        raise SandboxError(f"the docker Python package is missing: {exc}") from None
    return docker


def connect(timeout: float = CONTROL_TIMEOUT_S) -> Any:
    """A docker SDK client for $DOCKER_HOST (default: the local socket), checked to answer.

    `use_context=False`: the CLI processes we start get the same DOCKER_HOST explicitly
    (`_cli_env`), so SDK and CLI always talk to the same daemon.
    """
    docker = _docker_module()
    try:
        # version="auto" (the default) asks the daemon for its API version: that is the check.
        client = docker.from_env(use_context=False, timeout=int(timeout))
    except Exception as exc:
        raise SandboxError(f"cannot reach the Docker engine ({_short(exc)}); {START_HINT}") from None
    return client


def reap_leftovers(client: Any | None = None) -> list[str]:
    """Remove the containers of dead runs; returns their names (for `astra-run cleanup`).

    A container is a leftover when it has stopped, when its deadline has passed, or when its
    owner ran on this host and that process is gone. Containers of live runs are left alone.
    """
    client = client or connect()
    now = time.time()
    host = socket.gethostname()
    reaped: list[str] = []
    try:  # the low-level list: labels and state without one inspect per container
        containers = _control(lambda: client.api.containers(all=True, filters={"label": f"{LABEL}=1"}),
                              "list sandbox containers")
    except Exception as exc:
        raise SandboxError(f"cannot list sandbox containers: {_short(exc)}") from None
    for c in containers:
        labels: Mapping[str, str] = c.get("Labels") or {}
        name = str((c.get("Names") or [c.get("Id", "?")])[0]).lstrip("/")
        try:
            deadline = float(labels.get(LABEL_DEADLINE) or 0)
            pid = int(labels.get(LABEL_OWNER_PID) or 0)
        except ValueError:
            deadline, pid = 0.0, 0
        dead_owner = labels.get(LABEL_OWNER_HOST) == host and not pid_alive(pid)
        if c.get("State") in ("exited", "dead") or (deadline and now > deadline) or dead_owner:
            with contextlib.suppress(Exception):
                _remove_container(client, c["Id"])
                reaped.append(name)
    return reaped


def _control(fn: Callable[[], T], what: str, *, attempts: int = CONTROL_ATTEMPTS) -> T:
    """One Docker control-plane call (never a setup or agent command), with bounded retries.

    Retried, after a jittered backoff: 5xx answers, timeouts and connection errors - a busy or
    restarting daemon under a batch run. Not retried: 4xx (the request itself is wrong; NotFound
    included), which propagate as the SDK's own errors for the caller to judge, as does the last
    failure. Each try is bounded by the client's timeout (CONTROL_TIMEOUT_S).
    """
    docker = _docker_module()
    import requests

    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except docker.errors.APIError as exc:
            if not exc.is_server_error() or attempt == attempts:
                raise
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
            if attempt == attempts:
                raise
        time.sleep(min(CONTROL_BACKOFF_S * 2 ** (attempt - 1), 8.0) * random.uniform(0.5, 1.5))  # noqa: S311
    raise AssertionError(f"unreachable: {what}")


def _remove_container(client: Any, cid: str) -> None:
    """Force-remove a container; already gone (404) or being removed (auto_remove) is done."""
    docker = _docker_module()
    try:
        _control(lambda: client.api.remove_container(cid, force=True), "remove a container")
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


def _gitfile(uid: int, gid: int) -> Path:
    """A host file saying `gitdir: /astra/git`, bound read-only over the worktree's `.git`.

    Owned by the agent's uid (git refuses a repository whose .git another user owns); shared by
    every run of this user, written atomically.
    """
    directory = Path(tempfile.gettempdir()) / f"astra-run-{os.getuid()}"
    directory.mkdir(mode=0o755, exist_ok=True)
    path = directory / f"gitfile-{uid}"
    content = f"gitdir: {IN_GIT_DIR}\n"
    if not path.is_file() or path.read_text() != content or path.stat().st_uid != uid:
        tmp = directory / f".gitfile.{os.getpid()}.{secrets.token_hex(4)}"
        tmp.write_text(content)
        tmp.chmod(0o644)
        if uid != os.getuid() or gid != os.getgid():
            os.chown(tmp, uid, gid)
        tmp.replace(path)
    return path


async def _host_git(git_dir: Path, *args: str) -> str:
    """Run trusted host git on the trusted git dir (never on anything the sandbox wrote)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent", "LANG": "C"}
    proc = await asyncio.create_subprocess_exec(
        "git", "-c", "core.hooksPath=/dev/null", f"--git-dir={git_dir}", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise SandboxError(f"git {' '.join(args)} failed on {git_dir}: {err.decode(errors='replace').strip()}")
    return out.decode().strip()


class DockerSandbox(Sandbox):
    """See the module docstring. One instance = one container = one run."""

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self._client: Any = None
        self.container_id: str | None = None
        safe_id = re.sub(r"[^A-Za-z0-9_.-]", "-", config.run_id)[:40]
        self.container_name = f"astra-{safe_id}-{secrets.token_hex(3)}"
        self._uid = os.getuid() if config.uid is None else config.uid
        self._gid = os.getgid() if config.gid is None else config.gid
        self._docker_cli = ""
        self._env_dir: Path | None = None
        """Private (0700) host directory of the env files handed to `docker exec --env-file`."""
        self._env_cleanups: set[asyncio.Task[None]] = set()
        self._paused = False

    # ------------------------------------------------------------------------------ start

    async def start(self) -> None:
        cfg = self.config
        self._docker_cli = shutil.which("docker") or ""
        if not self._docker_cli:
            raise SandboxError(f"the docker command-line client is not installed; {START_HINT}")
        if not cfg.worktree.is_dir():
            raise SandboxError(f"the worktree {cfg.worktree} does not exist")
        # On the start path, so what does not depend on each other runs at once.
        self._client, (objects, base) = await asyncio.gather(asyncio.to_thread(connect), self._git_source())
        # Reaping only touches containers of dead owners, never the one being created beside it.
        reaping = asyncio.ensure_future(asyncio.to_thread(reap_leftovers, self._client))
        try:
            # The image is not inspected separately: create() fails with ImageNotFound, never pulls.
            await asyncio.to_thread(self._create, objects)
        finally:
            await reaping
        if cfg.setup:
            await self._run_setup()
        if cfg.setup and cfg.network != "bridge":  # without setup it never had one
            await asyncio.to_thread(self._cut_network)
        await self._start_helper(self._exec_argv(agent=True, argv=[
            "python3", "-I", "-S", IN_HELPER, "--root", WORKSPACE, "--virtual", WORKSPACE, "--drop-caps",
        ]), self._cli_env(), name=f"container {self.container_name}")
        if objects is not None and base is not None:
            r = await self.exec(_git_init_script(base), timeout=120)
            if not r.ok:
                raise SandboxError(f"could not set up git inside the sandbox: {r.output.strip()[-1500:]}")

    async def _git_source(self) -> tuple[Path | None, str | None]:
        """The trusted objects dir to mount read-only, and the base commit (None: no git inside)."""
        cfg = self.config
        dot_git = cfg.worktree / ".git"
        if dot_git.is_dir() and not dot_git.is_symlink():
            # Mounting it would hand the sandbox a writable git dir that host git later reads.
            raise SandboxError(
                f"{dot_git} is a directory: the docker sandbox needs a `git worktree` (whose .git is "
                "a file) so that the trusted git dir stays outside the container"
            )
        if cfg.git_objects is not None:
            objects: Path | None = cfg.git_objects
        elif cfg.git_dir is not None:
            common = await _host_git(cfg.git_dir, "rev-parse", "--path-format=absolute", "--git-common-dir")
            objects = Path(common) / "objects"
        else:
            return None, None
        if objects is None or not objects.is_dir():
            raise SandboxError(f"the git objects directory {objects} does not exist")
        base = cfg.base_commit
        if base is None:
            if cfg.git_dir is None:
                return None, None
            base = await _host_git(cfg.git_dir, "rev-parse", "--verify", "HEAD^{commit}")
        if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", base):
            if cfg.git_dir is None:
                raise SandboxError(f"base_commit {base!r} is not a full commit id")
            base = await _host_git(cfg.git_dir, "rev-parse", "--verify", f"{base}^{{commit}}")
        return objects.resolve(), base

    def _create(self, objects: Path | None) -> None:
        docker = _docker_module()
        from docker.types import Mount

        cfg = self.config
        uid, gid = self._uid, self._gid
        mounts = [
            Mount(WORKSPACE, str(cfg.worktree.resolve()), type="bind"),
            Mount(IN_HELPER, str(HELPER_PATH.resolve()), type="bind", read_only=True),
        ]
        if (cfg.worktree / ".git").exists():
            mounts.append(Mount(f"{WORKSPACE}/.git", str(_gitfile(uid, gid)), type="bind", read_only=True))
        if objects is not None:
            mounts.append(Mount(IN_OBJECTS, str(objects), type="bind", read_only=True))
        if cfg.setup and HOST_CA_BUNDLE.is_file():
            mounts.append(Mount(IN_CA_BUNDLE, str(HOST_CA_BUNDLE.resolve()), type="bind", read_only=True))
        lifetime = int(cfg.deadline_s + DEADLINE_MARGIN_S)
        labels = {
            LABEL: "1",
            LABEL_RUN_ID: cfg.run_id,
            LABEL_OWNER_PID: str(os.getpid()),
            LABEL_OWNER_HOST: socket.gethostname(),
            LABEL_DEADLINE: str(int(time.time()) + lifetime),
        }
        kwargs: dict[str, Any] = dict(
            image=cfg.image,
            command=["sleep", str(lifetime)],
            name=self.container_name,
            hostname="sandbox",
            labels=labels,
            environment={**BASE_ENV, **cfg.env},
            # docker 20.10 grants an exec process capabilities only when the *container's*
            # user is root (measured: `exec -u 0` in a uid-1000 container holds none), so a
            # container whose setup needs capabilities is created as root.
            user="0:0" if cfg.setup else f"{uid}:{gid}",
            working_dir=WORKSPACE,
            network_mode="bridge" if cfg.setup or cfg.network == "bridge" else "none",
            cap_drop=["ALL"],
            cap_add=list(SETUP_CAPS) if cfg.setup else None,
            security_opt=["no-new-privileges"],
            init=True,
            nano_cpus=int(cfg.cpus * 1e9),
            mem_limit=cfg.memory,
            memswap_limit=cfg.memory,
            pids_limit=cfg.pids,
            mounts=mounts,
            tmpfs={IN_GIT_DIR: f"uid={uid},gid={gid},mode=0700,size={GIT_TMPFS_SIZE}"},
            auto_remove=True,
            stdin_open=False,
            tty=False,
        )
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
            self.container_id = _control(create, "create the sandbox container")
            cid = self.container_id
            _control(lambda: self._client.api.start(cid), "start the sandbox container")
        except docker.errors.ImageNotFound:
            ours = cfg.image.rsplit(":", 1)[0] == DEFAULT_IMAGE.rsplit(":", 1)[0]
            hint = BUILD_HINT if ours else (
                "build or load it on this machine (astra-run never pulls images); any image with python3 works")
            raise SandboxError(f"the sandbox image {cfg.image} is missing; {hint}") from None
        except Exception as exc:
            raise SandboxError(f"cannot start the sandbox container: {_short(exc)}") from None

    async def _run_setup(self) -> None:
        """Setup commands as root with the network, each under setup_timeout_s, via a root helper.

        Then nothing of setup may survive into the agent phase (its processes hold root and the
        setup capabilities): the root helper kills every process but PID 1 and the bounded
        sleep (`quiesce`), strips setuid/setgid bits in the worktree and hands it back to the
        user; after it exits, the daemon's process list must show those two alone.
        """
        env = {"HOME": "/root"}
        if HOST_CA_BUNDLE.is_file():
            env.update(SSL_CERT_FILE=IN_CA_BUNDLE, PIP_CERT=IN_CA_BUNDLE, REQUESTS_CA_BUNDLE=IN_CA_BUNDLE,
                       CURL_CA_BUNDLE=IN_CA_BUNDLE, GIT_SSL_CAINFO=IN_CA_BUNDLE, NODE_EXTRA_CA_CERTS=IN_CA_BUNDLE)
        env_file = self._env_file(env)
        argv = self._exec_argv(agent=False, argv=["python3", "-I", "-S", IN_HELPER, "--root", WORKSPACE,
                                                  "--virtual", WORKSPACE, "--setup-phase"], env_file=env_file)
        try:
            await self._start_helper(argv, self._cli_env(), name=f"setup in container {self.container_name}")
        finally:
            env_file.unlink(missing_ok=True)  # answered a ping: the CLI has read it
        try:
            for command in self.config.setup:
                r = await self.exec(command, timeout=self.config.setup_timeout_s)
                if r.timed_out:
                    raise SandboxError(f"setup command timed out after {self.config.setup_timeout_s:.0f}s: {command}")
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
        await asyncio.to_thread(self._check_only_init_left)

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

    def _cli_env(self) -> dict[str, str]:
        """The environment of the docker CLI *on the host*: never passed into the container, and
        never extended with anything from the task or the repository (DOCKER_HOST=ssh://, PATH or
        DOCKER_CONFIG from a hostile `.mcp.json` would run programs on the host)."""
        env = {k: v for k, v in os.environ.items()
               if k in ("PATH", "HOME", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")}
        env["DOCKER_HOST"] = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return env

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
        env_file = self._env_file(env or {}) if env else None
        # Through the helper's --exec: capabilities dropped (as for tools), then exec argv.
        wrapped = ["python3", "-I", "-S", IN_HELPER, "--drop-caps", "--exec", *argv]
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._exec_argv(agent=True, argv=wrapped, env_file=env_file),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=self._cli_env(),
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
        """Freeze the container (cgroup freezer): no sandbox process runs until `resume`."""
        await asyncio.to_thread(self._set_paused, True)

    async def resume(self) -> None:
        await asyncio.to_thread(self._set_paused, False)

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
        if self._helper is not None:
            helper, self._helper = self._helper, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(helper.close(), 5)
        for task in list(self._env_cleanups):
            task.cancel()
        if self._env_dir is not None:
            shutil.rmtree(self._env_dir, ignore_errors=True)
            self._env_dir = None
        if self._client is not None:
            await asyncio.to_thread(self._remove_own)

    def _remove_own(self) -> None:
        ids = {self.container_id} if self.container_id else set()
        with contextlib.suppress(Exception):
            # Also finds a container whose create call had not returned when start was cancelled.
            found = _control(lambda: self._client.api.containers(
                all=True, filters={"label": f"{LABEL_RUN_ID}={self.config.run_id}"}), "list the run's containers")
            for c in found:
                if (c.get("Labels") or {}).get(LABEL_OWNER_PID) == str(os.getpid()):
                    ids.add(str(c["Id"]))
        for cid in ids:
            try:
                _remove_container(self._client, cid)
            except Exception as exc:
                raise SandboxError(f"cannot remove the sandbox container {cid[:12]}: {_short(exc)}") from None
        self.container_id = None
