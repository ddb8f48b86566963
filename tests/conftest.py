"""Shared fixtures: real git repositories made on the fly."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

IMAGE = "astra-sandbox:latest"
REQUIRE_DOCKER = os.environ.get("ASTRA_REQUIRE_DOCKER") == "1"


@functools.cache
def docker_problem() -> str | None:
    """Why docker tests cannot run here, or None."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        from runner.sandbox.docker import connect

        client = connect(timeout=10)
        client.images.get(IMAGE)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is None:
        return
    problem = docker_problem()
    if problem is None:
        return
    if REQUIRE_DOCKER:
        pytest.fail(f"ASTRA_REQUIRE_DOCKER=1 but Docker cannot be used: {problem}", pytrace=False)
    pytest.skip(f"Docker cannot be used: {problem}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test may leave a worktree's own file system mounted (runner/diskcap.py): any found under
    this session's temporary directory is unmounted, its image deleted, and the session fails."""
    from runner.diskcap import LoopMount, mounts_under

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or getattr(factory, "_basetemp", None) is None:
        return  # no test made a temporary directory
    left = mounts_under(factory.getbasetemp())
    for point in left:
        LoopMount(Path(point).with_name("worktree.img"), Path(point)).remove()
    if left:
        print(f"\nFAIL: {len(left)} worktree file system(s) left mounted by the tests: {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
