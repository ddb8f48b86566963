"""Helpers for the MCP tests: run a task through the real CLI with a scripted model, read its
outputs, serve the fake MCP server over HTTP, and check that no server process is left.

Docker tests (`@pytest.mark.docker`) skip or fail by the one hook in tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import make_repo

ROOT = Path(__file__).resolve().parents[2]
FAKE_SERVER = ROOT / "tests" / "fakes" / "mcp_server.py"
STDLIB_SERVER = Path(__file__).with_name("stdlib_server.py")
def new_tag() -> str:
    return f"astra-mcp-test-{uuid.uuid4().hex[:10]}"


def fake_server(tag: str, *extra: str, where: str = "host", timeout: str = "20s", **more: Any) -> dict[str, Any]:
    """A task's mcp_servers entry for the SDK fake over stdio (host python, which has mcp)."""
    return {"command": sys.executable, "args": [str(FAKE_SERVER), "--tag", tag, *extra], "where": where,
            "timeout": timeout, **more}


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    out: Path

    @property
    def result(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "result.json").read_text())
        return data

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.out / "trajectory.jsonl").read_text().splitlines()]

    def tool_results(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "tool_result"]

    def warnings(self) -> list[str]:
        return [e["message"] for e in self.events if e["type"] == "note" and e.get("level") == "warning"]

    def all_output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.out.iterdir() if p.is_file())

    def explain(self) -> str:
        return f"exit {self.proc.returncode}\nstdout:\n{self.proc.stdout}\nstderr:\n{self.proc.stderr}"


def run_task(tmp_path: Path, calls: list[tuple[str, dict[str, Any]]], mcp_servers: dict[str, Any], *,
             files: dict[str, str | bytes] | None = None, env: dict[str, str] | None = None,
             timeout: float = 180, **task: Any) -> Run:
    """One run through `python -m runner run`: the scripted model makes each call in its own turn,
    then ends. The local sandbox unless `sandbox=` says otherwise."""
    make_repo(tmp_path / "repo", {"README.md": "# demo\n", **(files or {})})
    turns: list[dict[str, Any]] = [{"tool_calls": [{"name": n, "input": i}]} for n, i in calls]
    turns.append({"text": "done"})
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(turns))
    spec: dict[str, Any] = {
        "name": "mcp", "repo": "repo", "prompt": "use the MCP tools", "model": "scripted:model.yaml",
        "sandbox": {"backend": "local"}, "mcp_servers": mcp_servers, "outputs": {"dir": str(tmp_path / "out")},
        "limits": {"timeout": "150s"}, "expect_changes": False,  # the MCP tools are the point, not edits
    }
    spec.update(task)
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(spec))
    full_env = {**os.environ, "ASTRA_CACHE": str(tmp_path / "cache"), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "runner", "run", str(tmp_path / "task.yaml")],
                          capture_output=True, text=True, env=full_env, cwd=tmp_path, timeout=timeout)
    return Run(proc, tmp_path / "out")


def host_processes(tag: str) -> list[str]:
    """Host processes whose command line holds `tag` (pgrep -f), this check itself excluded."""
    r = subprocess.run(["pgrep", "-af", tag], capture_output=True, text=True)
    return [line for line in r.stdout.splitlines() if "pgrep" not in line]


def assert_no_process_left(tag: str, wait: float = 3.0) -> None:
    deadline = time.monotonic() + wait
    while (left := host_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"server processes left behind: {left}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HttpServer:
    url: str
    token: str
    proc: subprocess.Popen[bytes]


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    """The SDK fake over streamable HTTP on 127.0.0.1, requiring a bearer token."""
    port, token = free_port(), f"docs-token-{uuid.uuid4().hex}"
    log = open(tmp_path / "http-server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, str(FAKE_SERVER), "--http", str(port), "--token", token],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "http-server.log").read_text()) from None
                time.sleep(0.1)
        yield HttpServer(f"http://127.0.0.1:{port}/mcp", token, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
