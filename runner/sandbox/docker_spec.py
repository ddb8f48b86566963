"""What a sandbox container is created as: every hardening decision of the docker backend in one place.

`_container_spec` turns a SandboxConfig into the arguments of the SDK's `containers.create`:
PID 1 is `sleep <run deadline + margin>` under docker's init (the container outlives a crashed
runner by minutes at most, and removes itself: auto_remove); `cap_drop=ALL` (plus SETUP_CAPS only
when the task has setup commands), `no-new-privileges`, cpu/memory/pids limits, the worktree at
/workspace, the helper and the trusted git objects read-only, no Docker socket, the ownership
labels, and an environment built from nothing but BASE_ENV and SandboxConfig.env. Kept apart from
the lifecycle in docker.py so that a review of what the sandbox may do reads one file, top to
bottom, with no control flow in the way.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.sandbox.base import WORKSPACE, SandboxConfig
from runner.sandbox.docker_engine import LABEL, LABEL_DEADLINE, LABEL_OWNER_HOST, LABEL_OWNER_PID, LABEL_RUN_ID
from runner.sandbox.docker_files import IN_HELPER_LIB, SandboxFiles
from runner.sandbox.docker_git import GIT_TMPFS_SIZE, IN_GIT_DIR, IN_OBJECTS

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
IN_CA_BUNDLE = "/astra/ca-certificates.crt"

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


def _setup_env() -> dict[str, str]:
    """The extra environment of setup commands (root, with the network): the host CA bundle."""
    env = {"HOME": "/root"}
    if HOST_CA_BUNDLE.is_file():
        env.update(SSL_CERT_FILE=IN_CA_BUNDLE, PIP_CERT=IN_CA_BUNDLE, REQUESTS_CA_BUNDLE=IN_CA_BUNDLE,
                   CURL_CA_BUNDLE=IN_CA_BUNDLE, GIT_SSL_CAINFO=IN_CA_BUNDLE, NODE_EXTRA_CA_CERTS=IN_CA_BUNDLE)
    return env


def network_ever(cfg: SandboxConfig) -> bool:
    """Whether the container has a network at some point: for setup (cut before the agent), or all
    along (`sandbox.network: bridge`)."""
    return bool(cfg.setup) or cfg.network == "bridge"


def _container_spec(cfg: SandboxConfig, name: str, uid: int, gid: int, objects: Path | None,
                    files: SandboxFiles, helper: list[str] | None = None) -> dict[str, Any]:
    """The keyword arguments of `containers.create` for one run's container.

    `helper`: the agent helper's argv when it is to be the container's own process, attached
    (no setup phase: docker_attach.py) - PID 1 itself, stdin open, no docker-init; it ends the
    container at `--deadline-s`, given here. None: PID 1 is docker-init's bounded `sleep`.

    Every mount source is the worktree, the object store or a file of `files` (docker_files.py):
    all in the cache, so a daemon that shares only the cache can run the sandbox.
    """
    from docker.types import Mount

    mounts = [
        Mount(WORKSPACE, str(cfg.worktree.resolve()), type="bind"),
        Mount(IN_HELPER, str(files.helper), type="bind", read_only=True),
        Mount(IN_HELPER_LIB, str(files.helper_lib), type="bind", read_only=True),
    ]
    if files.gitfile is not None:
        mounts.append(Mount(f"{WORKSPACE}/.git", str(files.gitfile), type="bind", read_only=True))
    if objects is not None:
        mounts.append(Mount(IN_OBJECTS, str(objects), type="bind", read_only=True))
    if cfg.setup and files.ca_bundle is not None:
        mounts.append(Mount(IN_CA_BUNDLE, str(files.ca_bundle), type="bind", read_only=True))
    offline = not network_ever(cfg)
    if files.hosts is not None:  # made for an offline container only (docker.py)
        mounts.append(Mount("/etc/hosts", str(files.hosts), type="bind", read_only=True))
    lifetime = int(cfg.deadline_s + DEADLINE_MARGIN_S)
    labels = {
        LABEL: "1",
        LABEL_RUN_ID: cfg.run_id,
        LABEL_OWNER_PID: str(os.getpid()),
        LABEL_OWNER_HOST: socket.gethostname(),
        LABEL_DEADLINE: str(int(time.time()) + lifetime),
    }
    assert not (helper and cfg.setup), "a setup phase needs the exec path"
    return dict(
        image=cfg.image,
        command=[*helper, "--deadline-s", str(lifetime)] if helper else ["sleep", str(lifetime)],
        name=name,
        hostname="sandbox",
        labels=labels,
        environment={**BASE_ENV, **cfg.env},
        # docker 20.10 grants an exec process capabilities only when the *container's*
        # user is root (measured: `exec -u 0` in a uid-1000 container holds none), so a
        # container whose setup needs capabilities is created as root.
        user="0:0" if cfg.setup else f"{uid}:{gid}",
        working_dir=WORKSPACE,
        network_mode="none" if offline else "bridge",
        # Never a network: the daemon then makes no network sandbox at all (no libnetwork
        # namespace, no prestart hook re-executing dockerd: half of `start`, measured); runc
        # gives the container a new network namespace with only loopback, as `none` does.
        network_disabled=offline,
        cap_drop=["ALL"],
        cap_add=list(SETUP_CAPS) if cfg.setup else None,
        security_opt=["no-new-privileges"],
        init=not helper,
        nano_cpus=int(cfg.cpus * 1e9),
        mem_limit=cfg.memory,
        memswap_limit=cfg.memory,
        pids_limit=cfg.pids,
        mounts=mounts,
        tmpfs={IN_GIT_DIR: f"uid={uid},gid={gid},mode=0700,size={GIT_TMPFS_SIZE}"},
        auto_remove=True,
        stdin_open=bool(helper),  # OpenStdin + StdinOnce: the attach stream's end is the helper's EOF
        tty=False,
    )
