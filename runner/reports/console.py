"""What a person watching the run sees: the console consumes the loop's typed events.

Two modes:
- live (a terminal, and CI is not "true"): one line per tool call, plus a status line (turn, cost
  so far, elapsed time, what is running) kept in place by `rich`'s live display;
- plain (CI logs, pipes, files): one line when a tool call starts and one when it ends, one per
  turn, never an escape code, e.g. `[turn 3] bash: python -m pytest -q -> exit 1 (0.8s)`; and
  while the run waits on a tool or the model, a heartbeat line every 30 s
  (`[waiting] bash: python -m pytest -q: running for 1m00s`), so a CI job that kills silent
  jobs (CircleCI: 10 minutes) never sees silence.

Verbosity: -1 (-q) prints only the closing summary; 1 (-v) adds the model's text and the tails of
setup and verify output. Errors are shown in full (the daemon's, git's, the API's own words),
wrapped, never cut short. `finish` prints the compact summary last. Event contents are
untrusted (model text, tool output): every value is flattened to printable text, and `on_event`
never raises.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import threading
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
    RunFinished,
    RunStarted,
    SandboxReady,
    SetupFinished,
    ToolCallFinished,
    ToolCallStarted,
    VerifyFinished,
)
from runner.reports.summary import compact_summary, format_cost, format_duration
from runner.result import RunResult

LINE_LIMIT = 160
TEXT_LIMIT = 2000
HEARTBEAT_S = 30.0
"""Plain mode: a line at least this often while the run waits on a tool or the model."""
FULL_LIMIT = 20_000
"""An error message is shown whole up to this many characters (all of it is in result.json)."""
WRAP = 300
TAIL_LINES = 20
"""-v: the last lines of each setup command's and verify check's output."""
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


def full_text(value: Any, limit: int = FULL_LIMIT, width: int = WRAP) -> list[str]:
    """A message as printable lines, whole up to `limit` characters, long lines wrapped at `width`."""
    try:
        text = value if isinstance(value, str) else str(value)
        cut = len(text) - limit
        text = _ESCAPES.sub("", text[:limit])
        out: list[str] = []
        for raw in text.splitlines() or [""]:
            line = _CONTROL.sub("?", raw.replace("\t", "    ")).rstrip()
            line = "".join(c if not 0xD800 <= ord(c) <= 0xDFFF else "?" for c in line)
            out += [line[i:i + width] for i in range(0, len(line), width)] or [""]
        if cut > 0:
            out.append(f"... ({cut} more characters: see result.json)")
        return out
    except Exception:
        return ["<unprintable>"]


def format_wait(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


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
    """Prints a run's events. Use `on_event` for each event and `finish` with the result.

    `heartbeat_s`: how often plain mode says what the run is waiting on (tests make it short).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        verbosity: int = 0,
        heartbeat_s: float = HEARTBEAT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream: TextIO = stream if stream is not None else sys.stdout
        if tty is None:
            try:
                is_tty = bool(self.stream.isatty())
            except Exception:
                is_tty = False
            tty = is_tty and os.environ.get("CI", "").lower() != "true"
        self.live = tty
        self.verbosity = verbosity
        self.heartbeat_s = heartbeat_s
        self._clock = clock
        self._start = clock()
        self._turn = 0
        self._cost: float | None = 0.0
        self._running = ""
        self._inputs: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._waiting: str | None = None
        """What the run waits on now (a tool call, the model, setup), for the heartbeat and status."""
        self._waiting_since = 0.0
        self._last_output = clock()
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None
        self._view: Any = None
        """rich's Live display (live mode), started with the first line."""
        self.redact: Callable[[str], str] = lambda text: text
        """Set by the run to its redactor: no secret reaches the terminal or the CI log either."""

    # -- output -----------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        text = self.redact(text)
        with self._lock:
            self._last_output = self._clock()
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
                self._line(text)
        except Exception:
            return

    def _line(self, text: str) -> None:
        """A permanent line (above the status line in live mode)."""
        if self.live and self.verbosity >= 0:
            view = self._live_view()
            if view is not None:
                from rich.text import Text

                with self._lock:
                    self._last_output = self._clock()
                    with contextlib.suppress(Exception):
                        view.console.print(Text(self.redact(text)), soft_wrap=True)
                return
        self._write(text + "\n")

    def _live_view(self) -> Any:
        """rich's live display on this stream: the status line, redrawn in place."""
        if self._view is None:
            try:
                from rich.console import Console as RichConsole
                from rich.live import Live

                width = max(40, shutil.get_terminal_size((LINE_LIMIT, 24)).columns)
                target = RichConsole(file=self.stream, force_terminal=True, color_system=None, highlight=False,
                                     markup=False, emoji=False, width=width)
                self._view = Live(get_renderable=self._status, console=target, transient=True, auto_refresh=True,
                                  refresh_per_second=2, redirect_stdout=False, redirect_stderr=False)
                self._view.start()
            except Exception:
                self.live = False  # no live view: plain lines still work
                return None
        return self._view

    def _status(self) -> Any:
        from rich.text import Text

        elapsed = format_duration(self._clock() - self._start)
        status = f"turn {self._turn} | cost {format_cost(self._cost)} | {elapsed}"
        if self._running:
            status += f" | {self._running}"
        elif self._waiting:
            status += f" | waiting on {self._waiting}"
        width = max(20, min(LINE_LIMIT, shutil.get_terminal_size((LINE_LIMIT, 24)).columns - 1))
        return Text(self.redact(one_line(status, width)), no_wrap=True, overflow="ellipsis")

    def _draw_status(self) -> None:
        if self.live and self.verbosity >= 0 and (view := self._live_view()) is not None:
            with contextlib.suppress(Exception):
                view.refresh()

    def _stop_view(self) -> None:
        self._stop.set()
        view, self._view = self._view, None
        if view is not None:
            with contextlib.suppress(Exception):
                view.stop()

    # -- what the run waits on, and the heartbeat -------------------------------------------

    def _wait_on(self, what: str | None) -> None:
        with self._lock:
            if what != self._waiting:
                self._waiting, self._waiting_since = what, self._clock()
        if what is not None and not self.live and self.verbosity >= 0 and self._heart is None:
            self._heart = threading.Thread(target=self._beat, name="astra-console-heartbeat", daemon=True)
            self._heart.start()

    def _beat(self) -> None:
        tick = max(0.01, min(1.0, self.heartbeat_s / 4))
        while not self._stop.wait(tick):
            with self._lock:
                waiting, since, quiet = self._waiting, self._waiting_since, self._clock() - self._last_output
            if waiting is not None and quiet >= self.heartbeat_s:
                self._write(f"[waiting] {one_line(waiting)}: {format_wait(self._clock() - since)} so far\n")

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
        self._track(event)
        if isinstance(event, ModelTurn):
            self._turn = event.turn
            self._cost = event.cumulative_cost_usd
        if isinstance(event, Note) and event.level == "warning":
            # Warnings are never quieted, and go to stderr: a CI log must show them even with -q.
            self._warn(f"[warning] {one_line(event.message, 2000)}")
            return
        if self.verbosity < 0:
            return
        if isinstance(event, RunStarted):
            self._start = self._clock()
            self._line(
                f"[astra] run {one_line(event.run_id, 40)}: task {one_line(event.task, 60)},"
                f" model {one_line(event.model, 60)}, sandbox {one_line(event.sandbox, 20)}"
            )
        elif isinstance(event, ModelTurn):
            self._model_turn(event)
        elif isinstance(event, ToolCallStarted):
            self._inputs[event.tool_use_id] = event.input
            self._running = tool_summary(event.tool, event.input)
            self._line(f"  > {self._running}" if self.live else f"[turn {event.turn}] > {self._running}")
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
            error = one_line(event.error, 2000)
            self._line(f"[turn {event.turn}] model error ({event.consecutive} in a row): {error}")
        elif isinstance(event, LimitReached):
            limit, reason = one_line(event.limit, 40), one_line(event.reason, 2000)
            self._line(f"[limit] {reason}" if reason.startswith(limit) else f"[limit] {limit}: {reason}")
        elif isinstance(event, RunError):
            lines = full_text(event.message)
            self._line(f"[error] {one_line(event.error_kind, 40)}: {lines[0]}")
            for line in lines[1:]:
                self._line(f"        {line}")
        elif isinstance(event, SetupFinished):
            verdict = "timed out" if event.timed_out else f"exit {event.exit_code}"
            self._line(f"[setup] {one_line(event.command, 100)} -> {verdict} ({event.duration_s:.1f}s)")
            self._tail("setup", event.output_tail, always=event.exit_code != 0)
        elif isinstance(event, VerifyFinished):
            verdict = (
                "passed"
                if event.passed
                else ("FAILED" + ("" if event.exit_code is None else f", exit {event.exit_code}"))
            )
            self._line(f"[verify] {one_line(event.name, 60)}: {verdict} ({event.duration_s:.1f}s)")
            self._tail("verify", event.output_tail)
        elif isinstance(event, Note):
            if event.level != "debug" or self.verbosity > 0:
                self._line(f"[{one_line(event.level, 10)}] {one_line(event.message, 2000)}")
        else:
            self._draw_status()

    def _tail(self, what: str, output: Any, *, always: bool = False) -> None:
        """-v (or `always`): the last lines of a command's output, each marked with `what`."""
        if not (self.verbosity > 0 or always) or not isinstance(output, str) or not output.strip():
            return
        lines = [ln for ln in full_text(output, limit=FULL_LIMIT, width=WRAP) if ln.strip()]
        for line in lines[-TAIL_LINES:]:
            self._line(f"[{what}] | {line}")

    def _track(self, event: Event) -> None:
        """What the run waits on after this event (for the heartbeat and the status line)."""
        if isinstance(event, Note) and event.message.startswith("starting the "):
            self._wait_on("the sandbox to start (and its setup commands)")
        elif isinstance(event, SandboxReady | ToolCallFinished | ModelError):
            still = set(self._inputs) - {getattr(event, "tool_use_id", None)}
            if not still or isinstance(event, SandboxReady):
                self._wait_on(f"the model (turn {self._turn + 1})")
        elif isinstance(event, ToolCallStarted):
            self._wait_on(tool_summary(event.tool, event.input))
        elif isinstance(event, ModelTurn):
            calls = len(event.tool_uses) if isinstance(event.tool_uses, list) else 0
            self._wait_on(None if calls else "the patch and the verify checks")
        elif isinstance(event, RunFinished):
            self._wait_on(None)

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
        self._stop_view()
        try:
            summary = compact_summary(result)
            lines = [one_line(line, 400) for line in summary.splitlines()]
            self._write("\n".join(lines[:1] + ["  " + line for line in lines[1:]]) + "\n")
        except Exception:
            self._write(f"astra-run: {one_line(getattr(result, 'status', '?'), 20)}\n")
