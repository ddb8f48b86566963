"""What a person watching the run sees: the console consumes the loop's typed events.

Two modes:
- live (a terminal, and CI is not "true"): one line per tool call, plus a status line (turn, cost
  so far, elapsed time, what is running) redrawn in place with ANSI codes;
- plain (CI logs, pipes, files): one line per turn and per tool call, never an escape code, e.g.
  `[turn 3] bash: python -m pytest -q -> exit 1 (0.8s)`.

Verbosity: -1 (-q) prints only the closing summary; 1 (-v) adds the model's text. `finish`
prints the compact summary last. Event contents are untrusted (model text, tool output): every
value is flattened to one printable line and truncated, and `on_event` never raises.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from runner.agent.events import (
    Event,
    LimitReached,
    ModelError,
    ModelTurn,
    Note,
    PolicyDecision,
    RunError,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
    VerifyFinished,
)
from runner.reports.summary import compact_summary, format_cost, format_duration
from runner.result import RunResult

LINE_LIMIT = 160
TEXT_LIMIT = 2000
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_EXIT_MARK = re.compile(r"\[(?:no output, )?exit code (-?\d+)\]\s*$")
"""How the bash tool ends its output (runner/tools/shell.py)."""
_EXIT = re.compile(r"\bexit(?:ed)?(?: with)?(?:\s*code|_code|\s*status)?[\s:=]+(-?\d+)", re.IGNORECASE)
_MAIN_ARG = {
    "bash": "command",
    "read": "path",
    "write": "path",
    "edit": "path",
    "ls": "path",
    "glob": "pattern",
}
_CLEAR_LINE = "\r\x1b[2K"


def one_line(value: Any, limit: int = LINE_LIMIT) -> str:
    """Any value as one printable line of at most `limit` characters. Never raises."""
    try:
        if isinstance(value, bytes | bytearray):
            text = repr(bytes(value[: limit * 4]))
        elif isinstance(value, str):
            text = value[: limit * 8]
        else:
            text = json.dumps(value, default=repr, ensure_ascii=False)[: limit * 8]
        text = _ESCAPES.sub("", text)
        text = _CONTROL.sub("?", text)
        text = "".join(c if not 0xD800 <= ord(c) <= 0xDFFF else "?" for c in text)
        text = " ".join(text.split())
    except Exception:
        text = "<unprintable>"
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def tool_summary(tool: str, tool_input: Any) -> str:
    """`bash: python -m pytest -q` style: the tool and its most telling argument."""
    if not isinstance(tool_input, dict):
        return f"{one_line(tool, 60)}: {one_line(tool_input, 100)}"
    key = _MAIN_ARG.get(tool)
    if key and key in tool_input:
        arg = tool_input[key]
    elif tool == "grep" and "pattern" in tool_input:
        arg = f"{tool_input['pattern']!s} in {tool_input.get('path', '.')!s}"
    else:
        arg = tool_input
    return f"{one_line(tool, 60)}: {one_line(arg, 100)}"


def _outcome(event: ToolCallFinished) -> str:
    output = event.output if isinstance(event.output, str) else ""
    match = _EXIT_MARK.search(output[-200:])
    if match is None and event.tool == "bash" and event.is_error:
        match = _EXIT.search(output[-2000:])
    if match:
        return f"exit {match.group(1)}"
    if event.tool == "bash" and not event.is_error:
        return "exit 0"
    if event.is_error:
        first = next((ln for ln in output.splitlines() if ln.strip()), "")
        return "error" + (f": {one_line(first, 80)}" if first else "")
    return "ok"


class Console:
    """Prints a run's events. Use `on_event` for each event and `finish` with the result."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, verbosity: int = 0) -> None:
        self.stream: TextIO = stream if stream is not None else sys.stdout
        if tty is None:
            try:
                is_tty = bool(self.stream.isatty())
            except Exception:
                is_tty = False
            tty = is_tty and os.environ.get("CI", "").lower() != "true"
        self.live = tty
        self.verbosity = verbosity
        self._start = time.monotonic()
        self._turn = 0
        self._cost: float | None = 0.0
        self._running = ""
        self._inputs: dict[str, Any] = {}
        self._status_shown = False
        self.redact: Callable[[str], str] = lambda text: text
        """Set by the run to its redactor: no secret reaches the terminal or the CI log either."""

    # -- output -----------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        text = self.redact(text)
        try:
            self.stream.write(text)
        except UnicodeEncodeError:
            encoding = getattr(self.stream, "encoding", None) or "ascii"
            try:
                self.stream.write(text.encode(encoding, "replace").decode(encoding, "replace"))
            except Exception:
                return
        except Exception:
            return
        with contextlib.suppress(Exception):
            self.stream.flush()

    def _warn(self, text: str) -> None:
        try:
            if self.stream is sys.stdout:
                sys.stdout.flush()
                sys.stderr.write(self.redact(text) + "\n")
                sys.stderr.flush()
            else:  # a test's or a batch's own stream: keep everything in one place
                self._write(text + "\n")
        except Exception:
            return

    def _line(self, text: str) -> None:
        """A permanent line (above the status line in live mode)."""
        if self.live:
            self._write((_CLEAR_LINE if self._status_shown else "") + text + "\n")
            self._status_shown = False
            self._draw_status()
        else:
            self._write(text + "\n")

    def _draw_status(self) -> None:
        if not self.live or self.verbosity < 0:
            return
        elapsed = format_duration(time.monotonic() - self._start)
        status = f"turn {self._turn} | cost {format_cost(self._cost)} | {elapsed}"
        if self._running:
            status += f" | {self._running}"
        # a status line wider than the terminal would wrap, and "\r" could no longer redraw it
        width = max(20, min(LINE_LIMIT, shutil.get_terminal_size((LINE_LIMIT, 24)).columns - 1))
        self._write(_CLEAR_LINE + one_line(status, width))
        self._status_shown = True

    # -- events -----------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Show one event. Never raises."""
        try:
            self._on_event(event)
        except Exception as exc:  # a display bug must never end a run
            if self.verbosity >= 0:
                self._line(
                    f"[console] could not show a {one_line(getattr(event, 'kind', '?'), 40)} event: "
                    f"{one_line(type(exc).__name__, 40)}"
                )

    def _on_event(self, event: Event) -> None:
        if isinstance(event, ModelTurn):
            self._turn = event.turn
            self._cost = event.cumulative_cost_usd
        if isinstance(event, Note) and event.level == "warning":
            # Warnings are never quieted, and go to stderr: a CI log must show them even with -q.
            self._warn(f"[warning] {one_line(event.message)}")
            return
        if self.verbosity < 0:
            return
        if isinstance(event, RunStarted):
            self._start = time.monotonic()
            self._line(
                f"[astra] run {one_line(event.run_id, 40)}: task {one_line(event.task, 60)},"
                f" model {one_line(event.model, 60)}, sandbox {one_line(event.sandbox, 20)}"
            )
        elif isinstance(event, ModelTurn):
            self._model_turn(event)
        elif isinstance(event, ToolCallStarted):
            self._inputs[event.tool_use_id] = event.input
            self._running = tool_summary(event.tool, event.input)
            if self.live:
                self._line(f"  > {self._running}")
        elif isinstance(event, ToolCallFinished):
            self._running = ""
            tool_input = self._inputs.pop(event.tool_use_id, None)
            call = (
                tool_summary(event.tool, tool_input) if tool_input is not None else one_line(event.tool, 60)
            )
            done = f"{call} -> {_outcome(event)} ({event.duration_s:.1f}s)"
            if self.live:
                # the call itself was shown when it started; only failures get a second line
                if event.is_error:
                    self._line(f"    ! {one_line(done, LINE_LIMIT)}")
                else:
                    self._draw_status()
            else:
                self._line(f"[turn {event.turn}] {one_line(done, LINE_LIMIT)}")
        elif isinstance(event, PolicyDecision):
            if not event.allowed:
                rule = one_line(event.rule, 60) if event.rule else "policy default"
                self._line(f"[turn {self._turn}] denied {one_line(event.tool, 60)} ({rule})")
        elif isinstance(event, ModelError):
            error = one_line(event.error)
            self._line(f"[turn {event.turn}] model error ({event.consecutive} in a row): {error}")
        elif isinstance(event, LimitReached):
            self._line(f"[limit] {one_line(event.limit, 40)}: {one_line(event.reason)}")
        elif isinstance(event, RunError):
            self._line(f"[error] {one_line(event.error_kind, 40)}: {one_line(event.message)}")
        elif isinstance(event, VerifyFinished):
            verdict = (
                "passed"
                if event.passed
                else ("FAILED" + ("" if event.exit_code is None else f", exit {event.exit_code}"))
            )
            self._line(f"[verify] {one_line(event.name, 60)}: {verdict} ({event.duration_s:.1f}s)")
        elif isinstance(event, Note):
            if event.level != "debug" or self.verbosity > 0:
                self._line(f"[{one_line(event.level, 10)}] {one_line(event.message)}")
        else:
            self._draw_status()

    def _model_turn(self, event: ModelTurn) -> None:
        calls = len(event.tool_uses) if isinstance(event.tool_uses, list) else 0
        if not self.live:
            self._line(
                f"[turn {event.turn}] model {one_line(event.stop_reason, 20)}: {calls} tool call(s),"
                f" cost so far {format_cost(event.cumulative_cost_usd)} ({event.duration_s:.1f}s)"
            )
        if self.verbosity > 0 and isinstance(event.text, str) and event.text.strip():
            for raw in event.text[:TEXT_LIMIT].splitlines():
                if raw.strip():
                    self._line(f"[turn {event.turn}] | {one_line(raw, LINE_LIMIT)}")
            if len(event.text) > TEXT_LIMIT:
                self._line(f"[turn {event.turn}] | ... ({len(event.text) - TEXT_LIMIT} more characters)")
        if self.live:
            self._draw_status()

    def finish(self, result: RunResult) -> None:
        """Print the compact summary, last."""
        try:
            if self.live and self._status_shown:
                self._write(_CLEAR_LINE)
                self._status_shown = False
            summary = compact_summary(result)
            lines = [one_line(line, 400) for line in summary.splitlines()]
            self._write("\n".join(lines[:1] + ["  " + line for line in lines[1:]]) + "\n")
        except Exception:
            self._write(f"astra-run: {one_line(getattr(result, 'status', '?'), 20)}\n")
