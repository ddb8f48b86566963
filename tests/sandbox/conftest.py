"""Fixtures for the sandbox backends: a real git repo + worktree, and a started sandbox.

Docker tests (`@pytest.mark.docker`) are skipped when no engine or no sandbox image is
available - unless ASTRA_REQUIRE_DOCKER=1 (CI), where they fail instead.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.sandbox import Sandbox, SandboxConfig, make_sandbox
from tests.conftest import IMAGE, docker_problem

HOST_SECRET = "sk-ant-host-secret-do-not-leak"


@pytest.fixture(scope="session", autouse=True)
def no_container_left_behind() -> Iterator[None]:
    """At the end of the session, no container started by this test process may remain."""
    yield
    if docker_problem() is not None:
        return
    from runner.sandbox.docker import LABEL, LABEL_OWNER_PID, connect

    client = connect(timeout=10)
    left = [
        c for c in client.containers.list(all=True, filters={"label": f"{LABEL}=1"})
        if c.labels.get(LABEL_OWNER_PID) == str(os.getpid())
    ]
    for c in left:
        c.remove(force=True)
    assert not left, f"containers left behind: {[c.name for c in left]}"


def git(*args: str, cwd: Path | None = None) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@dataclass
class Repo:
    root: Path
    """The trusted repository (its .git is the trusted store)."""
    worktree: Path
    """A `git worktree add` of the base commit: what the sandbox gets."""
    git_dir: Path
    """The worktree's private git dir in the trusted store."""
    base: str


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = tmp_path / "repo"
    root.mkdir()
    git("init", "-q", "-b", "main", cwd=root)
    (root / "hello.py").write_text("print('hello')\n")
    git("add", ".", cwd=root)
    git("commit", "-q", "-m", "first", cwd=root)
    (root / "README.md").write_text("# demo\n")
    git("add", ".", cwd=root)
    git("commit", "-q", "-m", "second", cwd=root)
    base = git("rev-parse", "HEAD", cwd=root).strip()
    worktree = tmp_path / "wt"
    git("worktree", "add", "-q", "--detach", str(worktree), base, cwd=root)
    git_dir = Path(git("rev-parse", "--absolute-git-dir", cwd=worktree).strip())
    return Repo(root=root, worktree=worktree, git_dir=git_dir, base=base)


def sandbox_config(repo: Repo, **overrides: object) -> SandboxConfig:
    values: dict[str, object] = {
        "run_id": f"test-{uuid.uuid4().hex[:10]}",
        "worktree": repo.worktree,
        "git_dir": repo.git_dir,
        "base_commit": repo.base,
        "env": {"GIVEN_VAR": "given"},
        "deadline_s": 600,
        "cpus": 1.0,
        "memory": "1g",
        "pids": 256,
        "image": IMAGE,
    }
    values.update(overrides)
    return SandboxConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
async def sandbox(request: pytest.FixtureRequest, repo: Repo, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sandbox]:
    # A host secret in the runner's environment: no backend may let it into the sandbox.
    monkeypatch.setenv("ANTHROPIC_API_KEY", HOST_SECRET)
    sb = make_sandbox(request.param, sandbox_config(repo))
    async with sb:
        yield sb


def workspace_root(sb: Sandbox) -> str:
    """The root as commands see it: /workspace in docker, the worktree itself for local."""
    from runner.sandbox.local import LocalSandbox

    return str(sb.config.worktree.resolve()) if isinstance(sb, LocalSandbox) else "/workspace"
