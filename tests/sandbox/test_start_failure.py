"""A container that fails to start: the daemon's own message, in full (issue 17.2).

The container is created with auto_remove, so when its start fails the daemon removes it at
once; a retried start then met `404 No such container` and that hid the real cause. Here the
start fails for real (a tmpfs option the kernel refuses: a 500 from the daemon, which is
retried), and the error must be the daemon's words.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import runner.sandbox.docker_spec as docker_spec
from runner.errors import SandboxError
from runner.sandbox.docker import DockerSandbox
from tests.sandbox.conftest import Repo, sandbox_config


@pytest.mark.docker
async def test_a_start_failure_shows_the_daemons_message_not_no_such_container(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker_spec, "GIT_TMPFS_SIZE", "not-a-size")
    sb = DockerSandbox(sandbox_config(repo))
    with pytest.raises(SandboxError) as info:
        async with sb:
            pass
    message = str(info.value)
    assert "No such container" not in message and "404" not in message, message
    assert message.startswith("cannot start the sandbox container: the Docker daemon said: "), message
    assert "size=not-a-size: invalid argument" in message and message.endswith("(HTTP 500)"), message
    assert "..." not in message
    assert info.value.exit_code == 4


@pytest.mark.docker
async def test_the_run_reports_the_daemons_message_on_the_console_and_in_result_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.reports.console import Console
    from runner.run import run_task
    from runner.settings import Flags, Settings, apply_overrides
    from runner.task import load_task
    from tests.conftest import make_repo

    monkeypatch.setattr(docker_spec, "GIT_TMPFS_SIZE", "not-a-size")
    monkeypatch.setenv("ASTRA_CACHE", str(tmp_path / "cache"))
    make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    (tmp_path / "m.yaml").write_text("- text: done\n")
    (tmp_path / "task.yaml").write_text("name: start-fails\nrepo: repo\nprompt: p\nmodel: scripted:m.yaml\n"
                                        f"outputs: {{dir: {tmp_path / 'out'}}}\n")
    task = apply_overrides(load_task(tmp_path / "task.yaml"), Settings(), Flags())
    stream = io.StringIO()
    result = await run_task(task, Settings(), console=Console(stream, tty=False))
    assert result.exit_code == 4 and result.status == "error"
    reason = json.loads((tmp_path / "out" / "result.json").read_text())["reason"]
    assert "the Docker daemon said: " in reason and "size=not-a-size: invalid argument" in reason, reason
    assert "No such container" not in reason and "..." not in reason
    shown = " ".join(line.strip() for line in stream.getvalue().splitlines() if not line.startswith("astra-run"))
    assert "size=not-a-size: invalid argument" in shown and "(HTTP 500)" in shown, stream.getvalue()


@pytest.mark.docker
async def test_a_helper_killed_for_memory_says_how_it_ended(repo: Repo) -> None:
    """A sandbox too small for its helper: the kernel kills it (SIGKILL) and it says nothing on
    stderr. The error says how it ended - exit code 137 and the likely cause - not just "stopped"."""
    sb = DockerSandbox(sandbox_config(repo, memory="6m"))
    with pytest.raises(SandboxError) as info:
        async with sb:
            pass
    message = str(info.value)
    assert "stopped (exit code 137: killed by SIGKILL" in message and "sandbox.memory" in message, message
    assert info.value.exit_code == 4
