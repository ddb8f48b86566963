from __future__ import annotations

import io
from typing import Any

import pytest

from runner.agent.events import (
    Event,
    LimitReached,
    ModelError,
    ModelTurn,
    Note,
    PolicyDecision,
    RunError,
    RunFinished,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
    VerifyFinished,
)
from runner.models.base import Usage
from runner.reports.console import Console

from .helpers import make_result


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def turn(n: int, text: str = "", tools: int = 1, cost: float | None = 0.0123) -> ModelTurn:
    return ModelTurn(n, "claude-sonnet-5-5", "tool_use", text, [{}] * tools, Usage(10, 10), cost, 1.5,
                     cumulative_cost_usd=cost)


def events() -> list[Event]:
    huge = "y" * 200_000
    return [
        RunStarted("r-1", "fix-empty-input", "claude-sonnet-5-5", "abc123", "docker", {"max_turns": 50}),
        Note("setup: pip install -e . done"),
        turn(1, "I will look at the code first.\nThen run the tests."),
        ToolCallStarted(1, "t1", "read", {"path": "src/interleave.py"}),
        ToolCallFinished(1, "t1", "read", False, "1\tdef interleave_evenly(...):\n", 0.01),
        turn(3),
        ToolCallStarted(3, "t2", "bash", {"command": "python -m pytest -q"}),
        ToolCallFinished(3, "t2", "bash", True, "F.\n1 failed\n[exit code 1]", 0.8, 1),
        # odd contents: escapes, binary, huge strings, wrong types
        ToolCallStarted(3, "t3", "bash", {"command": "printf '\x1b[31mred\x1b[0m'\nrm -rf /\x00" + huge}),
        ToolCallFinished(3, "t3", "bash", False, "\x1b[2J\x1b]0;title\x07" + huge, 0.2),
        ToolCallStarted(3, "t4", "write", {"path": b"\xff\xfe binary", "content": b"\x00" * 10}),
        ToolCallFinished(3, "t4", "write", True, b"\x1b[31m bytes output", 0.1),  # type: ignore[arg-type]
        ToolCallStarted(3, "t5", "mcp__gh__x", None),  # type: ignore[arg-type]
        ToolCallFinished(3, "t5", "mcp__gh__x", False, None, 0.1),  # type: ignore[arg-type]
        ToolCallFinished(3, "t-unknown", "grep", False, "ok", 0.1),
        PolicyDecision("t6", "bash", False, "bash(git push*)", "denied"),
        ModelError(4, "529 overloaded\x1b[0m", 1),
        LimitReached("max_turns", 50, "max_turns reached: 50 turns"),
        RunError("sandbox", "container died\n" + huge),
        VerifyFinished("unit-tests", False, 1, 3.2, "1 failed"),
        VerifyFinished("lint", True, 0, 0.4),
        RunFinished("limit", "max_turns reached", 3, 50, 120, 1.23, 300.0),
    ]


def run_console(stream: io.StringIO, **kwargs: Any) -> str:
    console = Console(stream, **kwargs)
    for event in events():
        console.on_event(event)
    console.finish(make_result("limit"))
    return stream.getvalue()


def test_plain_output_has_no_escape_codes_and_one_line_per_turn_and_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    out = run_console(io.StringIO())
    assert "\x1b" not in out
    assert "\x00" not in out and "\r" not in out
    lines = out.splitlines()
    assert "[turn 3] bash: python -m pytest -q -> exit 1 (0.8s)" in lines
    assert "[turn 1] read: src/interleave.py -> ok (0.0s)" in lines
    assert any(
        line.startswith("[turn 3] model tool_use: 1 tool call(s), cost so far $0.0123") for line in lines
    )
    assert any("denied bash (bash(git push*))" in line for line in lines)
    assert any(line.startswith("[verify] unit-tests: FAILED, exit 1") for line in lines)
    assert any(line.startswith("[limit] max_turns") for line in lines)
    assert all(len(line) <= 400 for line in lines), max(len(line) for line in lines)
    # model text only with -v
    assert "I will look at the code first." not in out
    # the compact summary comes last
    assert lines[-4].startswith("astra-run fix-empty-input: STOPPED BY A LIMIT (exit 3)")
    assert lines[-1].startswith("  verify 1/2 passed")


def test_ci_true_means_plain_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    out = run_console(FakeTerminal())
    assert "\x1b" not in out
    assert "[turn 3] bash: python -m pytest -q -> exit 1 (0.8s)" in out.splitlines()


def test_terminal_gets_a_live_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    out = run_console(FakeTerminal())
    assert "\x1b[2K" in out  # status line redrawn in place
    assert "  > bash: python -m pytest -q" in out
    assert "cost $0.0123" in out
    assert "\x1b[31m" not in out and "\x1b]0;" not in out  # the model's escapes are never passed through
    assert out.endswith("verify 1/2 passed; failed: unit-tests\n")


def test_quiet_prints_only_the_summary() -> None:
    out = run_console(io.StringIO(), tty=False, verbosity=-1)
    assert out.splitlines()[0].startswith("astra-run fix-empty-input: STOPPED BY A LIMIT")
    assert len(out.splitlines()) == 4
    out = run_console(FakeTerminal(), tty=True, verbosity=-1)
    assert "\x1b" not in out and len(out.splitlines()) == 4


def test_verbose_adds_model_text() -> None:
    out = run_console(io.StringIO(), tty=False, verbosity=1)
    assert "[turn 1] | I will look at the code first." in out
    assert "[turn 1] | Then run the tests." in out


def test_never_raises_on_a_broken_stream() -> None:
    class Broken(io.StringIO):
        def write(self, s: str) -> int:
            raise OSError("closed")

    console = Console(Broken(), tty=False)
    for event in events():
        console.on_event(event)
    console.finish(make_result("error"))


def test_ascii_only_stream_gets_replacement_characters() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict", write_through=True)
    console = Console(stream, tty=False)
    console.on_event(Note("caf\u00e9 \u2603"))
    console.finish(make_result("success", reason="done \u2713"))
    text = raw.getvalue().decode("ascii")
    assert "caf? ?" in text and "done ?" in text


# -- progress in CI logs and on terminals (issue 17.4) -----------------------------------------


def _wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_ci_mode_says_when_a_tool_starts_and_ends_and_beats_while_waiting() -> None:
    stream = io.StringIO()
    console = Console(stream, tty=False, heartbeat_s=0.1)
    console.on_event(turn(1))
    console.on_event(ToolCallStarted(1, "t1", "bash", {"command": "python -m pytest -q"}))
    assert "[turn 1] > bash: python -m pytest -q" in stream.getvalue().splitlines()
    assert _wait_for(lambda: stream.getvalue().count("[waiting] bash: python -m pytest -q: ") >= 2), stream.getvalue()
    console.on_event(ToolCallFinished(1, "t1", "bash", False, "ok\n[exit code 0]", 0.3))
    assert "[turn 1] bash: python -m pytest -q -> exit 0 (0.3s)" in stream.getvalue().splitlines()
    assert _wait_for(lambda: "[waiting] the model (turn 2): " in stream.getvalue()), stream.getvalue()
    console.finish(make_result("success"))
    import time

    after = stream.getvalue()
    time.sleep(0.4)
    assert stream.getvalue() == after  # the heartbeat stops with the run
    assert "\x1b" not in after


def test_the_heartbeat_is_quiet_while_lines_come() -> None:
    stream = io.StringIO()
    console = Console(stream, tty=False, heartbeat_s=0.3)
    console.on_event(ToolCallStarted(1, "t1", "bash", {"command": "make"}))
    import time

    for _ in range(8):  # a line every 0.1 s: never 0.3 s of silence
        console.on_event(Note("still busy"))
        time.sleep(0.1)
    assert "[waiting]" not in stream.getvalue()
    console.finish(make_result("success"))


def test_terminal_mode_shows_what_it_waits_on_in_the_status_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    stream = FakeTerminal()
    console = Console(stream, heartbeat_s=0.05)
    console.on_event(ToolCallStarted(1, "t1", "bash", {"command": "sleep 5"}))
    assert _wait_for(lambda: "| bash: sleep 5" in stream.getvalue())
    console.on_event(ToolCallFinished(1, "t1", "bash", False, "[exit code 0]", 5.0))
    assert _wait_for(lambda: "waiting on the model (turn 1)" in stream.getvalue()), stream.getvalue()
    console.finish(make_result("success"))
    assert "[waiting]" not in stream.getvalue()  # the live status says it; no heartbeat lines


def test_errors_are_shown_in_full_and_limits_are_said_once() -> None:
    daemon = ("cannot start the sandbox container: the Docker daemon said: failed to create endpoint "
              "astra-x on network bridge: " + "detail " * 80 + "could not find bridge docker0 (HTTP 500)")
    stream = io.StringIO()
    console = Console(stream, tty=False)
    console.on_event(RunError("sandbox", daemon))
    console.on_event(LimitReached("max_turns", 1, "max_turns reached: 1 of 1 turn used"))
    out = stream.getvalue()
    assert "could not find bridge docker0 (HTTP 500)" in out and "..." not in out
    assert "".join(line.strip() for line in out.splitlines()[:-1]).replace("[error] sandbox:", "").replace(" ", "") \
        == daemon.replace(" ", "")
    assert "[limit] max_turns reached: 1 of 1 turn used" in out.splitlines()


def test_verbose_shows_setup_and_verify_output_tails_with_their_times() -> None:
    from runner.agent.events import SetupFinished

    stream = io.StringIO()
    console = Console(stream, tty=False, verbosity=1)
    console.on_event(SetupFinished("pip install -e .", 0, 12.25, "Collecting x\nSuccessfully installed x-1.0\n"))
    console.on_event(VerifyFinished("unit-tests", False, 1, 3.2, "tests/test_a.py F\n1 failed in 0.1s\n"))
    lines = stream.getvalue().splitlines()
    assert "[setup] pip install -e . -> exit 0 (12.2s)" in lines or "[setup] pip install -e . -> exit 0 (12.3s)" in lines
    assert "[setup] | Successfully installed x-1.0" in lines
    assert "[verify] unit-tests: FAILED, exit 1 (3.2s)" in lines
    assert "[verify] | 1 failed in 0.1s" in lines
    quiet = io.StringIO()
    Console(quiet, tty=False).on_event(SetupFinished("pip install -e .", 0, 1.0, "Collecting x\n"))
    assert quiet.getvalue() == "[setup] pip install -e . -> exit 0 (1.0s)\n"  # tails only with -v
