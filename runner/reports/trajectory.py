"""trajectory.jsonl: one JSON event per line, flushed as it happens, redacted, never lost."""

from __future__ import annotations

import json
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

    def __enter__(self) -> TrajectoryWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", encoding="utf-8")  # closed in __exit__
        return self

    def write(self, event: Event | dict[str, Any]) -> None:
        if self._file is None:
            return
        data = event.to_json() if isinstance(event, Event) else dict(event)
        data["t"] = round(time.monotonic() - self._start, 3)
        line = json.dumps(self.redactor.data(data), ensure_ascii=False, default=str)
        self._file.write(line + "\n")
        self._file.flush()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
