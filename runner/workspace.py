"""The workspace: a trusted git dir, a worktree at the base commit, and the patch out of it.

Safety rules (DESIGN.md):
- The user's repository is never changed: the worktree is detached (no branch), its index and
  HEAD live in the worktree's own admin dir, and it is unregistered at the end unless --keep.
- Host git never reads configuration the sandbox could have written: it runs with explicit
  --git-dir/--work-tree, system and global config off, hooks off, fsmonitor off, no external
  diff or textconv. The sandbox sees the worktree's files only, never the trusted git dir.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner import diskcap, objectstore
from runner.diskcap import IMAGE_NAME, LoopMount
from runner.errors import ConfigError, InfraError, SandboxError
from runner.objectstore import ObjectStore, private_dirs
from runner.procs import pid_alive
from runner.task import is_git_url
from runner.walk import remove_tree

GIT_TIMEOUT_S = 600.0
OWNER_FILE = "owner.json"
KEPT_FILE = "kept"
"""In a run dir: its worktree was kept (--keep, or a patch that could not be saved); cleanup leaves it."""
SAFE_CONFIG = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.untrackedCache=false",
    "-c", "diff.external=",
    # A repository the agent plants inside the worktree becomes a gitlink; git would run *its*
    # config (core.fsmonitor) to look inside it. Never look inside nested repositories.
    "-c", "diff.ignoreSubmodules=all",
    "-c", "submodule.recurse=false",
    "-c", "status.submoduleSummary=false",
    "-c", "protocol.file.allow=always",
    "-c", "advice.detachedHead=false",
)


class GitError(InfraError):
    """git failed on the host (exit 4)."""


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for host git: no system/global config, no prompts, no GIT_* leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ATTR_NOSYSTEM": "1",
            "LC_ALL": "C",
        }
    )
    env.update(extra or {})
    return env


def git(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    work_tree: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = GIT_TIMEOUT_S,
) -> subprocess.CompletedProcess[bytes]:
    """Run host git safely. Output is bytes (patches must not be decoded or stripped)."""
    cmd = ["git", *SAFE_CONFIG]
    if git_dir is not None:
        cmd.append(f"--git-dir={git_dir}")
    if work_tree is not None:
        cmd.append(f"--work-tree={work_tree}")
    cmd.extend(args)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, env=git_env(env), timeout=timeout, stdin=subprocess.DEVNULL,
            cwd=work_tree or git_dir or None,
        )
    except FileNotFoundError:
        raise GitError("git is not installed on this machine") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} timed out after {timeout:.0f}s") from None
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise GitError(f"git {' '.join(args[:2])} failed: {err}")
    return proc


def _out(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode("utf-8", "replace").strip()


# ------------------------------------------------------------------------------- sources


def mirror_path(cache: Path, url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rstrip("/").rsplit("/", 1)[-1])[:40]
    return cache / "mirrors" / f"{name}-{digest}.git"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def trusted_git_dir(repo: str, cache: Path) -> Path:
    """The git dir the runner trusts: the local repo's common dir, or a cached mirror of a URL."""
    if is_git_url(repo):
        mirror = mirror_path(cache, repo)
        with _locked(mirror.with_suffix(".lock")):
            if (mirror / "HEAD").exists():
                git(["fetch", "--prune", "--quiet", "origin", "+refs/*:refs/*"], git_dir=mirror)
            else:
                tmp = mirror.with_suffix(".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                git(["clone", "--mirror", "--quiet", repo, str(tmp)])
                tmp.rename(mirror)
        return mirror
    path = Path(repo)
    found = subprocess.run(
        ["git", *SAFE_CONFIG, "-C", str(path), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True, env=git_env(), stdin=subprocess.DEVNULL, timeout=60,
    )
    if found.returncode != 0:
        raise ConfigError(f"repo: {path} is not a git repository")
    return Path(_out(found))


def resolve_commit(git_dir: Path, ref: str | None) -> str:
    spec = f"{ref or 'HEAD'}^{{commit}}"
    proc = git(["rev-parse", "--verify", "--quiet", "--end-of-options", spec], git_dir=git_dir, check=False)
    if proc.returncode != 0:
        raise ConfigError(f"ref: {ref or 'HEAD'} does not name a commit in {git_dir}")
    return _out(proc)


# ----------------------------------------------------------------------------- worktree


@dataclass
class Workspace:
    """A detached worktree of `git_dir` at `base_commit`, in `path`."""

    git_dir: Path
    """The trusted common git dir (the user's repo's .git, or a mirror)."""
    base_commit: str
    path: Path
    admin_dir: Path
    """The worktree's own git dir (`<git_dir>/worktrees/<name>`): its HEAD and index."""
    patch_git_dir: Path
    """A private bare git dir (alternates -> the trusted objects) used only to compute the patch."""
    lock: Path
    """Serialises worktree add/remove on this repository (batch runs share repositories)."""
    cache: Path | None = None
    """ASTRA_CACHE: where the per-commit object stores live (runner/objectstore.py)."""
    store: ObjectStore | None = None
    """The object store git inside the sandbox uses, held until `remove`."""
    loop: LoopMount | None = None
    """The worktree's own file system, sized to sandbox.disk (runner/diskcap.py), when it has one."""
    disk_problem: str | None = None
    """Why the worktree could not have its own file system, when one was asked for."""

    @classmethod
    def create(cls, repo: str, ref: str | None, run_dir: Path, cache: Path, *,
               disk_bytes: int | None = None, disk_required: bool = False) -> Workspace:
        """`disk_bytes`: put the worktree on a loop-mounted file system of that size (the kernel
        then holds its total: runner/diskcap.py). When that cannot be made, the worktree is a
        plain directory and `disk_problem` says why - or, `disk_required`, SandboxError."""
        run_dir, cache = run_dir.resolve(), cache.resolve()  # git runs elsewhere: relative paths would move
        git_dir = trusted_git_dir(repo, cache)
        commit = resolve_commit(git_dir, ref)
        path = run_dir / "worktree"
        private_dirs(run_dir)
        lock = worktree_lock(cache, git_dir)
        # Who owns this run dir: `astra-run cleanup` removes it once that process is gone.
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "git_dir": str(git_dir)}
        (run_dir / OWNER_FILE).write_text(json.dumps(owner))
        # Mounted before `git worktree add` (which takes an existing empty directory); a crash from
        # here on is reclaimed by `astra-run cleanup` (the owner file is written).
        loop, disk_problem = None, None
        if disk_bytes is not None:
            try:
                loop = LoopMount.create(run_dir / IMAGE_NAME, path, disk_bytes, uid=os.getuid(), gid=os.getgid())
            except SandboxError as exc:
                if disk_required:
                    raise SandboxError(f"ASTRA_DISK_CAP=kernel, but the worktree's file system failed: {exc}") from None
                disk_problem = str(exc)
        try:
            with _locked(lock):  # concurrent `git worktree add` on one repo races on its admin files
                git(["worktree", "add", "--detach", "--quiet", str(path), commit], git_dir=git_dir)
        except BaseException:
            if loop is not None:
                loop.remove()
            raise
        patch_git = run_dir / "patch.git"
        ws = cls(git_dir=git_dir, base_commit=commit, path=path, admin_dir=path, patch_git_dir=patch_git,
                 lock=lock, cache=cache, loop=loop, disk_problem=disk_problem)
        try:  # from here on, a failure (a full cache, a signal) must not leave the worktree registered
            dotgit = (path / ".git").read_text().strip()
            ws.admin_dir = Path(dotgit.removeprefix("gitdir:").strip())
            # The patch is computed with a git dir of our own: empty config, no hooks, the trusted
            # objects borrowed read-only. No config anyone else wrote (not even the repo's own
            # filters) can run while we read files the sandbox wrote.
            _init_bare(patch_git, alternates=git_dir / "objects", sha256=len(commit) == 64)
        except BaseException:
            ws.remove()
            raise
        return ws

    def open_objects(self) -> ObjectStore:
        """The store of only the objects the base commit reaches, for git inside the sandbox.

        Mounting the trusted objects dir itself would show the model every other branch, stash
        and dangling object of the user's repository; this shows the base history and no more.
        Made once per base commit in the cache and shared by every run on it (objectstore.py);
        held until `remove`, so no pruner takes it away while the sandbox reads it. Its directory
        exists on return; `finish()` writes it when this run is the first on that commit.
        """
        if self.store is None:
            cache = self.cache if self.cache is not None else self.path.parent / "cache"
            try:
                self.store = objectstore.open_store(cache, self.git_dir, self.base_commit,
                                                    git_argv=["git", *SAFE_CONFIG], env=git_env(),
                                                    timeout=GIT_TIMEOUT_S)
            except objectstore.StoreError as exc:
                raise GitError(f"exporting the base history for the sandbox failed: {exc}") from None
        return self.store

    def finish_objects(self) -> None:
        """Write the store `open_objects` prepared, if this run makes it (blocking; GitError)."""
        try:
            self.open_objects().finish()
        except objectstore.StoreError as exc:
            raise GitError(f"exporting the base history for the sandbox failed: {exc}") from None

    def export_objects(self) -> Path:
        """`open_objects` and `finish_objects` in one: the complete store's objects directory."""
        self.finish_objects()
        return self.open_objects().objects

    def read_base_file(self, name: str, commit: str | None = None) -> str | None:
        """A file as it is at the base commit, or `commit` (never as the sandbox may have changed it)."""
        proc = git(["show", f"{commit or self.base_commit}:{name}"], git_dir=self.git_dir, check=False)
        if proc.returncode != 0:
            return None
        return proc.stdout.decode("utf-8", "replace")

    def read_first_base_file(self, names: Sequence[str], commit: str | None = None) -> tuple[str, str] | None:
        """The first of `names` that is a file at the base commit (or `commit`), with its text:
        one `git cat-file --batch` for all of them (they are on the start path)."""
        rev = commit or self.base_commit
        query = "".join(f"{rev}:{name}\n" for name in names if "\n" not in name).encode()
        proc = subprocess.run(["git", *SAFE_CONFIG, f"--git-dir={self.git_dir}", "cat-file", "--batch"],
                              input=query, capture_output=True, env=git_env(), timeout=GIT_TIMEOUT_S)
        if proc.returncode != 0:
            raise GitError(f"git cat-file failed: {proc.stderr.decode('utf-8', 'replace').strip()}")
        out, at = proc.stdout, 0
        for name in names:
            end = out.find(b"\n", at)
            if end < 0:
                break
            header = out[at:end].split()
            at = end + 1
            if len(header) != 3:  # "<rev> missing" (or ambiguous): not there
                continue
            size = int(header[2])
            data, at = out[at:at + size], at + size + 1
            if header[1] == b"blob":
                return name, data.decode("utf-8", "replace")
        return None

    def remove(self) -> None:
        """Unregister and delete the worktree. Never raises: cleanup must not hide the result."""
        if self.store is not None:
            self.store.release()
        with _locked(self.lock):
            if self.loop is not None:  # everything in it goes at once; then git forgets the worktree
                with contextlib.suppress(Exception):
                    self.loop.remove()
            removed = False
            with contextlib.suppress(InfraError):
                removed = git(["worktree", "remove", "--force", "--force", str(self.path)], git_dir=self.git_dir,
                              check=False).returncode == 0
            if self.path.exists():
                remove_tree(self.path)  # iterative: a tree the model made 1,100 levels deep is no error
            if not removed or self.admin_dir.exists():  # else `remove` unregistered it: no second git
                with contextlib.suppress(InfraError):
                    git(["worktree", "prune"], git_dir=self.git_dir, check=False)
        remove_tree(self.path.parent)

    def attach_disk(self, disk_bytes: int) -> None:
        """Move a plain worktree (a resumed run's) onto its own file system of `disk_bytes`: a new
        image mounted aside, the files copied in, then mounted at the worktree's path. SandboxError
        (nothing changed) when that cannot be done - the files do not fit, mounting fails."""
        if self.loop is not None:
            return
        run_dir = self.path.parent
        aside = LoopMount.create(run_dir / IMAGE_NAME, run_dir / "worktree.new", disk_bytes,
                                 uid=os.getuid(), gid=os.getgid())
        try:
            subprocess.run(["cp", "-a", "--", f"{self.path}/.", str(aside.mountpoint)], check=True,
                           capture_output=True, timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL)
            aside.unmount()
        except (OSError, subprocess.SubprocessError) as exc:
            aside.remove()
            os.rmdir(aside.mountpoint)
            err = exc.stderr.decode(errors="replace").strip()[-300:] if isinstance(exc, subprocess.CalledProcessError) \
                else str(exc)
            raise SandboxError(f"the worktree does not fit on a file system of sandbox.disk: {err}") from None
        os.rmdir(aside.mountpoint)
        old = run_dir / "worktree.old"
        os.rename(self.path, old)
        self.path.mkdir()
        loop = LoopMount(run_dir / IMAGE_NAME, self.path)
        try:
            loop.mount()
        except BaseException:
            os.rmdir(self.path)
            os.rename(old, self.path)
            loop.remove()
            raise
        self.loop = loop
        remove_tree(old)

    def detach_disk(self) -> None:
        """A worktree that outlives the run (--keep, a lost patch, `run --resume`) becomes a plain
        directory with the same files: nothing stays mounted once the run is over."""
        if self.loop is not None:
            loop, self.loop = self.loop, None  # unmounted either way (copy_out)
            loop.copy_out()

    def mark_kept(self) -> None:
        """Keep this run's worktree from `astra-run cleanup` (the user, or a lost patch, needs it)."""
        (self.path.parent / KEPT_FILE).touch()


def _init_bare(path: Path, *, alternates: Path, sha256: bool) -> None:
    """What `git init --bare --template=` writes, written directly: one git process fewer per run."""
    for sub in ("objects/info", "objects/pack", "refs/heads", "refs/tags"):
        (path / sub).mkdir(parents=True)
    (path / "HEAD").write_text("ref: refs/heads/main\n")
    (path / "config").write_text(
        "[core]\n\trepositoryformatversion = {}\n\tfilemode = true\n\tbare = true\n{}".format(
            1 if sha256 else 0, "[extensions]\n\tobjectformat = sha256\n" if sha256 else ""))
    (path / "objects" / "info" / "alternates").write_text(f"{alternates}\n")


def worktree_lock(cache: Path, git_dir: Path) -> Path:
    """A lock file in our cache (never in the user's repository) for one trusted git dir."""
    return cache / "locks" / (hashlib.sha256(str(git_dir).encode()).hexdigest()[:16] + ".lock")


def cleanup_dead_runs(cache: Path) -> list[str]:
    """Remove the worktrees (and run dirs) of runs whose owning process is gone on this host."""
    removed: list[str] = []
    runs = cache / "runs"
    if not runs.is_dir():
        return removed
    for run_dir in sorted(runs.iterdir()):
        try:
            owner = json.loads((run_dir / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if owner.get("host") != socket.gethostname() or pid_alive(int(owner.get("pid", 0))):
            continue
        if (run_dir / KEPT_FILE).exists():  # the person's: only its file system goes (the files stay)
            if diskcap.is_mounted(run_dir / "worktree"):
                with contextlib.suppress(Exception):
                    LoopMount(run_dir / IMAGE_NAME, run_dir / "worktree").copy_out()
            continue
        git_dir = Path(owner.get("git_dir", ""))
        with _locked(worktree_lock(cache, git_dir)):
            with contextlib.suppress(Exception):  # its own file system: unmounted, the image deleted
                diskcap.reclaim(run_dir)
            if (run_dir / "worktree").exists() and git_dir.is_dir():
                with contextlib.suppress(InfraError):
                    git(["worktree", "remove", "--force", "--force", str(run_dir / "worktree")],
                        git_dir=git_dir, check=False)
            remove_tree(run_dir)
            if git_dir.is_dir():
                with contextlib.suppress(InfraError):
                    git(["worktree", "prune"], git_dir=git_dir, check=False)
        removed.append(run_dir.name)
    return removed
