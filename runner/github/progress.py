"""Live progress in the tracking comment: a checklist of turns and tool calls while the run goes.

`LiveComment` is the run's observer (it also feeds the console). It never calls GitHub from the
event loop: events only update the checklist in memory; a worker thread posts the comment when
something changed, at most once every `interval_s` seconds (GitHub's secondary rate limits count
content-changing calls), and the last state once more when the run ends. A failed update is
logged and skipped: progress must never hurt the run.

Everything shown is redacted and escaped (`md_literal`): a tool call's input is model text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runner.agent.events import (
    Event,
    LimitReached,
    ModelTurn,
    PolicyDecision,
    RunError,
    ToolCallFinished,
    ToolCallStarted,
    VerifyFinished,
)
from runner.reports.summary import format_cost, md_literal
from runner.result import RunResult

log = logging.getLogger(__name__)

INTERVAL_S = 3.0
MAX_ITEMS = 40
"""Lines of the checklist shown; older ones are summed up in one line."""


@dataclass
class _Item:
    label: str
    """Our own words (markdown as is)."""
    detail: str = ""
    """Words that came from the model or the repository: escaped when shown."""
    done: bool = False
    failed: bool = False
    children: list[_Item] = field(default_factory=list)


class LiveComment:
    """A RunObserver: forwards to `inner` (the console), keeps the checklist, posts it throttled."""

    def __init__(self, inner: object, post: Callable[[str], None], frame: Callable[[str], str],
                 interval_s: float = INTERVAL_S) -> None:
        self.inner = inner
        self._post = post
        self._frame = frame
        """Turns the checklist's markdown into the whole comment body (marker, headline, links)."""
        self.interval_s = interval_s
        self._items: list[_Item] = []
        self._calls: dict[str, _Item] = {}
        self._cost: float | None = 0.0
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._dirty = False
        self._redact: Callable[[str], str] = lambda text: text
        self.posts = 0
        self._worker = threading.Thread(target=self._run, name="astra-live-comment", daemon=True)
        self._worker.start()

    # the run sets `redact` on its observer: pass it on to the console too
    @property
    def redact(self) -> Callable[[str], str]:
        return self._redact

    @redact.setter
    def redact(self, fn: Callable[[str], str]) -> None:
        self._redact = fn
        if hasattr(self.inner, "redact"):
            self.inner.redact = fn

    def on_event(self, event: Event) -> None:
        if hasattr(self.inner, "on_event"):
            self.inner.on_event(event)
        try:
            with self._lock:
                changed = self._update(event)
                self._dirty = self._dirty or changed
            if changed:
                self._changed.set()
        except Exception:  # progress is a nicety: never let it disturb the run
            log.exception("live progress: could not take an event")

    def finish(self, result: RunResult) -> None:
        if hasattr(self.inner, "finish"):
            self.inner.finish(result)

    def close(self) -> None:
        """Stop the worker after one last update (call before posting the final comment)."""
        self._stop.set()
        self._changed.set()
        self._worker.join(timeout=30)

    # ----------------------------------------------------------------------------- state

    def _update(self, event: Event) -> bool:
        if isinstance(event, ModelTurn):
            self._cost = event.cumulative_cost_usd
            calls = len(event.tool_uses)
            what = f"{calls} tool call(s)" if calls else "answered"
            for item in self._items:
                item.done = True
            self._items.append(_Item(f"Turn {event.turn}: {what}", done=not calls))
        elif isinstance(event, ToolCallStarted):
            from runner.reports.console import tool_summary

            call = _Item("", tool_summary(event.tool, event.input))
            self._calls[event.tool_use_id] = call
            (self._items[-1].children if self._items else self._items).append(call)
        elif isinstance(event, PolicyDecision) and not event.allowed:
            if (denied := self._calls.get(event.tool_use_id)) is not None:
                denied.detail += f" (denied: {event.rule or 'policy default'})"
        elif isinstance(event, ToolCallFinished):
            if (ended := self._calls.get(event.tool_use_id)) is not None:
                ended.done, ended.failed = True, event.is_error
        elif isinstance(event, VerifyFinished):
            self._items.append(_Item(f"Verify {'passed' if event.passed else 'FAILED'}:", event.name,
                                     done=True, failed=not event.passed))
        elif isinstance(event, LimitReached | RunError):
            self._items.append(_Item("Stopped:", event.reason if isinstance(event, LimitReached) else event.message,
                                     done=True, failed=True))
        else:
            return False
        return True

    def checklist(self) -> str:
        """The checklist as markdown (every line escaped text)."""
        with self._lock:
            lines: list[str] = []
            for item in self._items:
                lines.append(self._line(item, ""))
                lines += [self._line(child, "  ") for child in item.children]
            cost = self._cost
        if len(lines) > MAX_ITEMS:
            lines = [f"- [x] … {len(lines) - MAX_ITEMS + 1} earlier steps", *lines[-(MAX_ITEMS - 1):]]
        return "\n".join([*lines, "", f"Cost so far: {format_cost(cost)}"])

    def _line(self, item: _Item, indent: str) -> str:
        mark = "x" if item.done else " "
        flag = " ✗" if item.failed else ""
        detail = md_literal(self._redact(" ".join(item.detail.split())), 300)
        words = " ".join(w for w in (item.label, detail) if w)
        return f"{indent}- [{mark}] {words}{flag}"

    # ---------------------------------------------------------------------------- worker

    def _run(self) -> None:
        last = 0.0
        while True:
            self._changed.wait()
            stopping = self._stop.is_set()
            wait = self.interval_s - (time.monotonic() - last)
            if wait > 0 and not stopping:
                self._stop.wait(wait)  # an end of the run cuts the wait short
            self._changed.clear()
            with self._lock:
                dirty, self._dirty = self._dirty, False
            if dirty:
                try:
                    self._post(self._frame(self.checklist()))
                    self.posts += 1
                except Exception as exc:  # an API hiccup: the next change tries again
                    log.warning("live progress: could not update the comment: %s", exc)
                last = time.monotonic()
            if self._stop.is_set():
                return
