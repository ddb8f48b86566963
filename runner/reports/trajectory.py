"""trajectory.jsonl: one JSON event per line, flushed as it happens, redacted, never lost.

A write that fails (a full disk, an I/O error) never raises into the run: the file is cut back to
its last complete line, nothing more is written to it, and `error` says what happened (the run
then ends as an infrastructure error, see runner/finish.py). The file stays valid JSONL.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from runner.agent.events import Event
from runner.redact import Redactor


class TrajectoryWriter:
    def __init__(self, path: Path, redactor: Redactor) -> None:
        self.path = path
        self.redactor = redactor
        self._start = time.monotonic()
        self._file: IO[str] | None = None
        self._complete = 0
        """Bytes of complete lines written so far: where a failed write is cut back to."""
        self.error: OSError | None = None
        """The first write (or open) that failed; nothing is written after it."""

    def __enter__(self) -> TrajectoryWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8")  # closed in __exit__
        except OSError as exc:
            self.error = exc
        return self

    def write(self, event: Event | dict[str, Any]) -> None:
        if self._file is None:
            return
        data = event.to_json() if isinstance(event, Event) else dict(event)
        data["t"] = round(time.monotonic() - self._start, 3)
        line = json.dumps(self.redactor.data(data), ensure_ascii=False, default=str) + "\n"
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            self._fail(exc)
            return
        self._complete += len(line.encode("utf-8"))

    def _fail(self, exc: OSError) -> None:
        self.error = exc
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):  # its buffer could not be flushed either: dropped with it
                file.close()
        with contextlib.suppress(OSError):
            os.truncate(self.path, self._complete)  # no half line at the end

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                self._fail(exc)
            self._file = None
