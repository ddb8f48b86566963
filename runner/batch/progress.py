"""What a person watching a batch sees.

- live (a terminal, and CI is not set): finished tasks scroll by as plain lines; below them a block
  redrawn in place lists the running tasks with their turns, cost so far and elapsed time;
- plain (CI logs, pipes, files: no TTY, or CI=true/1): one line when a task starts and one when it
  finishes, never an escape code.

Tasks run with a silent console (see scheduler.TaskWatch), so their output never interleaves:
everything printed comes from here. Names and reasons are untrusted text: flattened to one line.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from runner.reports.console import one_line
from runner.reports.summary import format_cost


def is_live(stream: TextIO) -> bool:
    ci = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
    try:
        return stream.isatty() and not ci
    except (AttributeError, ValueError):
        return False


@dataclass
class _Running:
    started: float
    turns: int = 0
    cost: float | None = 0.0


@dataclass
class Progress:
    stream: TextIO
    total: int
    live: bool = False
    done: int = 0
    running: dict[str, _Running] = field(default_factory=dict)
    spent: float = 0.0
    _drawn: int = 0
    _last_draw: float = 0.0

    def _counter(self) -> str:
        width = len(str(self.total))
        return f"[{self.done:>{width}}/{self.total}]"

    def _emit(self, line: str) -> None:
        try:
            if self.live:
                self._erase()
            self.stream.write(line + "\n")
            if self.live:
                self._draw()
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe must not stop the batch

    def start(self, name: str) -> None:
        self.running[name] = _Running(time.monotonic())
        if self.live:
            self.redraw(force=True)
        else:
            self._emit(f"{self._counter()} start    {one_line(name, 80)}")

    def update(self, name: str, turns: int, cost: float | None) -> None:
        state = self.running.get(name)
        if state is not None:
            state.turns, state.cost = turns, cost
            if self.live:
                self.redraw()

    def finish(self, name: str, result: dict[str, Any]) -> None:
        state = self.running.pop(name, None)
        self.done += 1
        cost = result.get("cost_usd")
        if isinstance(cost, int | float):
            self.spent += cost
        elapsed = result.get("duration_s") or (time.monotonic() - state.started if state else 0.0)
        patch = result.get("patch") if isinstance(result.get("patch"), dict) else {}
        turns = f"{result.get('turns', 0)} turn{'' if result.get('turns') == 1 else 's'}"
        self._emit(
            f"{self._counter()} finished {one_line(name, 80)}: {result.get('status')} (exit {result.get('exit_code')})"
            f", {turns}, {format_cost(cost if isinstance(cost, int | float) else None)}"
            f", {(patch or {}).get('files_changed', 0)} file(s) changed, {float(elapsed):.1f}s"
            + (f" - {one_line(result.get('reason'), 120)}" if result.get("status") != "success" else "")
        )

    def skip(self, name: str, why: str, result: dict[str, Any] | None = None) -> None:
        self.done += 1
        cost = (result or {}).get("cost_usd")
        if isinstance(cost, int | float):
            self.spent += cost
        status = f": {result.get('status')}" if result else ""
        self._emit(f"{self._counter()} {why:<8} {one_line(name, 80)}{status}")

    def note(self, text: str) -> None:
        self._emit(f"astra-run batch: {one_line(text, 300)}")

    # -- the live block --------------------------------------------------------------------------
    def redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.live or (not force and now - self._last_draw < 0.2):
            return
        try:
            self._erase()
            self._draw()
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        self._last_draw = time.monotonic()
        width = max(40, shutil.get_terminal_size((100, 20)).columns - 1)
        running_cost = sum(r.cost or 0.0 for r in self.running.values())
        lines = [f"-- {len(self.running)} running, {self.done}/{self.total} done, "
                 f"{format_cost(self.spent + running_cost)} spent --"]
        now = time.monotonic()
        for name, r in sorted(self.running.items()):
            lines.append(f"   {one_line(name, 50):<50} turn {r.turns:>3}  {format_cost(r.cost):>10}"
                         f"  {now - r.started:6.0f}s")
        if not self.running:
            return
        for line in lines:
            self.stream.write(line[:width] + "\n")
        self._drawn = len(lines)

    def close(self) -> None:
        if self.live:
            try:
                self._erase()
                self.stream.flush()
            except (OSError, ValueError):
                pass
