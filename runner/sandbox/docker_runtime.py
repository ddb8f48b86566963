"""The agent phase must not run on anything setup planted (issue 12.6).

Setup commands run as root (with a few capabilities) in the same container the agent phase uses
afterwards, and they run the repository's code (`pip install -e .`). So before the first setup
command the setup helper - still the image's own interpreter - lists what it relies on
(`helper.runtime_manifest`: the interpreter, the loader and libraries it maps, the stdlib files it
imported, the sys.path entries that do not exist). After setup, the *daemon's* list of what
changed in the container (`docker diff`, read outside the container, so nothing inside can lie
about it) must touch none of it, nor add a file that would shadow a module or a library, nor
create /etc/ld.so.preload; else the run stops with a sandbox error naming the paths.

The agent's helper is then started by absolute paths - the verified loader with the library
cache off and the search pinned to the verified directories, the verified interpreter, `-I -S` -
never by a PATH lookup, so a `python3` shim earlier on PATH is never run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

ALWAYS_WATCHED = ("/etc/ld.so.preload",)
"""Loaded into every dynamically linked process, whatever the loader is asked."""
_ADDED, _DELETED = 1, 2
"""`docker diff` kinds (0 is modified)."""


def interpreter_argv(runtime: Mapping[str, Any] | None) -> list[str]:
    """How to start the image's python3 for the helper: verified absolute paths when there was a
    setup (`runtime` from the setup helper), else the image's own `python3` (nothing changed it)."""
    if not runtime:
        return ["python3", "-I", "-S"]
    loader, interpreter = runtime.get("loader"), str(runtime["interpreter"])
    if loader and os.path.basename(str(loader)).startswith("ld-linux"):  # glibc's loader takes these options
        dirs = ":".join(str(d) for d in runtime.get("lib_dirs") or [])
        return [str(loader), "--inhibit-cache", "--library-path", dirs, interpreter, "-I", "-S"]
    return [interpreter, "-I", "-S"]


def _lib_stem(name: str) -> str | None:
    """`libz.so.1.2.13` -> `libz.so`: every soname link of a mapped library starts with it."""
    return name[: name.index(".so") + 3] if ".so" in name else None


def planted(changes: Iterable[Mapping[str, Any]], runtime: Mapping[str, Any],
            before: Iterable[Mapping[str, Any]] = ()) -> list[str]:
    """The changes (`docker diff` entries: Path, Kind) that touch what the helper runs on.

    `before`: the diff taken before setup (mount points, anything the runner put in): not setup's.
    """
    lib_dirs = set(runtime.get("lib_dirs") or [])
    files = set(runtime.get("files") or []) | set(ALWAYS_WATCHED)
    if interpreter_argv(runtime)[1:2] == ["--inhibit-cache"]:
        files.discard("/etc/ld.so.cache")  # not read: the loader is told so
    absent = set(runtime.get("absent") or [])
    python_dirs = set(runtime.get("python_dirs") or [])
    stems: dict[str, set[str]] = {}
    for path in files:
        stem = _lib_stem(os.path.basename(path))
        if stem and os.path.dirname(path) in lib_dirs:
            stems.setdefault(os.path.dirname(path), set()).add(stem)
    baseline = {(str(c.get("Path")), int(c.get("Kind", 0))) for c in before}
    found = []
    for change in changes:
        path, kind = str(change.get("Path")), int(change.get("Kind", 0))
        if (path, kind) in baseline:
            continue
        parent, name = os.path.split(path)
        if (path in files or path in absent
                or (kind in (_ADDED, _DELETED) and parent in python_dirs)
                or any(name.startswith(stem) for stem in stems.get(parent, ()))):
            found.append(path)
    return sorted(found)
