"""Shared fixtures: real git repositories made on the fly."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def sh_git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def make_repo(path: Path, files: dict[str, str | bytes]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    sh_git(path, "init", "-q", "-b", "main")
    for name, content in files.items():
        f = path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            f.write_bytes(content)
        else:
            f.write_text(content)
    sh_git(path, "add", "-A")
    sh_git(path, "commit", "-q", "-m", "base")
    return path


def tree_digest(root: Path) -> str:
    """A digest of every file (including .git) under root: 'byte-for-byte untouched' made checkable."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_symlink():
            h.update(os.readlink(p).encode())
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {
        "src/app.py": "def f():\n    return 1\n",
        "README.md": "# demo\n",
        "old.txt": "to be deleted\n",
        "logo.bin": b"\x89PNG\x00\x01\x02",
    })


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"
