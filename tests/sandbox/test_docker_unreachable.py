"""Docker unreachable: a named infrastructure error. Needs no engine, so it always runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import SandboxError
from runner.sandbox.docker import DockerSandbox
from tests.sandbox.conftest import Repo, sandbox_config


async def test_unreachable_daemon_says_how_to_start_docker(
    repo: Repo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    sb = DockerSandbox(sandbox_config(repo))
    with pytest.raises(SandboxError, match=r"ensure-docker\.sh|systemctl start docker") as info:
        async with sb:
            pass
    assert info.value.exit_code == 4
