"""Host git for the GitHub flow: fetching the base and PR head, and the one commit that is pushed.

Everything runs through runner.workspace's safety rules (system/global config off, hooks off,
fsmonitor off). The commit is made without any working tree: a private index file gets the base
commit's tree, the patch is applied to that index only (`git apply --cached`), and
`write-tree`/`commit-tree` make the commit. The checkout's working tree, HEAD and index are
never touched, and nothing the sandbox wrote is read except the patch text itself.

The token reaches git only for `fetch`/`push` to origin, as an `http.<server>/.extraheader` set
through `GIT_CONFIG_COUNT` environment variables of that one process: never written to any config
file. Pushes never force: a plain `<sha>:refs/heads/<branch>` refspec that fails if it is not a
fast-forward.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ConfigError
from runner.workspace import GitError, git, resolve_commit, trusted_git_dir
from runner.yamlio import MAX_FILE_BYTES, decode_utf8

AUTHOR_NAME = "astra-run"
AUTHOR_EMAIL = "astra-run@users.noreply.github.com"
PROTECTED_DIRS = (".github/workflows", ".github/actions")
"""Changes here run with the repository's secrets once pushed: published only when allowed.
Matched case-insensitively (a checkout on a case-insensitive file system makes `.GitHub/Workflows`
the same directory), as the directory itself or anything under it; `.github` itself is protected
too (replacing it by a symlink would redirect both)."""
SYMLINK_MODE = "120000"


def _out(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode("utf-8", "replace").strip()


def git_dir_of(checkout: Path) -> Path:
    return trusted_git_dir(str(checkout), Path(os.devnull))  # a local path: the cache is never used


def auth_env(token: str, server_url: str) -> dict[str, str]:
    """Config for one git process: the token as an extra header for `server_url` only."""
    if not token:
        return {}
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    key = f"http.{server_url.rstrip('/')}/.extraheader"
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": key, "GIT_CONFIG_VALUE_0": "",  # reset any header a checkout persisted
        "GIT_CONFIG_KEY_1": key, "GIT_CONFIG_VALUE_1": f"AUTHORIZATION: basic {basic}",
    }


def _remote_git(args: Sequence[str], git_dir: Path, token: str, server_url: str) -> subprocess.CompletedProcess[bytes]:
    """git fetch/push to origin with a minimal environment: the token, and no other secret."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
                                       "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy") if k in os.environ}
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
                "GIT_ASKPASS": "/bin/false", "LC_ALL": "C"})
    env.update(auth_env(token, server_url))
    cmd = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "protocol.file.allow=always",
           f"--git-dir={git_dir}", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=600)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} timed out") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        if token:
            err = err.replace(token, "[REDACTED]")
        raise GitError(f"git {' '.join(args[:2])} failed: {err}")
    return proc


def fetch(git_dir: Path, refspec_src: str, local_ref: str, token: str, server_url: str) -> str:
    """Fetch `refspec_src` from origin into `local_ref`; returns the commit it names."""
    _remote_git(["fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "origin",
                 f"+{refspec_src}:{local_ref}"], git_dir, token, server_url)
    return rev_parse(git_dir, local_ref)


def rev_parse(git_dir: Path, ref: str) -> str:
    return resolve_commit(git_dir, ref)


def has_commit(git_dir: Path, sha: str) -> bool:
    return git(["cat-file", "-e", f"{sha}^{{commit}}"], git_dir=git_dir, check=False).returncode == 0


def read_file_at(git_dir: Path, commit: str, path: str, what: str = "file", *, source: str | None = None,
                 limit: int = MAX_FILE_BYTES) -> str | None:
    """The text of `path` in `commit`, with the limits of a file on disk: a regular file (not a
    symlink, a directory or a submodule), at most `limit` bytes, UTF-8. None when there is none;
    ConfigError (naming `source`) when it cannot be used."""
    shown = source or f"{commit}:{path}"
    listing = git(["ls-tree", "-l", "-z", commit, "--", path], git_dir=git_dir, check=False)
    entry = listing.stdout.split(b"\0", 1)[0].decode("utf-8", "replace") if listing.returncode == 0 else ""
    meta, tab, name = entry.partition("\t")
    if not tab or name != path:
        return None
    mode, kind, sha, size = [*meta.split(), "", "", "", ""][:4]
    if kind != "blob" or mode not in ("100644", "100755"):
        what_it_is = {"120000": "a symbolic link", "160000": "a submodule", "040000": "a directory"}.get(mode, kind)
        raise ConfigError(f"{shown}: the {what} is not a regular file ({what_it_is})")
    if not size.isdigit() or int(size) > limit:
        raise ConfigError(f"{shown}: the {what} is larger than {limit // 1024} KiB")
    proc = git(["cat-file", "blob", sha], git_dir=git_dir, check=False)
    if proc.returncode != 0:
        return None
    return decode_utf8(proc.stdout, shown, what)


def check_branch_name(git_dir: Path, name: str) -> bool:
    """`name` is a valid branch name (`git check-ref-format --branch`; `@{-1}`-style names refused)."""
    if not name or name.startswith("-") or "@{" in name or name in ("@", "HEAD"):
        return False
    proc = git(["check-ref-format", "--branch", name], git_dir=git_dir, check=False)
    return proc.returncode == 0 and _out(proc) == name


@dataclass(frozen=True)
class Commit:
    sha: str
    files: tuple[str, ...]
    symlinks: tuple[tuple[str, str], ...] = ()
    """Symlinks the commit adds or changes: (path, target)."""
    tree_symlinks: tuple[tuple[str, str], ...] = ()
    """Every symlink of the published tree (changed or not): a new link is judged through them."""


def _norm(path: str) -> str:
    """A repository path as a case-insensitive file system (or Windows) would resolve it."""
    parts = [p.rstrip(" .") for p in path.replace("\\", "/").split("/")]
    return "/".join(p for p in parts if p).casefold()


def is_protected(path: str) -> bool:
    p = _norm(path)
    return p == ".github" or any(p == d or p.startswith(d + "/") for d in PROTECTED_DIRS)


def protected_files(files: Sequence[str]) -> list[str]:
    return [f for f in files if is_protected(f)]


MAX_LINK_HOPS = 40
"""As the kernel's limit: a longer chain (or a loop) is refused."""


def _in_github(path: str) -> bool:
    p = _norm(path)
    return p == ".github" or p.startswith(".github/")


def resolve_in_tree(path: str, links: dict[str, str]) -> tuple[str | None, bool]:
    """Where `path` leads in the published tree, following its symlinks (`links`: normalised path
    -> target) as a checkout would: (the resolved repository path, or None when it leaves the
    repository - an absolute target, `..` above the root, a loop - ; whether any step was
    `.github` or under it)."""
    todo = [p for p in path.replace("\\", "/").split("/")][::-1]
    done: list[str] = []
    hops, touched = 0, False
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                return None, touched  # above the root: on Actions that is `<repo>/<repo>`'s parent
            done.pop()
            continue
        done.append(part)
        here = "/".join(done)
        touched = touched or _in_github(here)
        target = links.get(_norm(here))
        if target is not None:
            hops += 1
            target = target.replace("\\", "/")
            if hops > MAX_LINK_HOPS or target.startswith("/") or re.match(r"[A-Za-z]:", target):
                return None, touched
            done.pop()
            todo.extend(target.split("/")[::-1])
    return "/".join(done), touched


def risky_symlinks(commit: Commit) -> list[str]:
    """Symlinks the commit adds or changes that are, lead into or through `.github`, or leave the
    repository, judged by where they resolve in the published tree (through its other links):
    never published - they would redirect the workflow or action directories past the
    protected-path check. A link out of the repository is refused too: in a checkout named like
    the repository (`/home/runner/work/widgets/widgets`, as on Actions) `../widgets/.github`
    is the repository's own `.github`, and where else it lands cannot be known."""
    links = {_norm(p): t for p, t in (*commit.tree_symlinks, *commit.symlinks)}
    risky = []
    for path, target in commit.symlinks:
        resolved, touched = resolve_in_tree(path, links)
        if resolved is None or touched or _in_github(path):
            risky.append(f"{path} -> {target}")
    return risky


def _tree_symlinks(git_dir: Path, tree: str) -> tuple[tuple[str, str], ...]:
    raw = git(["ls-tree", "-r", "-z", "--full-tree", tree], git_dir=git_dir).stdout.decode("utf-8", "surrogateescape")
    found = []
    for entry in raw.split("\0"):
        meta, _, path = entry.partition("\t")
        if meta.startswith(SYMLINK_MODE + " "):
            sha = meta.split()[2]
            target = git(["cat-file", "blob", sha], git_dir=git_dir).stdout.decode("utf-8", "surrogateescape")
            found.append((path, target))
    return tuple(found)


def _changes(git_dir: Path, base: str, env: dict[str, str]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    raw = git(["diff", "--cached", "--raw", "-z", "--no-renames", "--no-abbrev", base], git_dir=git_dir, env=env)
    fields = raw.stdout.decode("utf-8", "surrogateescape").split("\0")
    files: list[str] = []
    links: list[tuple[str, str]] = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta.startswith(":"):
            continue
        _old_mode, new_mode, _old, new_sha, _status = meta[1:].split()
        files.append(path)
        if new_mode == SYMLINK_MODE:
            target = git(["cat-file", "blob", new_sha], git_dir=git_dir).stdout.decode("utf-8", "surrogateescape")
            links.append((path, target))
    return tuple(files), tuple(links)


def commit_patch(git_dir: Path, base: str, patch: Path, message: str) -> Commit:
    """One commit: `patch` applied on `base` in a private index (no working tree). Never pushes."""
    with tempfile.TemporaryDirectory(prefix="astra-publish-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"),
               "GIT_AUTHOR_NAME": AUTHOR_NAME, "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
               "GIT_COMMITTER_NAME": AUTHOR_NAME, "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL}
        git(["read-tree", base], git_dir=git_dir, env=env)
        git(["apply", "--cached", "--binary", "--whitespace=nowarn", str(patch)], git_dir=git_dir, env=env)
        files, links = _changes(git_dir, base, env)
        tree = _out(git(["write-tree"], git_dir=git_dir, env=env))
        msg_file = Path(tmp) / "message"
        msg_file.write_text(message, encoding="utf-8")
        sha = _out(git(["commit-tree", tree, "-p", base, "-F", str(msg_file)], git_dir=git_dir, env=env))
    return Commit(sha, files, links, _tree_symlinks(git_dir, tree))


def push(git_dir: Path, sha: str, branch: str, token: str, server_url: str) -> None:
    """Push `sha` to origin's `refs/heads/<branch>`: creates it or fast-forwards it, never forces."""
    if not check_branch_name(git_dir, branch) or branch.startswith("+") or ":" in branch:
        raise GitError(f"refusing to push to the branch name {branch!r}")
    _remote_git(["push", "--quiet", "--no-verify", "origin", f"{sha}:refs/heads/{branch}"],
                git_dir, token, server_url)
