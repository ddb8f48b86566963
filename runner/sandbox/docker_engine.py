"""The docker backend's side of the host: talking to the Docker engine, never to a container's inside.

Everything here holds no per-run state and is shared by `DockerSandbox` and `astra-run cleanup`:
the SDK client (`connect`), the retry wrapper every control-plane call goes through (`_control`:
create, start, inspect, disconnect, pause, remove, list - a timeout each, bounded jittered retries
on 5xx/timeouts), the labels that mark our containers and the reaping of dead runs' leftovers
(`reap_leftovers`), container names, and the environment of the host `docker` CLI (`cli_env`).

Why `cli_env` lives here and is fixed: the host CLI is configured by its environment
(DOCKER_HOST=ssh://, DOCKER_CONFIG, PATH), so it never sees anything from the task or the
repository; values meant for the container travel in an `--env-file` instead (see docker.py).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from runner.deadline import CallTimedOut, blocking
from runner.errors import SandboxError
from runner.procs import pid_alive

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
CONTROL_BUDGET_S = 45.0
"""No new try of a control-plane call starts after this long (the SDK request timeout bounds the last one)."""
CONTROL_BACKOFF_S = 0.5
"""First pause between tries; doubles each time, with +-50% jitter (a batch's runs must not retry
in lockstep)."""


async def engine_call(fn: Callable[[], T], what: str, *, limit_s: float | None = None) -> T:
    """A blocking SDK call off the event loop, in a thread nobody waits for past `limit_s` or a
    cancellation (runner/deadline.py): a hung daemon costs the run its wall clock (or the finish
    phase its step limit), never more. The thread ends with its own request timeout."""
    try:
        return await blocking(fn, limit_s=limit_s, what=f"docker-{what}")
    except CallTimedOut:
        raise SandboxError(f"the Docker engine did not answer within {limit_s:g}s ({what})") from None


def _docker_module() -> Any:
    try:
        import docker
    except ImportError as exc:  # a broken install, not a user error
        raise SandboxError(f"the docker Python package is missing: {exc}") from None
    return docker


def connect(timeout: float = CONTROL_TIMEOUT_S) -> Any:
    """A docker SDK client for $DOCKER_HOST (default: the local socket), checked to answer.

    `use_context=False`: the CLI processes we start get the same DOCKER_HOST explicitly
    (`cli_env`), so SDK and CLI always talk to the same daemon.
    """
    docker = _docker_module()
    try:
        # version="auto" (the default) asks the daemon for its API version: that is the check.
        client = docker.from_env(use_context=False, timeout=int(timeout))
    except Exception as exc:
        raise SandboxError(f"cannot reach the Docker engine ({_short(exc)}); {START_HINT}") from None
    return client


_clients: dict[tuple[int, str], Any] = {}
_clients_lock = threading.Lock()


def shared_client() -> Any:
    """One checked client per process and DOCKER_HOST, shared by its runs (a batch's): a run then
    pays no client setup and no version round trip to the daemon. The SDK's connection pool is
    thread-safe; an attach stream holds a connection of its own."""
    key = (os.getpid(), os.environ.get("DOCKER_HOST", ""))
    with _clients_lock:
        client = _clients.get(key)
    if client is None:
        client = connect()
        with _clients_lock:
            client = _clients.setdefault(key, client)
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


def _control(fn: Callable[[], T], what: str, *, attempts: int = CONTROL_ATTEMPTS,
             budget_s: float = CONTROL_BUDGET_S) -> T:
    """One Docker control-plane call (never a setup or agent command), with bounded retries.

    Retried, after a jittered backoff: 5xx answers, timeouts and connection errors - a busy or
    restarting daemon under a batch run. Not retried: 4xx (the request itself is wrong; NotFound
    included), which propagate as the SDK's own errors for the caller to judge, as does the last
    failure. Each try is bounded by the client's timeout (CONTROL_TIMEOUT_S); no new try starts
    once `budget_s` has passed since the first (a daemon that times out every request costs
    about `budget_s` + one timeout, not attempts x the timeout).

    A retry that finds the object gone (404) re-raises the failure that made it go: a container
    whose start failed is removed by auto_remove, and its real cause (the daemon's message) must
    not be hidden behind "No such container".
    """
    docker = _docker_module()
    import requests

    first: Exception | None = None
    give_up = time.monotonic() + budget_s
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except docker.errors.NotFound:
            if first is not None:
                raise first from None
            raise
        except docker.errors.APIError as exc:
            if not exc.is_server_error() or attempt == attempts or time.monotonic() >= give_up:
                raise
            first = first or exc
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
            if attempt == attempts or time.monotonic() >= give_up:
                raise
        pause = min(CONTROL_BACKOFF_S * 2 ** (attempt - 1), 8.0) * random.uniform(0.5, 1.5)  # noqa: S311
        time.sleep(max(0.0, min(pause, give_up - time.monotonic())))
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
        # auto_remove got there first (the attached helper's container ends when its stdin does):
        # done once the daemon says it is gone, so that nothing of the run outlives its close.
        with contextlib.suppress(Exception):
            client.api.wait(cid, condition="removed", timeout=10)


def daemon_message(exc: BaseException) -> str:
    """The whole of what went wrong: the Docker daemon's own message and HTTP status for an API
    error (not the SDK's URL-laden summary), never shortened."""
    docker = _docker_module()
    if isinstance(exc, docker.errors.APIError):
        said = exc.explanation if isinstance(exc.explanation, str) and exc.explanation else str(exc)
        status = f" (HTTP {exc.status_code})" if exc.status_code else ""
        return f"the Docker daemon said: {said.strip()}{status}"
    return str(exc).strip() or type(exc).__name__


def _short(exc: BaseException) -> str:
    """What went wrong, in full (the name is older than the rule: the cause is never cut)."""
    return daemon_message(exc)


def container_name(run_id: str) -> str:
    """`astra-<run id, made name-safe, at most 40 chars>-<6 random hex>`: unique to one sandbox."""
    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "-", run_id)[:40]
    return f"astra-{safe_id}-{secrets.token_hex(3)}"


def cli_env() -> dict[str, str]:
    """The environment of the docker CLI *on the host*: never passed into the container, and
    never extended with anything from the task or the repository (DOCKER_HOST=ssh://, PATH or
    DOCKER_CONFIG from a hostile `.mcp.json` would run programs on the host)."""
    env = {k: v for k, v in os.environ.items()
           if k in ("PATH", "HOME", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")}
    env["DOCKER_HOST"] = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return env
