"""Object stores for git inside the sandbox: the objects one base commit reaches, made once, shared.

Git inside a docker sandbox borrows its objects (read-only, through alternates) from a store that
holds what the base commit reaches and nothing else: mounting the trusted objects dir itself
would show the model every other branch, stash and dangling object of the user's repository.

Making that store costs time in the size of the history (pytest's 163k objects: ~0.7 s), so it is
made once per base commit and reused by every run on that commit:

- `cache/objects/<commit>/objects/pack/pack-*.{pack,idx}`: written by one `git pack-objects
  --revs <dir>/pack` (pack and index together; no second `index-pack` pass over the data);
  `complete` is written last, so a store without it is a crashed build, never used.
- `cache/objects/<commit>.lock`: a run holds it shared (flock) for as long as it uses the store;
  a build holds it exclusively. A pruner removes only stores whose lock it gets exclusively
  without waiting, so a store some run is using is never changed or removed. A complete store
  is never written again.
- Pruned: stores unused for MAX_AGE_S, whenever a new store is made, and every store no run
  holds by `astra-run cleanup`. The `complete` file's mtime is the last use.

Keyed by the commit id alone: a commit id names its whole history, so two clones of one
repository share a store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

MAX_AGE_S = 3 * 24 * 3600
"""A store nobody used for this long is removed when another one is made."""
COMPLETE = "complete"
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class StoreError(Exception):
    """Making the store failed (the caller turns it into its own error class)."""


@dataclass
class ObjectStore:
    """A complete store, held shared until `release` (or until this process ends)."""

    objects: Path
    """The directory to mount read-only at the sandbox's alternates path."""
    built: bool
    """True when this call made it (the first run on that commit), False when it was reused."""
    _lock: IO[str] | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing drops the flock
            self._lock = None


def stores_dir(cache: Path) -> Path:
    return cache / "objects"


def acquire(cache: Path, git_dir: Path, commit: str, *, git_argv: list[str], env: dict[str, str],
            timeout: float) -> ObjectStore:
    """The store of `commit`, made from `git_dir` if no complete one exists; held shared on return.

    `git_argv`: how to run trusted host git (its safe `-c` flags); `env`: its clean environment.
    """
    if not _COMMIT.fullmatch(commit):
        raise StoreError(f"not a full commit id: {commit!r}")
    root = stores_dir(cache)
    root.mkdir(parents=True, exist_ok=True)
    store, lock_path = root / commit, root / f"{commit}.lock"
    built = False
    for _ in range(5):  # a pruner may remove a store between our exclusive and shared holds
        lock = _locked(lock_path, fcntl.LOCK_SH)
        try:
            if (store / COMPLETE).is_file():
                with contextlib.suppress(OSError):
                    os.utime(store / COMPLETE)  # last use, for pruning by age
                return ObjectStore(objects=store / "objects", built=built, _lock=lock)
        except BaseException:
            lock.close()
            raise
        lock.close()
        with _locked(lock_path, fcntl.LOCK_EX):  # one builder; the others wait here, then reuse it
            if not (store / COMPLETE).is_file():
                _build(store, git_dir, commit, git_argv=git_argv, env=env, timeout=timeout)
                built = True
        if built:
            prune(cache, older_than_s=MAX_AGE_S)
    raise StoreError(f"the object store of {commit} kept disappearing while it was being taken")


def _locked(path: Path, operation: int) -> IO[str]:
    """`path` opened and flocked; retried when a pruner unlinked it meanwhile (a stale inode locks nothing)."""
    while True:
        lock = open(path, "a")  # noqa: SIM115 - returned open: closing it drops the lock
        try:
            fcntl.flock(lock, operation)
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(lock.fileno()).st_ino:
                    return lock
        except BaseException:
            lock.close()
            raise
        lock.close()


def _build(store: Path, git_dir: Path, commit: str, *, git_argv: list[str], env: dict[str, str],
           timeout: float) -> None:
    """Write the store (the caller holds its lock exclusively)."""
    shutil.rmtree(store, ignore_errors=True)  # a crashed build's leftovers
    pack_dir = store / "objects" / "pack"
    pack_dir.mkdir(parents=True)
    (store / "objects" / "info").mkdir()
    # pack-objects writes pack and index itself, as temporary files in the repository's own
    # object dir renamed into place: the store is made the object dir (the repository's objects
    # are borrowed through the environment, never written down), so those renames stay on the
    # cache's filesystem whatever the repository's is.
    env = {**env, "GIT_OBJECT_DIRECTORY": str(store / "objects"),
           "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(git_dir / "objects")}
    try:
        # --window=0: reuse the deltas the repository already has instead of searching anew
        # (most of pack-objects' time otherwise; a slightly larger pack is the cheaper side).
        proc = subprocess.run(
            [*git_argv, f"--git-dir={git_dir}", "pack-objects", "--revs", "-q", "--window=0",
             "--delta-base-offset", str(pack_dir / "pack")],
            input=f"{commit}\n".encode(), capture_output=True, env=env, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(store, ignore_errors=True)
        raise StoreError(f"writing the object store timed out after {timeout:.0f}s") from None
    if proc.returncode != 0:
        shutil.rmtree(store, ignore_errors=True)
        raise StoreError(proc.stderr.decode("utf-8", "replace").strip())
    (store / COMPLETE).write_text(f"{commit}\n")


def prune(cache: Path, *, older_than_s: float = 0.0) -> list[str]:
    """Remove the stores no run holds and nobody used for `older_than_s`; return their commits."""
    root = stores_dir(cache)
    removed: list[str] = []
    if not root.is_dir():
        return removed
    now = time.time()
    for lock_path in sorted(root.glob("*.lock")):
        commit = lock_path.name.removesuffix(".lock")
        store = root / commit
        try:
            used = (store / COMPLETE).stat().st_mtime
        except OSError:
            used = 0.0  # incomplete: a crashed build, unless someone is building it (locked)
        if now - used < older_than_s:
            continue
        try:
            lock = _locked(lock_path, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # in use (or being built)
        with lock:
            shutil.rmtree(store, ignore_errors=True)
            lock_path.unlink(missing_ok=True)  # under the lock: a waiter then sees a new inode
        removed.append(commit)
    return removed
