"""MCP servers end to end through the CLI: scripted model, real git, the local sandbox, the SDK
fake server over stdio (host and sandbox) and streamable HTTP. Results are read from the outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.mcp.conftest import (
    FAKE_SERVER,
    HttpServer,
    assert_no_process_left,
    fake_server,
    new_tag,
    run_task,
)


def test_stdio_host_server_tools_in_the_trajectory(tmp_path: Path) -> None:
    tag = new_tag()
    run = run_task(tmp_path, [
        ("mcp__fake__echo", {"text": "hello mcp"}),
        ("mcp__fake__add", {"a": 2, "b": 40}),
        ("mcp__fake__image", {}),
        ("mcp__fake__fail", {"reason": "on purpose"}),
        ("mcp__fake__getenv", {"name": "ONLY_ON_THE_HOST"}),
        ("mcp__fake__getenv", {"name": "GIVEN"}),
        ("mcp__fake__getenv", {"name": "SECRET_FROM_HOST"}),
        ("mcp__fake__spawn_child", {"tag": tag + "-child"}),
    ], {"fake": fake_server(tag, env={"GIVEN": "given-value", "SECRET_FROM_HOST": "${MY_HOST_SECRET}"})},
        env={"ONLY_ON_THE_HOST": "must-not-pass", "MY_HOST_SECRET": "very-secret-value-42"})
    assert run.proc.returncode == 0, run.explain()
    results = run.tool_results()
    assert [(r["tool"], r["is_error"]) for r in results] == [
        ("mcp__fake__echo", False), ("mcp__fake__add", False), ("mcp__fake__image", False),
        ("mcp__fake__fail", True), ("mcp__fake__getenv", False), ("mcp__fake__getenv", False),
        ("mcp__fake__getenv", False), ("mcp__fake__spawn_child", False),
    ]
    outputs = [r["output"] for r in results]
    assert outputs[0] == "hello mcp"
    assert json.loads(outputs[1]) == {"sum": 42}
    assert outputs[2] == "[image: image/png, 75 bytes]"
    assert "failed on purpose: on purpose" in outputs[3]
    assert outputs[4] == "<unset>"  # a host server gets a clean environment
    assert outputs[5] == "given-value"
    assert outputs[6] == "[REDACTED]"  # a host value given through ${NAME} is redacted
    assert "very-secret-value-42" not in run.all_output()
    assert run.result["tool_calls"] == 8
    assert_no_process_left(tag)  # the server and the grandchild it started (its process group)


def test_stdio_server_in_the_local_sandbox_runs_at_the_workspace(tmp_path: Path) -> None:
    tag = new_tag()
    run = run_task(tmp_path, [("mcp__fake__echo", {"text": "from the sandbox"}),
                              ("mcp__fake__spawn_child", {"tag": tag + "-child"})],
                   {"fake": fake_server(tag, where="sandbox")})
    assert run.proc.returncode == 0, run.explain()
    echo, child = run.tool_results()
    assert echo["output"] == "from the sandbox" and not child["is_error"]
    assert any("in the sandbox" in e.get("message", "") for e in run.events if e["type"] == "note")
    assert_no_process_left(tag)  # the server and the grandchild it started


def test_streamable_http_server_with_a_header_from_the_host(tmp_path: Path, http_server: HttpServer) -> None:
    run = run_task(tmp_path, [
        ("mcp__docs__echo", {"text": f"the token is {http_server.token}"}),
        ("mcp__docs__add", {"a": 1, "b": 2}),
    ], {"docs": {"url": http_server.url, "headers": {"Authorization": "Bearer ${DOCS_TOKEN}"}}},
        # A proxy that does not exist: a loopback server must be reached directly.
        env={"DOCS_TOKEN": http_server.token, "HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"})
    assert run.proc.returncode == 0, run.explain()
    results = run.tool_results()
    assert [r["is_error"] for r in results] == [False, False], results
    assert results[0]["output"] == "the token is [REDACTED]"
    assert json.loads(results[1]["output"]) == {"sum": 3}
    assert http_server.token not in run.all_output()


def test_http_server_refusing_the_request_is_a_start_failure(tmp_path: Path, http_server: HttpServer) -> None:
    run = run_task(tmp_path, [("mcp__docs__echo", {"text": "x"})],
                   {"docs": {"url": http_server.url, "headers": {"Authorization": "Bearer wrong"}}})
    assert run.proc.returncode == 4, run.explain()
    assert run.result["status"] == "error" and "'docs'" in run.result["reason"]


def test_required_server_that_fails_to_start_ends_the_run(tmp_path: Path) -> None:
    tag = new_tag()
    run = run_task(tmp_path, [("mcp__broken__echo", {"text": "x"})],
                   {"broken": fake_server(tag, "--die-at-start")})
    assert run.proc.returncode == 4, run.explain()
    r = run.result
    assert r["status"] == "error" and r["exit_code"] == 4
    assert "MCP server 'broken'" in r["reason"] and "failed to start" in r["reason"]
    assert "refusing to start" in r["reason"]  # its stderr tail
    errors = [e for e in run.events if e["type"] == "error"]
    assert errors and errors[0]["error_kind"] == "mcp"
    assert r["turns"] == 0
    assert_no_process_left(tag)


def test_missing_command_names_the_server(tmp_path: Path) -> None:
    run = run_task(tmp_path, [], {"ghost": {"command": "/nonexistent/mcp-server", "where": "host"}})
    assert run.proc.returncode == 4, run.explain()
    assert "MCP server 'ghost'" in run.result["reason"] and "/nonexistent/mcp-server" in run.result["reason"]


def test_optional_server_that_fails_to_start_is_skipped(tmp_path: Path) -> None:
    tag = new_tag()
    run = run_task(tmp_path, [("mcp__good__echo", {"text": "still here"}), ("mcp__broken__echo", {"text": "x"})],
                   {"broken": fake_server(tag, "--die-at-start", optional=True), "good": fake_server(tag)})
    assert run.proc.returncode == 0, run.explain()
    assert any("'broken'" in w and "optional" in w and "refusing to start" in w for w in run.warnings()), run.warnings()
    results = run.tool_results()
    assert results[0]["output"] == "still here" and not results[0]["is_error"]
    assert results[1]["is_error"] and "unknown tool" in results[1]["output"]
    assert_no_process_left(tag)


def test_optional_server_with_a_host_variable_not_set_is_skipped(tmp_path: Path) -> None:
    tag = new_tag()
    missing = f"ASTRA_TEST_UNSET_{tag.rsplit('-', 1)[-1].upper()}"
    run = run_task(tmp_path, [("mcp__good__echo", {"text": "still here"}), ("mcp__docs__echo", {"text": "x"})], {
        "docs": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": f"Bearer ${{{missing}}}"},
                 "optional": True},
        "good": fake_server(tag),
    })
    assert run.proc.returncode == 0, run.explain()
    assert any("'docs'" in w and missing in w and "optional" in w for w in run.warnings()), run.warnings()
    results = run.tool_results()
    assert results[0]["output"] == "still here"
    assert results[1]["is_error"] and "unknown tool" in results[1]["output"]
    assert_no_process_left(tag)
    # the same server, required: a configuration error naming the field and the variable
    required = run_task(tmp_path / "required", [], {"docs": {"url": "http://127.0.0.1:9/mcp",
                                                             "headers": {"Authorization": f"Bearer ${{{missing}}}"}}})
    assert required.proc.returncode == 2, required.explain()
    # found before anything is created (exit 2: nothing was run, so no result.json)
    assert "mcp_servers.docs.headers.Authorization" in required.proc.stderr
    assert missing in required.proc.stderr


def test_server_crashing_mid_run_fails_its_tools_and_the_run_goes_on(tmp_path: Path) -> None:
    tag = new_tag()
    run = run_task(tmp_path, [("mcp__fake__echo", {"text": "before"}), ("mcp__fake__crash", {}),
                              ("mcp__fake__echo", {"text": "after"}), ("mcp__other__echo", {"text": "other"})],
                   {"fake": fake_server(tag), "other": fake_server(tag)})
    assert run.proc.returncode == 0, run.explain()
    results = run.tool_results()
    assert [r["is_error"] for r in results] == [False, True, True, False], results
    assert "fake" in results[1]["output"] and "exited with code 3" in results[2]["output"]
    assert results[3]["output"] == "other"
    deaths = [w for w in run.warnings() if "'fake'" in w and "exited with code 3" in w]
    assert deaths and "crashing on request" in deaths[0], run.warnings()
    assert run.result["status"] == "success"
    assert_no_process_left(tag)


def test_hung_call_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    tag = new_tag()
    run = run_task(tmp_path, [("mcp__fake__hang", {}), ("mcp__fake__echo", {"text": "alive"})],
                   {"fake": fake_server(tag, timeout="2s")})
    assert run.proc.returncode == 0, run.explain()
    hang, echo = run.tool_results()
    assert hang["is_error"] and "no answer within 2s" in hang["output"]
    assert 1.5 < hang["duration_s"] < 10
    assert echo["output"] == "alive" and not echo["is_error"]
    assert_no_process_left(tag)  # the server with a call still hanging is killed at the end


def test_policy_denies_mcp_tools_by_name(tmp_path: Path) -> None:
    tag = new_tag()
    run = run_task(tmp_path, [("mcp__fake__crash", {}), ("mcp__other__echo", {"text": "allowed"})],
                   {"fake": fake_server(tag), "other": fake_server(tag)},
                   policy={"default": "allow", "deny": ["mcp__fake__*"]})
    assert run.proc.returncode == 0, run.explain()
    crash, echo = run.tool_results()
    assert crash["is_error"] and "permission denied" in crash["output"]
    assert not any("exited" in w for w in run.warnings())  # the server never got the call
    assert echo["output"] == "allowed"
    assert run.result["permission_denials"][0]["tool"] == "mcp__fake__crash"
    decisions = [e for e in run.events if e["type"] == "policy"]
    assert decisions[0]["allowed"] is False and decisions[0]["rule"] == "mcp__fake__*"
    assert_no_process_left(tag)


def _mcp_json(tag: str) -> str:
    return json.dumps({"mcpServers": {
        "rfake": {"command": sys.executable, "args": [str(FAKE_SERVER), "--tag", tag]},
        "web": {"type": "http", "url": "http://127.0.0.1:9/mcp"},
    }})


def test_repo_mcp_json_is_used_only_when_the_task_opts_in(tmp_path: Path) -> None:
    tag = new_tag()
    files: dict[str, str | bytes] = {".mcp.json": _mcp_json(tag)}
    ignored = run_task(tmp_path / "a", [("mcp__repo_rfake__echo", {"text": "x"})], {}, files=files)
    assert ignored.proc.returncode == 0, ignored.explain()
    assert "unknown tool" in ignored.tool_results()[0]["output"]
    assert not any(e["type"] == "note" and "MCP" in e["message"] for e in ignored.events)

    used = run_task(tmp_path / "b", [("mcp__repo_rfake__echo", {"text": "from .mcp.json"})],
                    {"repo": {"from_repo": True}}, files=files)
    assert used.proc.returncode == 0, used.explain()
    assert used.tool_results()[0]["output"] == "from .mcp.json"
    assert any("in the sandbox" in e["message"] and ".mcp.json" in e["message"]
               for e in used.events if e["type"] == "note")
    assert any("'web' skipped" in w for w in used.warnings()), used.warnings()
    assert_no_process_left(tag)


def test_repo_without_mcp_json_gives_a_warning(tmp_path: Path) -> None:
    run = run_task(tmp_path, [], {"repo": {"from_repo": True}})
    assert run.proc.returncode == 0, run.explain()
    assert any("no .mcp.json" in w for w in run.warnings())


def test_http_server_dying_mid_run(tmp_path: Path, http_server: HttpServer) -> None:
    run = run_task(tmp_path, [("mcp__docs__echo", {"text": "up"}), ("mcp__docs__crash", {}),
                              ("mcp__docs__echo", {"text": "down"})],
                   {"docs": {"url": http_server.url, "headers": {"Authorization": f"Bearer {http_server.token}"},
                             "timeout": "5s"}})
    assert run.proc.returncode == 0, run.explain()
    results = run.tool_results()
    assert [r["is_error"] for r in results] == [False, True, True], results
    assert any("'docs'" in w for w in run.warnings()), run.warnings()


def test_server_that_never_answers_at_start_times_out(tmp_path: Path) -> None:
    tag = new_tag()
    silent = {"command": sys.executable, "args": ["-c", "import time, sys; time.sleep(60)", tag],
              "where": "host", "timeout": "1s"}
    run = run_task(tmp_path, [], {"silent": silent})
    assert run.proc.returncode == 4, run.explain()
    assert "MCP server 'silent'" in run.result["reason"] and "within 1s" in run.result["reason"]
    assert run.result["duration_s"] < 30
    assert_no_process_left(tag)


def test_http_server_killed_mid_run(tmp_path: Path, http_server: HttpServer) -> None:
    """The server process is killed between calls: its tools fail, one warning says so, the run
    goes on, and nothing is left pending at exit (no "Task was destroyed", no "never awaited").
    (A connection that fails on its own, outside any call: tests/mcp/test_stdio.py.)"""
    run = run_task(tmp_path, [("mcp__docs__echo", {"text": "up"}),
                              ("bash", {"command": f"kill -9 {http_server.proc.pid}; sleep 0.5"}),
                              ("mcp__docs__echo", {"text": "down"}),
                              ("mcp__docs__add", {"a": 1, "b": 2})],
                   {"docs": {"url": http_server.url, "headers": {"Authorization": f"Bearer {http_server.token}"},
                             "timeout": "5s"}},
                   policy={"default": "allow"}, env={"PYTHONWARNINGS": "error::RuntimeWarning"})
    http_server.proc.wait(10)
    assert run.proc.returncode == 0, run.explain()
    results = run.tool_results()
    assert [r["is_error"] for r in results] == [False, False, True, True], results
    assert results[0]["output"] == "up"
    assert all("MCP server docs" in r["output"] for r in results[2:]), results
    deaths = [w for w in run.warnings() if "'docs'" in w]
    assert len(deaths) == 1 and "its tools now return errors" in deaths[0], run.warnings()
    for bad in ("Task was destroyed", "never awaited", "Exception ignored", "Traceback"):
        assert bad not in run.proc.stderr, run.explain()
