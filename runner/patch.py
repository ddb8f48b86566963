"""patch.diff: what the agent changed, computed by host git from a worktree the sandbox wrote.

The worktree is hostile input, so the computation is defensive (DESIGN.md "Host git never reads
anything the sandbox can write"):
- a private git dir (empty config, no hooks) and a throwaway index: no config, hook, filter or
  fsmonitor anyone planted can run, and the worktree's own index is never touched;
- git runs as asyncio subprocesses with a deadline, killed on timeout or cancellation, so a
  signal or the wall clock never waits on a stuck `git add`;
- files git should not read are left out before `git add` and reported: not regular files
  (FIFOs, sockets, devices), files over `MAX_FILE_BYTES` (a 50 GB sparse file would keep git
  busy for minutes), unreadable files;
- files whose content holds a known secret (as is, behind XML/URL/escape encodings or terminal
  escapes, base64 at any alignment, hex - see runner/redact.py) are left out too, binary files
  included, since redacting a binary hunk cannot work.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.redact import Redactor
from runner.result import FileChange, PatchStats
from runner.workspace import SAFE_CONFIG, GitError, Workspace, git_env

MAX_FILE_BYTES = 10 * 1024 * 1024
"""A changed file larger than this is left out of the patch (and listed): patch.diff is for review
and `git apply`, and three 20 MB files made a 77 MB patch (issue 12.7)."""
PATCH_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Patch:
    data: bytes
    stats: PatchStats
    excluded: tuple[tuple[str, str], ...] = field(default=())
    """(path, why) for every changed file left out of the patch."""


async def agit(
    ws: Workspace, args: Sequence[str], *, env: Mapping[str, str], deadline: float, stdin: bytes | None = None
) -> bytes:
    """Host git on the worktree with the private patch git dir; killed at `deadline` or on cancel."""
    proc = await asyncio.create_subprocess_exec(
        "git", *SAFE_CONFIG, f"--git-dir={ws.patch_git_dir}", f"--work-tree={ws.path}", *args,
        cwd=ws.path, env=git_env(env),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    remaining = deadline - asyncio.get_running_loop().time()
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), max(remaining, 0.1))
    except BaseException as exc:  # timeout, cancellation: never leave git running
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
        if isinstance(exc, TimeoutError):
            raise GitError(f"git {args[0]} did not finish within the patch time limit") from None
        raise
    if proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {err.decode('utf-8', 'replace').strip()[-500:]}")
    return out


def _unfit_files(root: Path) -> list[tuple[str, str]]:
    """Files `git add` should not read: special files, huge files, unreadable files (no symlink followed)."""
    found: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):  # symlinks are not followed
        dirnames[:] = [d for d in dirnames if d != ".git"]  # nested repositories are gitlinks
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                found.append((rel, "not a regular file"))
            elif st.st_size > MAX_FILE_BYTES:
                found.append((rel, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MB"))
            elif not os.access(full, os.R_OK):
                found.append((rel, "not readable"))
    return found


async def compute_patch(
    ws: Workspace, *, secrets: Iterable[str] = (), time_limit_s: float = PATCH_TIMEOUT_S
) -> Patch:
    """`git diff --binary` of the worktree against the base, new, deleted and binary files included."""
    deadline = asyncio.get_running_loop().time() + time_limit_s
    index = ws.path.parent / "patch.index"
    index.unlink(missing_ok=True)
    env = {"GIT_INDEX_FILE": str(index)}
    excluded = await asyncio.to_thread(_unfit_files, ws.path)
    if excluded:  # only what git would take: ignored files are never in the patch (nor may be named)
        ignored = await _ignored(ws, [p for p, _ in excluded], env, deadline)
        excluded = [(p, why) for p, why in excluded if p not in ignored]
    try:
        await agit(ws, ["read-tree", ws.base_commit], env=env, deadline=deadline)
        specs = [f":(exclude,literal){path}" for path, _ in excluded]
        await agit(ws, ["add", "--all", "--", ".", *specs], env=env, deadline=deadline)
        common = ["--cached", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames",
                  "--ignore-submodules=all", ws.base_commit]
        leaking = await _files_holding_secrets(ws, env, deadline, common, Redactor(secrets))
        if leaking:
            await agit(ws, ["reset", "-q", ws.base_commit, "--", *(f":(literal){p}" for p in leaking)],
                       env=env, deadline=deadline)
            excluded += [(p, "holds a secret") for p in leaking]
        data = await agit(ws, ["diff", "--binary", "--full-index", *common], env=env, deadline=deadline)
        numstat = await agit(ws, ["diff", "--numstat", "-z", *common], env=env, deadline=deadline)
    finally:
        index.unlink(missing_ok=True)
    return Patch(data, parse_numstat(numstat), tuple(sorted(excluded)))


async def _files_holding_secrets(
    ws: Workspace, env: Mapping[str, str], deadline: float, common: Sequence[str], redactor: Redactor
) -> list[str]:
    if not redactor.known_values:
        return []
    raw = await agit(ws, ["diff", "--name-only", "-z", "--diff-filter=AMT", *common], env=env, deadline=deadline)
    paths = [p for p in raw.decode("utf-8", "surrogateescape").split("\0") if p]
    if not paths:
        return []
    staged = await agit(ws, ["ls-files", "-s", "-z", "--", *(f":(literal){p}" for p in paths)],
                        env=env, deadline=deadline)
    blobs: dict[str, str] = {}
    for entry in staged.decode("utf-8", "surrogateescape").split("\0"):
        if entry:
            meta, path = entry.split("\t", 1)
            blobs[path] = meta.split()[1]
    leaking = []
    for path, sha in blobs.items():
        content = await agit(ws, ["cat-file", "blob", sha], env=env, deadline=deadline)
        if redactor.holds_known_secret(content):  # as is, decoded (XML, URL, escapes), base64 at any offset, hex
            leaking.append(path)
    return leaking


async def _ignored(ws: Workspace, paths: Sequence[str], env: Mapping[str, str], deadline: float) -> set[str]:
    proc_input = "\0".join(paths).encode("utf-8", "surrogateescape") + b"\0"
    try:
        out = await agit(ws, ["check-ignore", "-z", "--stdin", "--no-index"], env=env, deadline=deadline,
                         stdin=proc_input)
    except GitError:  # exit 1: nothing ignored
        return set()
    return {p for p in out.decode("utf-8", "surrogateescape").split("\0") if p}


def parse_numstat(raw: bytes) -> PatchStats:
    files: list[FileChange] = []
    for entry in raw.decode("utf-8", "replace").split("\0"):
        if not entry.strip():
            continue
        added, deleted, path = entry.split("\t", 2)
        binary = added == "-"
        files.append(FileChange(path, 0 if binary else int(added), 0 if binary else int(deleted), binary))
    return PatchStats(
        files_changed=len(files),
        insertions=sum(f.insertions for f in files),
        deletions=sum(f.deletions for f in files),
        files=tuple(files),
    )
