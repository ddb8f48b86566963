"""Workspace paths and gitignore-style patterns for the file tools' rules.

`normalise(path)` gives the workspace-relative path (`./a/../b` -> `b`, `/workspace/src/x.py` ->
`src/x.py`, the root -> `.`), or None when the path leaves the workspace (`../x`, `/etc/passwd`,
`a/../../x`) or is not a usable path (empty, NUL). Symbolic links are not resolved: the policy
never touches the file system (see the package docstring).

`compile_pattern(pattern)` follows .gitignore:
- `*` and `?` never match `/`; `[abc]`, `[!a-z]` classes; a backslash escapes the next character;
- `**/x` matches x at any depth, `x/**` everything inside x, `a/**/b` zero or more directories;
- a pattern with a `/` at its start or in its middle is anchored at the workspace root (the leading
  `/` is dropped); one without (`*.py`, `.git`, `build/`) matches a name at any depth;
- a pattern matches a path when it matches the path or one of its parent directories (so `.git`
  covers `.git/config`, and `src` covers `src/a.py`); a trailing `/` is accepted and ignored.
Negation (`!x`) is not supported: write a deny rule instead.
"""

from __future__ import annotations

import re

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
        compile_pattern(pattern)
    except re.error as exc:
        return f"bad pattern: {exc}"
    return None


def compile_pattern(pattern: str) -> re.Pattern[str]:
    pat = pattern.strip().rstrip("/")
    anchored = "/" in pat
    pat = pat.lstrip("/")
    parts = [p for p in pat.split("/") if p not in ("", ".")]
    out = "" if anchored else "(?:.*/)?"
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        if part == "**":
            out += ".*" if last else "(?:.*/)?"
            continue
        out += _segment(part) + ("" if last else "/")
    if parts and parts[-1] == "**":
        out = out[: -len(".*")] + ".+" if len(parts) > 1 else ".*"
    return re.compile(out, re.DOTALL)


def _segment(part: str) -> str:
    out = []
    i = 0
    while i < len(part):
        c = part[i]
        if c == "\\" and i + 1 < len(part):
            out.append(re.escape(part[i + 1]))
            i += 2
            continue
        if c == "*":
            while i + 1 < len(part) and part[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = part.find("]", i + 2)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = part[i + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def matches(regex: re.Pattern[str], path: str, *, directory: bool = False) -> bool:
    """Does the pattern cover `path` (normalised)? A directory also counts as covered when the
    pattern covers what is inside it (`src/**` covers listing `src`)."""
    candidates = [path]
    if path != ".":
        parts = path.split("/")
        candidates += ["/".join(parts[:k]) for k in range(len(parts) - 1, 0, -1)]
    if directory:
        candidates.append("\x00" if path == "." else path + "/\x00")
    return any(regex.fullmatch(c) for c in candidates)
