"""Workspace paths and gitignore-style patterns for the file tools' rules (matched by `pathspec`).

`normalise(path)` gives the workspace-relative path (`./a/../b` -> `b`, `/workspace/src/x.py` ->
`src/x.py`, the root -> `.`), or None when the path leaves the workspace (`../x`, `/etc/passwd`,
`a/../../x`) or is not a usable path (empty, NUL). Symbolic links are not resolved: the policy
never touches the file system (see the package docstring).

`FilePattern(pattern)` follows .gitignore (pathspec's GitIgnoreSpec): `*` and `?` never match `/`;
`[abc]` classes; `**/x`, `x/**`, `a/**/b`; a pattern with a `/` at its start or in its middle is
anchored at the workspace root, one without matches a name at any depth; a pattern covers a path
when it matches the path or one of its parent directories (`.git` covers `.git/config`). A
trailing `/` is accepted and ignored. Negation (`!x`) is not supported: write a deny rule instead.
For paths only known at run time, runner.policy.targets asks whether a pattern *may* match.
"""

from __future__ import annotations

import posixpath

from pathspec import GitIgnoreSpec

from runner.policy.script import ANY

WORKSPACE = "/workspace"


def normalise(path: str) -> str | None:
    if not path or "\x00" in path:
        return None
    if path.startswith("/"):
        if path.rstrip("/") == WORKSPACE:
            return "."
        if not path.startswith(WORKSPACE + "/"):
            return None
        path = path[len(WORKSPACE) + 1:]
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) or "."


def pattern_problem(pattern: str) -> str | None:
    """Why a file pattern is not usable, or None."""
    if not pattern.strip():
        return "the pattern is empty"
    if pattern.startswith("!"):
        return "negated patterns (!) are not supported: write a deny rule instead"
    parts = pattern.strip("/").split("/")
    if ".." in parts:
        return "the pattern holds '..': patterns match normalised paths inside the workspace"
    try:
        FilePattern(pattern)
    except ValueError as exc:
        return f"bad pattern: {exc}"
    return None


class FilePattern:
    def __init__(self, pattern: str) -> None:
        text = pattern.strip()
        stripped = text.rstrip("/") or text
        self.text = stripped
        self.anchored = "/" in stripped
        self.spec = GitIgnoreSpec.from_lines([stripped])
        if not self.spec.patterns or not any(p.include for p in self.spec.patterns):
            raise ValueError(f"{pattern!r} matches nothing")

    def matches(self, path: str, *, directory: bool = False) -> bool:
        """Does the pattern cover `path` (normalised)? A directory also counts as covered when the
        pattern covers what is inside it (`src/**` covers listing `src`)."""
        if path != "." and self.spec.match_file(path):
            return True
        return directory and bool(self.spec.match_file("\x00" if path == "." else path + "/\x00"))


def resolve(cwd: str, path: str) -> str:
    """A directory or file path -> workspace-relative (`.`, `src/x`), absolute outside it, or ANY."""
    if cwd == ANY and not path.startswith("/"):
        return ANY
    base = WORKSPACE if cwd == "." else (cwd if cwd.startswith("/") else f"{WORKSPACE}/{cwd}")
    full = posixpath.normpath(posixpath.join(base, path))
    full = "/" + full.lstrip("/")
    if full == WORKSPACE:
        return "."
    if full.startswith(WORKSPACE + "/"):
        return full[len(WORKSPACE) + 1:]
    return full
