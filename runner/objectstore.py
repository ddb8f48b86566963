"""Object stores for git inside the sandbox: the objects one base commit reaches, made once, shared.

Git inside a docker sandbox borrows its objects (read-only, through alternates) from a store that
holds what the base commit reaches and nothing else: mounting the trusted objects dir itself
would show the model every other branch, stash and dangling object of the user's repository.

Making that store costs time in the size of the history (pytest's 163k objects: ~0.7 s), so it is
made once per base commit and reused by every run on that commit:

- `cache/objects/<commit>/objects/pack/pack-*.{pack,idx}`: written by one `git pack-objects
  --revs <dir>/pack` (pack and index together; no second `index-pack` pass over the data);
  `complete` is written last, so a store without it is a crashed build, never used.
- `cache/objects/<commit>.lock` (the *use* lock): every run holds it shared for as long as it
  uses the store, from before the store is made until the run ends. A pruner removes only stores
  whose use lock it gets exclusively without waiting, so a store some run is using (or making)
  is never changed or removed. A complete store is never written again.
- `cache/objects/<commit>.build` (the *build* lock): one run makes the store, holding it
  exclusively (and the use lock shared); the others wait for it, then reuse the store.
- Two phases (`open_store`, then `PendingStore.finish`): the store's directory exists as soon as
  `open_store` returns, so the sandbox's container can be created with it mounted while
  pack-objects is still writing into it; git inside is set up only after `finish`.
- Pruned: stores unused for MAX_AGE_S, whenever a new store is made, and every store no run
  holds by `astra-run cleanup`. The `complete` file's mtime is the last use.
- A new commit on top of one that has a store (tonight's main on last night's) does not pay for
  the whole history again: the ancestor's packs are hard-linked into the new store and only the
  objects the new commit adds (`<commit> ^<ancestor>`) are packed. What an ancestor reaches the
  commit reaches too, so the store still holds exactly the base commit's objects; the links make
  it independent of the ancestor's (pruning that one later takes nothing from it). Ancestry is
  asked of the trusted repository (`merge-base --is-ancestor`); a chain of MAX_PACKS packs is
  packed anew in one, so git inside never searches a long list of packs.

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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

MAX_AGE_S = 3 * 24 * 3600
"""A store nobody used for this long is removed when another one is made."""
COMPLETE = "complete"
MAX_PACKS = 16
"""A store holding this many packs is not linked into a new one: the new one is packed whole."""
ANCESTOR_CANDIDATES = 8
"""How many of the most recently used stores are asked whether they are an ancestor."""
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_PACK_FILE = re.compile(r"pack-[0-9a-f]{40,64}\.(pack|idx|rev)")


class StoreError(Exception):
    """Making the store failed (the caller turns it into its own error class)."""


@dataclass
class ObjectStore:
    """A store held shared until `release` (or until this process ends); complete after `finish`."""

    objects: Path
    """The directory to mount read-only at the sandbox's alternates path (it exists already)."""
    built: bool = False
    """True when this run made it (the first run on that commit), False when it was reused."""
    _use: IO[str] | None = field(default=None, repr=False)
    _build: IO[str] | None = field(default=None, repr=False)
    """Held while this run still has to write the store (`finish` writes it and lets go)."""
    _make: tuple[Path, Path, str, list[str], dict[str, str], float] | None = field(default=None, repr=False)

    _writing: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _writer: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        return (self.objects.parent / COMPLETE).is_file()

    def finish(self) -> None:
        """Write the store if this run is its builder (slow: the history's size); else nothing.

        Runs in a worker thread while the sandbox starts; `release` from another thread stops it.
        """
        with self._writing:
            if self._build is None or self._make is None:
                return
            store, git_dir, commit, git_argv, env, timeout = self._make
            try:
                _write(store, git_dir, commit, git_argv=git_argv, env=env, timeout=timeout,
                       started=lambda proc: setattr(self, "_writer", proc))
                self.built = True
            finally:
                self._writer = None
                self._build.close()
                self._build, self._make = None, None
        prune(store.parent.parent, older_than_s=MAX_AGE_S)

    def release(self) -> None:
        """Let go of the store; a write still running is killed first (its store is then remade)."""
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.kill()
        with self._writing:  # the writer has let go of the directory before anyone else may
            for lock in (self._build, self._use):
                if lock is not None:
                    lock.close()  # closing drops the flock
            self._build = self._use = None


def private_dirs(path: Path) -> None:
    """`mkdir -p` whose new directories are 0700 whatever the umask (GitLab's runner uses 0000):
    the sandbox's mount sources live below, and nobody else may rename what is on their way."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)


def stores_dir(cache: Path) -> Path:
    return cache / "objects"


def open_store(cache: Path, git_dir: Path, commit: str, *, git_argv: list[str], env: dict[str, str],
               timeout: float) -> ObjectStore:
    """The store of `commit`, held shared: complete, or made ready for this run to `finish` it.

    Waits while another run is making it. `git_argv`: how to run trusted host git (its safe `-c`
    flags); `env`: its clean environment.
    """
    if not _COMMIT.fullmatch(commit):
        raise StoreError(f"not a full commit id: {commit!r}")
    root = stores_dir(cache)
    private_dirs(root)
    store = root / commit
    use = _locked(root / f"{commit}.lock", fcntl.LOCK_SH)
    try:
        held = ObjectStore(objects=store / "objects", _use=use)
        if not held.complete:
            build = _locked(root / f"{commit}.build", fcntl.LOCK_EX)  # one builder; the others wait
            if held.complete:
                build.close()  # made while we waited
            else:
                shutil.rmtree(store, ignore_errors=True)  # a crashed build's leftovers
                # 0755 whatever the umask: the sandbox's uid reads it; only we write it.
                for directory in (store, store / "objects", store / "objects" / "pack", store / "objects" / "info"):
                    directory.mkdir()
                    directory.chmod(0o755)
                held._build, held._make = build, (store, git_dir, commit, git_argv, env, timeout)
                return held
        with contextlib.suppress(OSError):
            os.utime(store / COMPLETE)  # last use, for pruning by age
        return held
    except BaseException:
        use.close()
        raise


def acquire(cache: Path, git_dir: Path, commit: str, *, git_argv: list[str], env: dict[str, str],
            timeout: float) -> ObjectStore:
    """`open_store` and `finish` in one: the complete store, held shared."""
    held = open_store(cache, git_dir, commit, git_argv=git_argv, env=env, timeout=timeout)
    try:
        held.finish()
    except BaseException:
        held.release()
        raise
    return held


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


def _write(store: Path, git_dir: Path, commit: str, *, git_argv: list[str], env: dict[str, str],
           timeout: float, started: Callable[[subprocess.Popen[bytes]], None]) -> None:
    """Write the pack into the prepared store (the caller holds its build lock)."""
    pack_dir = store / "objects" / "pack"
    # pack-objects writes pack and index itself, as temporary files in the repository's own
    # object dir renamed into place: the store is made the object dir (the repository's objects
    # are borrowed through the environment, never written down), so those renames stay on the
    # cache's filesystem whatever the repository's is.
    ancestor = _link_ancestor(store.parent, git_dir, commit, pack_dir, git_argv=git_argv, env=env)
    env = {**env, "GIT_OBJECT_DIRECTORY": str(store / "objects"),
           "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(git_dir / "objects")}
    # --window=0: reuse the deltas the repository already has instead of searching anew
    # (most of pack-objects' time otherwise; a slightly larger pack is the cheaper side). Not
    # --thin: every delta's base is in this pack, so it never depends on the ancestor's.
    proc = subprocess.Popen(
        [*git_argv, f"--git-dir={git_dir}", "pack-objects", "--revs", "-q", "--window=0",
         "--delta-base-offset", str(pack_dir / "pack")],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )
    started(proc)
    revs = f"{commit}\n" + (f"^{ancestor}\n" if ancestor else "")
    try:
        _, err = proc.communicate(revs.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        shutil.rmtree(store, ignore_errors=True)
        raise StoreError(f"writing the object store timed out after {timeout:.0f}s") from None
    if proc.returncode != 0:
        shutil.rmtree(store, ignore_errors=True)
        raise StoreError(err.decode("utf-8", "replace").strip() or f"git pack-objects exited {proc.returncode}")
    (store / COMPLETE).write_text(f"{commit}\n")


def _link_ancestor(root: Path, git_dir: Path, commit: str, pack_dir: Path, *, git_argv: list[str],
                   env: dict[str, str]) -> str | None:
    """Hard-link into `pack_dir` the packs of the most recently used complete store whose commit
    is an ancestor of `commit`; return that commit, or None (nothing linked: pack it whole).

    The ancestor's store is held shared while its files are linked, so no pruner removes it
    midway; once linked, the files are the new store's too. Links that cannot be made (another
    file system, no hard links) are undone and the store is packed whole."""
    stores: list[tuple[float, str]] = []
    for marker in root.glob(f"*/{COMPLETE}"):
        name = marker.parent.name
        if _COMMIT.fullmatch(name) and name != commit:
            with contextlib.suppress(OSError):
                stores.append((marker.stat().st_mtime, name))
    for _, other in sorted(stores, reverse=True)[:ANCESTOR_CANDIDATES]:
        try:
            asked = subprocess.run(
                [*git_argv, f"--git-dir={git_dir}", "merge-base", "--is-ancestor", other, commit],
                stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=60)
        except subprocess.TimeoutExpired:
            return None
        if asked.returncode != 0:  # 1: not an ancestor; 128: a commit of another repository
            continue
        try:
            use = _locked(root / f"{other}.lock", fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # being pruned
        with use:
            source = root / other / "objects" / "pack"
            if not (root / other / COMPLETE).is_file():
                continue
            files = sorted(p for p in source.iterdir() if _PACK_FILE.fullmatch(p.name))
            if sum(p.suffix == ".pack" for p in files) >= MAX_PACKS:
                return None  # a long chain: packed whole, in one pack, from here on
            linked: list[Path] = []
            try:
                for f in files:
                    os.link(f, pack_dir / f.name)
                    linked.append(pack_dir / f.name)
            except OSError:
                for done in linked:
                    done.unlink(missing_ok=True)
                return None
            return other
    return None


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
            # Under the lock (no run is using or making it): a waiter then sees a new inode.
            (root / f"{commit}.build").unlink(missing_ok=True)
            lock_path.unlink(missing_ok=True)
        removed.append(commit)
    return removed
