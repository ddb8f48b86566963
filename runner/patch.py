"""patch.diff: what the agent changed, computed by host git from a worktree the sandbox wrote.

The worktree is hostile input, so the computation is defensive (DESIGN.md "Host git never reads
anything the sandbox can write"):
- a private git dir (empty config, no hooks) and a throwaway index: no config, hook, filter or
  fsmonitor anyone planted can run, and the worktree's own index is never touched;
- git runs as asyncio subprocesses with a deadline, killed on timeout or cancellation, so a
  signal or the wall clock never waits on a stuck `git add`;
- files git should not read are left out before `git add` and reported: not regular files
  (FIFOs, sockets, devices), files over `MAX_FILE_BYTES` (a 50 GB sparse file would keep git
  busy for minutes), unreadable files; and, once the patch has MAX_PATCH_BYTES, every further
  file whose diff would pass that total;
- files whose content holds a known secret (as is, behind XML/URL/escape encodings or terminal
  escapes, base64 at any alignment, hex - see runner/redact.py) are left out too, binary files
  included, since redacting a binary hunk cannot work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.procs import communicate
from runner.redact import Redactor
from runner.result import FileChange, PatchStats
from runner.walk import walk
from runner.workspace import SAFE_CONFIG, GitError, Workspace, git_env

MAX_FILE_BYTES = 10 * 1024 * 1024
"""A changed file larger than this is left out of the patch (and listed): patch.diff is for review
and `git apply`, and three 20 MB files made a 77 MB patch (issue 12.7)."""
MAX_PATCH_BYTES = 20 * 1024 * 1024
"""patch.diff holds at most this much: changed files are taken in the patch's (path) order, and one
whose diff would pass the total is left out (and listed) - many files under MAX_FILE_BYTES each
cannot add up to a patch nobody can review."""
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
    try:  # timeout, cancellation: git is killed and reaped (runner.procs.communicate)
        out, err = await asyncio.wait_for(communicate(proc, stdin), max(remaining, 0.1))
    except TimeoutError:
        raise GitError(f"git {args[0]} did not finish within the patch time limit") from None
    if proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {err.decode('utf-8', 'replace').strip()[-500:]}")
    return out


def _unfit_files(root: Path) -> list[tuple[str, str]]:
    """Files `git add` should not read: special files, huge files, unreadable files (no symlink followed)."""
    found: list[tuple[str, str]] = []
    # Iterative (a tree 1,100 levels deep is not an error); symlinks are not followed;
    # nested repositories are gitlinks, never entered.
    for dirpath, _dirs, filenames in walk(root, skip={".git"}):
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
    """`git diff --binary` of the worktree against the base, new, deleted and binary files included.

    No path ever goes on git's command line: however many files the agent made (100k paths
    overflow argv), they travel NUL-separated on stdin (`--pathspec-from-file`, `--stdin`,
    `cat-file --batch`). Any failure raises GitError: a patch that cannot be computed is an
    error of the run, never an empty patch.
    """
    deadline = asyncio.get_running_loop().time() + time_limit_s
    index = ws.path.parent / "patch.index"
    index.unlink(missing_ok=True)
    env = {"GIT_INDEX_FILE": str(index)}
    excluded = await asyncio.to_thread(_unfit_files, ws.path)
    if excluded:  # only what git would take: ignored files are never in the patch (nor may be named)
        ignored = await _ignored(ws, [p for p, _ in excluded], env, deadline)
        excluded = [(p, why) for p, why in excluded if p not in ignored]
    try:
        await _base_index(ws, index, env, deadline)
        specs = [".", *(f":(exclude,literal){path}" for path, _ in excluded)]
        await agit(ws, ["add", "--all", "--pathspec-from-file=-", "--pathspec-file-nul"], env=env,
                   deadline=deadline, stdin=_nul_list(specs))
        diff = await _diff(ws, env, deadline)
        leaking = await _files_holding_secrets(ws, diff.raw, env, deadline, Redactor(secrets))
        if leaking:
            await _unstage(ws, leaking, env, deadline)
            excluded += [(p, "holds a secret") for p in leaking]
            diff = await _diff(ws, env, deadline)
        if len(diff.patch) > MAX_PATCH_BYTES:
            over = _past_the_total(diff.patch, MAX_PATCH_BYTES)
            await _unstage(ws, over, env, deadline)
            excluded += [(p, f"the patch would pass its {MAX_PATCH_BYTES >> 20} MB total") for p in over]
            diff = await _diff(ws, env, deadline)
    finally:
        index.unlink(missing_ok=True)
    return Patch(diff.patch, parse_numstat(diff.numstat), tuple(sorted(excluded)))


async def _base_index(ws: Workspace, index: Path, env: Mapping[str, str], deadline: float) -> None:
    """The patch's index starts as the base commit's tree. Copied from the worktree's own index
    (host git wrote it at `git worktree add`; the sandbox cannot reach it), whose stat data lets
    `git add` hash only the files that changed - `read-tree` leaves none, and `git add` then hashes
    every file of the worktree. The copy keeps the index's mtime, so git's racy-clean check (a
    file changed in the same instant the index was written) works as on the original."""
    own = ws.admin_dir / "index"
    try:
        if stat.S_ISREG(os.lstat(own).st_mode):
            await asyncio.to_thread(shutil.copy2, own, index)
            return
    except OSError:
        index.unlink(missing_ok=True)
    await agit(ws, ["read-tree", ws.base_commit], env=env, deadline=deadline)


async def _unstage(ws: Workspace, paths: Iterable[str], env: Mapping[str, str], deadline: float) -> None:
    await agit(ws, ["reset", "-q", "--pathspec-from-file=-", "--pathspec-file-nul", ws.base_commit],
               env=env, deadline=deadline, stdin=_nul_list(f":(literal){p}" for p in paths))


@dataclass(frozen=True)
class _Diff:
    raw: list[tuple[str, str]]
    """(`:<old mode> <new mode> <old sha> <new sha> <status>`, path) per changed file."""
    numstat: bytes
    patch: bytes


async def _diff(ws: Workspace, env: Mapping[str, str], deadline: float) -> _Diff:
    """The index against the base: the changed files (raw), their line counts and the binary
    patch, from one `git diff` (one process, not three)."""
    out = await agit(ws, ["diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames",
                          "--ignore-submodules=all", "--raw", "--numstat", "--binary", "--full-index",
                          "--no-abbrev", "-z", ws.base_commit], env=env, deadline=deadline)
    return split_diff(out)


def split_diff(out: bytes) -> _Diff:
    """`git diff --raw --numstat --patch -z` is the raw records (`:meta\0path\0` each), then the
    numstat records (`added\tdeleted\tpath\0` each), then an empty field, then the patch (paths
    cannot hold a NUL, so the first empty field is that separator)."""
    raw: list[tuple[str, str]] = []
    pos = 0
    while out.startswith(b":", pos):  # a meta field; the path after it is taken whatever it starts with
        meta_end = out.index(b"\0", pos)
        path_end = out.index(b"\0", meta_end + 1)
        raw.append((out[pos:meta_end].decode("ascii"), out[meta_end + 1:path_end].decode("utf-8", "surrogateescape")))
        pos = path_end + 1
    start = pos
    while pos < len(out) and out[pos] != 0:
        pos = out.index(b"\0", pos) + 1
    numstat = out[start:pos]
    if pos < len(out):  # the separator
        pos += 1
    if bool(raw) != bool(out[pos:]) or (raw and not out.startswith(b"diff --git ", pos)):
        raise GitError("git diff: unexpected output (the changed files, their counts and the patch)")
    return _Diff(raw, numstat, out[pos:])


_SECTION = re.compile(rb"^diff --git ", re.MULTILINE)
_ESCAPES = {ord(k): v for k, v in {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34,
                                   "\\": 92}.items()}


def _header_path(line: bytes) -> str:
    """The path of a `diff --git a/P b/P` header (no renames: both sides are P), C-quoting undone."""
    rest = line[len(b"diff --git "):]
    if not rest.startswith(b'"'):
        return rest[2:2 + (len(rest) - 5) // 2].decode("utf-8", "surrogateescape")
    out, i = bytearray(), 1
    while i < len(rest) and rest[i] != ord('"'):
        if rest[i] == ord("\\") and i + 1 < len(rest):
            if rest[i + 1:i + 4].isdigit():
                out.append(int(rest[i + 1:i + 4], 8) & 0xFF)
                i += 4
                continue
            out.append(_ESCAPES.get(rest[i + 1], rest[i + 1]))
            i += 2
            continue
        out.append(rest[i])
        i += 1
    return bytes(out)[2:].decode("utf-8", "surrogateescape")


def _past_the_total(data: bytes, limit: int) -> list[str]:
    """The files (in the patch's order) whose diff would take the patch past `limit` bytes."""
    starts = [m.start() for m in _SECTION.finditer(data)]
    sizes: dict[str, int] = {}  # a type change is two sections of one path
    for start, end in zip(starts, [*starts[1:], len(data)], strict=True):
        newline = data.find(b"\n", start, end)
        path = _header_path(data[start:newline if newline >= 0 else end])
        sizes[path] = sizes.get(path, 0) + end - start
    total, over = 0, []
    for path, size in sizes.items():
        if total + size <= limit:
            total += size
        else:
            over.append(path)
    return over


def _nul_list(items: Iterable[str]) -> bytes:
    return b"".join(item.encode("utf-8", "surrogateescape") + b"\0" for item in items)


async def _files_holding_secrets(
    ws: Workspace, raw: Sequence[tuple[str, str]], env: Mapping[str, str], deadline: float, redactor: Redactor
) -> list[str]:
    """The added or modified paths whose new content holds a known secret (one `cat-file --batch`)."""
    if not redactor.known_values:
        return []
    blobs: dict[str, list[str]] = {}
    for meta, path in raw:
        parts = meta.split()  # `:<old mode> <new mode> <old sha> <new sha> <status>`
        if len(parts) >= 5 and parts[4][:1] in ("A", "M", "T") and parts[1] != "160000":  # a gitlink has no blob
            blobs.setdefault(parts[3], []).append(path)
    if not blobs:
        return []
    found = await _blobs_holding(ws, list(blobs), redactor, env=env, deadline=deadline)
    return sorted(path for sha in found for path in blobs[sha])


async def _blobs_holding(
    ws: Workspace, shas: Sequence[str], redactor: Redactor, *, env: Mapping[str, str], deadline: float
) -> set[str]:
    """The blobs among `shas` whose content holds a known secret, streamed through one
    `git cat-file --batch` (one process, not one per file; a blob at a time in memory)."""
    proc = await asyncio.create_subprocess_exec(
        "git", *SAFE_CONFIG, f"--git-dir={ws.patch_git_dir}", "cat-file", "--batch",
        cwd=ws.path, env=git_env(env),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def feed() -> None:
        with contextlib.suppress(ConnectionError):
            for sha in shas:
                stdin.write(sha.encode() + b"\n")
                await stdin.drain()
            stdin.close()

    async def scan() -> set[str]:
        found: set[str] = set()
        for sha in shas:
            header = (await stdout.readline()).split()
            if len(header) != 3:
                raise GitError(f"git cat-file --batch: unexpected answer for {sha}: {b' '.join(header)!r}")
            content = await stdout.readexactly(int(header[2]) + 1)  # the content and its newline
            if redactor.holds_known_secret(content):  # as is, decoded, base64 at any offset, hex
                found.add(sha)
        return found

    feeder = asyncio.ensure_future(feed())
    try:
        remaining = max(deadline - asyncio.get_running_loop().time(), 0.1)
        try:
            found = await asyncio.wait_for(scan(), remaining)
        except TimeoutError:
            raise GitError("git cat-file did not finish within the patch time limit") from None
        except asyncio.IncompleteReadError:
            raise GitError("git cat-file --batch ended early") from None
        await feeder
        await proc.wait()
    finally:
        feeder.cancel()
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
    return found


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
