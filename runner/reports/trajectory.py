"""trajectory.jsonl: one JSON event per line, flushed as it happens, redacted, never lost.

The first line is always `run_started`, and it describes the whole setting of the conversation
(SPEC §4): `schema_version`, `astra_run_version`, the run, the limits, the model and its options,
the system prompt, the tool definitions and the first user message. Those are known only once the
agent is built (the system prompt needs the worktree, the tools need the MCP servers), so the
events before that (setup notes, sandbox_ready) are held back and written right after the header
when `agent_ready` arrives, with their own time stamps. A run that never got that far (a setup
failure) still gets a header, with `system` and `tools` null, when it finishes.

Every line also goes to the `mirror` streams (`--json` on stdout): the same bytes, in the same order.

A resumed run appends to the file: its first new line is `run_resumed`.

A write that fails (a full disk, an I/O error) never raises into the run: the file is cut back to
its last complete line, nothing more is written to it, and `error` says what happened (the run
then ends as an infrastructure error, see runner/finish.py). The file stays valid JSONL.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TextIO

from runner import __version__
from runner.agent.events import AgentReady, Event, RunFinished, RunStarted
from runner.redact import Redactor

SCHEMA_VERSION = 2
"""1: events without a header; 2: `run_started` carries the conversation's setting, model turns
carry `content`, `cost_usd` is per turn and `cumulative_cost_usd` the run's so far."""


class TrajectoryWriter:
    def __init__(
        self,
        path: Path,
        redactor: Redactor,
        *,
        header: dict[str, Any] | None = None,
        mirror: Sequence[TextIO] = (),
        append: bool = False,
        t_offset: float = 0.0,
    ) -> None:
        self.path = path
        self.redactor = redactor
        self.mirror = list(mirror)
        self.append = append
        self._start = time.monotonic() - t_offset
        self._file: IO[str] | None = None
        self._complete = 0
        """Bytes of complete lines written so far: where a failed write is cut back to."""
        self.error: OSError | None = None
        """The first write (or open) that failed; nothing is written after it."""
        self._header: dict[str, Any] = {
            "type": RunStarted.kind, "schema_version": SCHEMA_VERSION, "astra_run_version": __version__,
            "system": None, "tools": None, **(header or {}),
        }
        self._pending: list[dict[str, Any]] | None = None if append else []
        """Events held back until the header is complete (None: writing straight through)."""

    def __enter__(self) -> TrajectoryWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a" if self.append else "w", encoding="utf-8")  # closed in __exit__
            if self.append:
                self._complete = self._file.tell()
        except OSError as exc:
            self.error = exc
        return self

    def write(self, event: Event | dict[str, Any]) -> None:
        if self._file is None:
            return
        data = event.to_json() if isinstance(event, Event) else dict(event)
        data["t"] = round(time.monotonic() - self._start, 3)
        if self._pending is None:
            if data["type"] != AgentReady.kind:  # a resumed run: the header is already in the file
                self._line(data)
            return
        if data["type"] == RunStarted.kind:
            self._header.update({k: v for k, v in data.items() if k not in ("type", "t")})
            self._header["t"] = data["t"]
            return
        if data["type"] == AgentReady.kind:
            self._header.update({k: v for k, v in data.items() if k not in ("type", "t")})
            self._flush_header()
            return
        self._pending.append(data)
        if data["type"] == RunFinished.kind:
            self._flush_header()

    def _flush_header(self) -> None:
        pending, self._pending = self._pending or [], None
        self._header.setdefault("t", pending[0]["t"] if pending else 0.0)
        self._line(self._header)
        for data in pending:
            self._line(data)

    def _line(self, data: dict[str, Any]) -> None:
        if self._file is None:  # an earlier write failed: nothing more is written
            return
        line = json.dumps(self.redactor.data(data), ensure_ascii=False, default=str)
        line = line.encode("utf-8", "replace").decode("utf-8") + "\n"  # a lone surrogate from a tool's output
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            self._fail(exc)
            return
        self._complete += len(line.encode("utf-8"))
        for stream in list(self.mirror):
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError):  # the reader of stdout went away: the file still gets it
                self.mirror.remove(stream)

    def _fail(self, exc: OSError) -> None:
        self.error = exc
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):  # its buffer could not be flushed either: dropped with it
                file.close()
        with contextlib.suppress(OSError):
            os.truncate(self.path, self._complete)  # no half line at the end

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._file is not None and self._pending is not None:
            self._flush_header()
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                self._fail(exc)
            self._file = None


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of a trajectory file (lines that are not JSON objects are skipped)."""
    events: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return events
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            events.append(value)
    return events
