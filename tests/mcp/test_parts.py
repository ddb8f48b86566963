"""The pieces without a server: tool names, result rendering, .mcp.json parsing, the task field."""

from __future__ import annotations

import re

import mcp_types as types
import pytest
from pydantic import ValidationError

from runner.mcp.config import RepoConfigError, plan_from_task, plans_from_repo
from runner.mcp.tools import render_result, tool_name
from runner.task import McpServerSpec

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def test_tool_names_are_valid_and_unique() -> None:
    taken: set[str] = set()
    assert tool_name("git", "status", taken) == "mcp__git__status"
    odd = tool_name("my.server", "do/it now", taken)
    assert odd == "mcp__my_server__do_it_now"
    # Two names that differ only in characters the API does not allow.
    assert tool_name("my.server", "do it/now", taken) == "mcp__my_server__do_it_now_2"
    long1 = tool_name("s", "x" * 100, taken)
    long2 = tool_name("s", "x" * 101, taken)
    assert len(long1) == 64 and len(long2) == 64 and long1 != long2
    assert all(VALID.match(n) for n in taken), taken


def test_results_become_text() -> None:
    result = types.CallToolResult(content=[
        types.TextContent(type="text", text="hello"),
        types.ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png"),
        types.EmbeddedResource(type="resource", resource=types.TextResourceContents(uri="file:///a.txt", text="A")),
    ])
    assert render_result(result) == "hello\n[image: image/png, 8 bytes]\n[resource file:///a.txt]\nA"
    structured_only = types.CallToolResult(content=[], structured_content={"sum": 3})
    assert render_result(structured_only) == '{"sum": 3}'
    # Structured content also sent as text is said once.
    both = types.CallToolResult(content=[types.TextContent(type="text", text='{"sum": 3}')],
                                structured_content={"sum": 3})
    assert render_result(both) == '{"sum": 3}'


def test_host_variables_are_expanded_and_returned_for_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCS_TOKEN", "tok-123456")
    spec = McpServerSpec(url="http://127.0.0.1:1/mcp", headers={"Authorization": "Bearer ${DOCS_TOKEN}"})
    plan, secrets = plan_from_task("docs", spec)
    assert plan.headers == {"Authorization": "Bearer tok-123456"} and secrets == ["tok-123456"]
    assert plan.where == "host"
    stdio = McpServerSpec(command="python3")
    assert plan_from_task("s", stdio)[0].where == "sandbox"  # the default for stdio


def test_from_repo_is_exclusive_of_a_server_definition() -> None:
    assert McpServerSpec(from_repo=True).from_repo
    with pytest.raises(ValidationError, match="from_repo"):
        McpServerSpec(from_repo=True, command="python3")
    with pytest.raises(ValidationError, match="from_repo"):
        McpServerSpec(from_repo=True, where="host")
    with pytest.raises(ValidationError, match="exactly one"):
        McpServerSpec()


def test_repo_servers_run_in_the_sandbox_only_and_take_nothing_from_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_SECRET", "do-not-take-me")
    text = """{"mcpServers": {
        "git": {"command": "python3", "args": ["srv.py"], "env": {"K": "${HOST_SECRET}"}},
        "web": {"type": "http", "url": "http://evil.example/mcp"},
        "bad": {"command": 3}
    }}"""
    plans, skipped = plans_from_repo("repo", McpServerSpec(from_repo=True, timeout=5), text)
    assert [(p.name, p.where, p.env, p.timeout) for p in plans] == [("repo_git", "sandbox", {"K": "${HOST_SECRET}"}, 5)]
    assert skipped == [
        ".mcp.json:3: mcpServers.web.type: server 'web' skipped: only stdio servers are taken from the repo "
        "(this one is 'http'): an HTTP server would be reached from the host",
        ".mcp.json:4: mcpServers.bad.command: server 'bad' skipped: \"command\" must be a non-empty string",
    ]


@pytest.mark.parametrize(("text", "error"), [
    ("{", ".mcp.json:1: JSON syntax error: Expecting property name enclosed in double quotes (column 2)"),
    ('{"mcpServers": {"a": {"command": "x"},\n"a": {"command": "y"}}}',
     ".mcp.json:2: mcpServers.a: duplicate key (first at line 1): JSON would keep only the last; merge them into one"),
    ('{"mcpServers": ' + "[" * 60 + "]" * 60 + "}", ".mcp.json:1: (top level): nested more than 40 levels deep"),
    ('{"servers": {}}', '.mcp.json:1: mcpServers: there is no "mcpServers" object'),
])
def test_a_broken_mcp_json_is_refused_at_its_line(text: str, error: str) -> None:
    with pytest.raises(RepoConfigError) as info:
        plans_from_repo("repo", McpServerSpec(from_repo=True), text)
    assert str(info.value) == error
