"""Walking and removing directory trees the model made, however deep (no recursion).

Python 3.11's `os.walk` and `shutil.rmtree` recurse once per directory level: `mkdir -p` 1,100
levels deep in the worktree raises RecursionError in them, and that must never stop a run's
outputs or its cleanup. These two keep an explicit stack instead, never follow symlinks and never
raise for a file that vanished or cannot be read (the tree belongs to the sandbox, which may be
changing it).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Collection, Iterator
from pathlib import Path


def walk(root: Path | str, *, skip: Collection[str] = ()) -> Iterator[tuple[str, list[str], list[str]]]:
    """Like `os.walk(root)` top-down, without following symlinks (a symlink to a directory is
    listed among the files), iteratively. Directory names in `skip` are not entered."""
    stack = [os.fspath(root)]
    while stack:
        top = stack.pop()
        dirs: list[str] = []
        files: list[str] = []
        try:
            with os.scandir(top) as entries:
                for entry in entries:
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        is_dir = False
                    (dirs if is_dir else files).append(entry.name)
        except OSError:
            continue
        yield top, dirs, files
        stack.extend(os.path.join(top, d) for d in reversed(dirs) if d not in skip)


def remove_tree(root: Path | str) -> None:
    """`shutil.rmtree(root, ignore_errors=True)`, iteratively: deletes what it can, never raises.

    Directories without write or search permission (a model can `chmod 0` its own directories)
    are given u+rwx first; symlinks are removed, never followed.
    """
    root = os.fspath(root)
    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):
            os.unlink(root)
            return
    except OSError:
        return
    # Depth-first: a directory is removed after its children (it is pushed back under them).
    stack: list[tuple[str, bool]] = [(root, False)]
    while stack:
        path, emptied = stack.pop()
        if emptied:
            with contextlib.suppress(OSError):
                os.rmdir(path)
            continue
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        stack.append((path, True))
        try:
            with os.scandir(path) as entries:
                children = list(entries)
        except OSError:
            continue
        for entry in children:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                stack.append((entry.path, False))
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
