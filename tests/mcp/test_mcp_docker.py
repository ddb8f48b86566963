"""Stdio MCP servers inside the Docker sandbox.

The repo is not mounted in the container, only the workspace, and the image has python3 but not
the mcp package: the server here is tests/mcp/stdlib_server.py, committed into the task's repo.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from runner.agent.events import Event, Note
from runner.mcp import McpServers
from runner.mcp.tools import McpArguments
from runner.redact import Redactor
from runner.sandbox import SandboxConfig, make_sandbox
from runner.sandbox.base import ToolFailure
from runner.task import McpServerSpec
from runner.tools import ToolContext
from tests.conftest import IMAGE, make_repo, sh_git
from tests.mcp.conftest import STDLIB_SERVER, new_tag, run_task

pytestmark = pytest.mark.docker
DOCKER = {"backend": "docker", "image": IMAGE, "memory": "1g", "pids": 256}


def server(tag: str, *extra: str, **more: object) -> dict[str, object]:
    return {"command": "python3", "args": ["srv.py", "--tag", tag, *extra], "timeout": "3s", **more}


def containers_of(run_id: str) -> str:
    return subprocess.run(["docker", "ps", "-aq", "--filter", f"label=astra-run.run-id={run_id}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_stdio_server_runs_in_the_container(tmp_path: Path) -> None:
    tag = new_tag()
    run = run_task(tmp_path, [
        ("mcp__box__echo", {"text": "hello from the box"}),
        ("mcp__box__whoami", {}),
        ("mcp__box__image", {}),
        ("mcp__box__fail", {}),
        ("mcp__box__getenv", {"name": "BOX_SECRET"}),
        ("mcp__box__hang", {}),
        ("mcp__box__crash", {}),
        ("mcp__box__echo", {"text": "after the crash"}),
    ], {"box": server(tag, env={"BOX_SECRET": "${HOST_BOX_SECRET}"})},
        files={"srv.py": STDLIB_SERVER.read_text()}, sandbox=DOCKER,
        env={"HOST_BOX_SECRET": "box-secret-value-7"})
    assert run.proc.returncode == 0, run.explain()
    results = run.tool_results()
    assert [r["is_error"] for r in results] == [False, False, False, True, False, True, True, True], results
    out = [r["output"] for r in results]
    assert out[0] == "hello from the box"
    assert f"uid={os.getuid()} cwd=/workspace network: no" in out[1]  # the agent phase has no network
    assert out[2] == "[image: image/png, 75 bytes]"
    assert out[3] == "failed on purpose"
    assert out[4] == "[REDACTED]" and "box-secret-value-7" not in run.all_output()
    assert "no answer within 3s" in out[5]
    assert "exited with code 3" in out[7]
    assert any("'box'" in w and "crashing on request" in w for w in run.warnings()), run.warnings()
    assert containers_of(run.result["run_id"]) == ""


def test_server_failing_to_start_in_the_container(tmp_path: Path) -> None:
    tag = new_tag()
    run = run_task(tmp_path, [("mcp__box__echo", {"text": "x"})], {
        "missing": {"command": "no-such-mcp-server", "args": [tag]},
        "dying": server(tag, "--die-at-start", optional=True),
    }, files={"srv.py": STDLIB_SERVER.read_text()}, sandbox=DOCKER)
    assert run.proc.returncode == 4, run.explain()
    reason = run.result["reason"]
    assert "MCP server 'missing'" in reason and "cannot run no-such-mcp-server" in reason, reason
    assert any("'dying'" in w and "refusing to start" in w for w in run.warnings()), run.warnings()
    assert containers_of(run.result["run_id"]) == ""


async def test_close_kills_the_server_inside_the_container(tmp_path: Path) -> None:
    """Killing the `docker exec` client does not end what it started: close() must."""
    root = make_repo(tmp_path / "repo", {"srv.py": STDLIB_SERVER.read_text()})
    worktree = tmp_path / "wt"
    sh_git(root, "worktree", "add", "-q", "--detach", str(worktree), "HEAD")
    config = SandboxConfig(
        run_id=f"test-mcp-{uuid.uuid4().hex[:8]}", worktree=worktree,
        git_dir=Path(sh_git(worktree, "rev-parse", "--absolute-git-dir")), base_commit=sh_git(root, "rev-parse", "HEAD"),
        image=IMAGE, deadline_s=600, memory="1g", pids=256,
    )
    tag = new_tag()
    events: list[Event] = []
    find = f"pgrep -af '[s]rv.py --tag {tag}'"  # [s]: not matching this shell's own command line
    async with make_sandbox("docker", config) as sb:
        servers = await McpServers.start({"s": McpServerSpec(
            command="python3", args=["srv.py", "--tag", tag, "--ignore-eof"], timeout=1)},
                                         sandbox=sb, emit=events.append, redactor=Redactor())
        tools = {t.name: t for t in servers.tools()}
        ctx = ToolContext(sb, 30)
        assert await tools["mcp__s__echo"].run(McpArguments(arguments={"text": "hi"}), ctx) == "hi"
        with pytest.raises(ToolFailure, match="no answer within 1s"):
            await tools["mcp__s__hang"].run(McpArguments(arguments={}), ctx)
        running = await sb.exec(find, timeout=10)
        assert running.exit_code == 0 and "srv.py" in running.output, running.output
        await servers.close()
        left = await sb.exec(find, timeout=10)
        assert left.exit_code == 1, f"left in the container: {left.output}"
        with pytest.raises(ToolFailure, match="not running"):
            await tools["mcp__s__echo"].run(McpArguments(arguments={"text": "hi"}), ctx)
    assert not [e for e in events if isinstance(e, Note) and e.level == "warning"], events
