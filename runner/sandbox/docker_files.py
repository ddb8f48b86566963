"""The files a sandbox container is given besides the worktree, and which host paths may be mounted.

Docker resolves a bind mount's source path *on the daemon's machine*, following symlinks, as
root. Two consequences shape this module:

1. **Only what the daemon can see.** A daemon in another container or on another machine (a
   Kubernetes `docker:dind` sidecar, GitLab's `docker:dind` service, a remote `DOCKER_HOST`)
   shares the runner's cache volume and nothing else. So nothing is mounted from the runner's
   own install (site-packages) or its /tmp: the helper, the worktree's gitfile and setup's CA
   bundle are copied into a per-run directory *beside the worktree* (`runs/<id>/sandbox-files-*`
   in the cache), and the object store git reads inside lives in the cache too
   (runner/objectstore.py). The cache is the one path a daemon must share, at the same path.
2. **No predictable shared path is trusted** (issue 12, item 2). A path another local user can
   rename or replace lets them point the daemon at any file on the machine (the Docker socket, a
   root-only key). So the per-run directory is made fresh with an exclusive `mkdir` (never
   `exist_ok`), its files with `O_EXCL | O_NOFOLLOW`, and every mount source is checked by
   `check_mount_source`: each directory from `/` down to it must belong to root or to us, those
   astra-run made (the cache's `runs/`, `objects/` and below, created 0700) must be writable by
   nobody else (a sticky directory such as /tmp is fine: others cannot rename our entries in
   it), and the path must not go through a symlink that someone else could change.
"""

from __future__ import annotations

import functools
import importlib.util
import marshal
import os
import secrets
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from runner.errors import SandboxError
from runner.sandbox.base import HELPER_PATH

GITFILE_CONTENT_PREFIX = "gitdir: "


@dataclass(frozen=True)
class SandboxFiles:
    """The per-run directory of files bind-mounted read-only into one container."""

    directory: Path
    helper: Path
    """The helper's launcher (`python3 -I -S /astra/helper.py ...`): it imports `helper_lib`."""
    helper_lib: Path
    """A directory: the helper as a module, and its compiled form (see `compiled_helper`)."""
    gitfile: Path | None
    ca_bundle: Path | None
    hosts: Path | None = None
    """/etc/hosts for a container without networking (`network_disabled`: the daemon writes none)."""

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)  # the umask may have taken bits away


IN_HELPER_LIB = "/astra/lib"
HELPER_LAUNCHER = (
    b"# astra-run's sandbox helper: the module in /astra/lib, from its compiled form when this\n"
    b"# python3 is the runner's version (a script is compiled at every start; a module's cache is not).\n"
    b"import sys\n"
    b"sys.path[:0] = ['" + IN_HELPER_LIB.encode() + b"']\n"
    b"from helper import main\n"
    b"sys.exit(main(sys.argv[1:]))\n"
)


@functools.cache
def compiled_helper() -> tuple[bytes, str | None, bytes | None]:
    """(the helper's source, its cache file's name under /astra/lib, that file's bytes).

    The image's python3 compiles the helper (900 lines) at every container start, ~10-25 ms of
    the start's CPU, unless it finds the module's compiled form: an unchecked-hash .pyc (PEP 552)
    for the runner's own interpreter, made here once per process. A python3 of another version
    looks for another file name (its cache tag) and compiles the source, as before; it cannot
    write a cache of its own (the directory is mounted read-only)."""
    source = HELPER_PATH.read_bytes()
    tag = sys.implementation.cache_tag
    if tag is None:
        return source, None, None
    code = compile(source, f"{IN_HELPER_LIB}/helper.py", "exec", dont_inherit=True)
    flags = (0b01).to_bytes(4, "little")  # hash-based, source not checked: the bytes beside it are the same
    pyc = importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source) + marshal.dumps(code)
    return source, f"__pycache__/helper.{tag}.pyc", pyc


HOSTS = (b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
         b"ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
"""What Docker writes into /etc/hosts of a `--network none` container: `localhost` must resolve."""


def make_sandbox_files(worktree: Path, *, uid: int, gid: int, git_dir_inside: str | None,
                       ca_bundle: Path | None, hosts: bool = False) -> SandboxFiles:
    """A fresh private directory beside `worktree` with the helper, the gitfile, the CA bundle
    and (`hosts`) an /etc/hosts.

    `git_dir_inside`: what the worktree's `.git` must point at inside (None: no gitfile). The
    gitfile belongs to the agent's uid, since git refuses a `.git` another user owns.
    """
    parent = worktree.resolve().parent
    check_mount_source(parent, strict_below=parent.parent)
    directory = parent / f"sandbox-files-{secrets.token_hex(6)}"
    try:
        directory.mkdir(mode=0o700)  # exclusive: a directory someone made before us fails here
    except OSError as exc:
        raise SandboxError(f"cannot make the sandbox's files directory in {parent}: {exc}") from None
    try:
        helper = directory / "helper.py"
        _write_new(helper, HELPER_LAUNCHER, 0o644)
        helper_lib = directory / "helper-lib"
        helper_lib.mkdir(mode=0o755)
        source, cached, compiled = compiled_helper()
        _write_new(helper_lib / "helper.py", source, 0o644)
        if cached is not None and compiled is not None:
            (helper_lib / "__pycache__").mkdir(mode=0o755)
            _write_new(helper_lib / cached, compiled, 0o644)
        gitfile = None
        if git_dir_inside is not None:
            gitfile = directory / "gitfile"
            _write_new(gitfile, f"{GITFILE_CONTENT_PREFIX}{git_dir_inside}\n".encode(), 0o644)
            if (uid, gid) != (os.getuid(), os.getgid()):
                os.chown(gitfile, uid, gid, follow_symlinks=False)
        bundle = None
        if ca_bundle is not None and ca_bundle.is_file():
            bundle = directory / "ca-certificates.crt"
            _write_new(bundle, ca_bundle.read_bytes(), 0o644)
        hosts_file = None
        if hosts:
            hosts_file = directory / "hosts"
            _write_new(hosts_file, HOSTS, 0o644)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return SandboxFiles(directory=directory, helper=helper, helper_lib=helper_lib, gitfile=gitfile, ca_bundle=bundle,
                        hosts=hosts_file)


def check_mount_source(path: Path, *, strict_below: Path | None = None) -> None:
    """Refuse a bind-mount source that anyone but root and us could redirect (see the module doc).

    Walks from `/` to `path` component by component with lstat: a symlink is followed only when
    it belongs to root or us (and its target passes the same walk), and every directory on the
    way must belong to root or us. Directories at or below `strict_below` (what astra-run made:
    the cache's `runs/` and `objects/`) must also be writable by nobody else unless sticky;
    above it, a directory the user chose to put the cache in (a Kubernetes emptyDir is 0777)
    is judged by its owner alone.
    """
    uid, gid = os.getuid(), os.getgid()
    trusted_owners = {0, uid}
    strict = None if strict_below is None else Path(os.path.abspath(strict_below))
    current = Path("/")
    remaining = list(Path(os.path.abspath(path)).parts[1:])
    hops = 0
    while True:
        st = os.lstat(current)
        if stat.S_ISLNK(st.st_mode):
            raise SandboxError(f"internal error: {current} is a symlink")  # resolved below, never kept
        # The source itself may belong to the sandbox's uid (a root runner's worktree for uid
        # 1000): what matters is that nobody else can swap it, which its parents decide.
        checked = strict is None or current == strict or current.is_relative_to(strict)
        problem = _unsafe(st, trusted_owners, gid, owner_only=not checked) if remaining else ""
        if problem:
            raise SandboxError(f"refusing to mount {path} into the sandbox: {current} {problem}, so another "
                               "user could redirect what the Docker daemon mounts (ASTRA_CACHE must be private)")
        if not remaining:
            return
        step = current / remaining.pop(0)
        try:
            link = os.lstat(step)
        except FileNotFoundError:
            raise SandboxError(f"cannot mount {path} into the sandbox: {step} does not exist") from None
        if stat.S_ISLNK(link.st_mode):
            hops += 1
            if hops > 40:
                raise SandboxError(f"cannot mount {path} into the sandbox: too many symlinks")
            if link.st_uid not in trusted_owners:
                raise SandboxError(f"refusing to mount {path} into the sandbox: the symlink {step} belongs to "
                                   f"uid {link.st_uid}")
            target = Path(os.readlink(step))
            target = target if target.is_absolute() else current / target
            remaining = list(Path(os.path.normpath(target)).parts[1:]) + remaining
            current = Path("/")
            continue
        current = step


def _unsafe(st: os.stat_result, trusted_owners: set[int], gid: int, *, owner_only: bool = False) -> str:
    if st.st_uid not in trusted_owners:
        return f"belongs to uid {st.st_uid}"
    if owner_only or not stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_ISVTX:
        return ""  # a sticky directory: nobody else may rename or remove what is ours in it
    if st.st_mode & stat.S_IWOTH:
        return "is writable by every user"
    if st.st_mode & stat.S_IWGRP and st.st_gid not in {0, gid}:
        return f"is writable by group {st.st_gid}"
    return ""
