"""What the Bedrock and Vertex fakes share: a threaded HTTP server with a script of turns, and the
Messages API's own message and event building, taken from tests/fakes/messages_api.py.

The one place that imports from messages_api (its message builder, its SSE framing and its
request validation): a change there is a change here, not in each platform fake.

A script item is a turn as messages_api knows it (`text`, `tool_calls`, `usage`, `stop_reason`,
`error: STATUS`, `stream_error: {type, after}`), or a callable `(call) -> turn | None` that sees
the whole request (headers included: a test can make the fake "say" a credential it received).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.messages_api import ERROR_TYPES, RequestInvalid, new_id
from tests.fakes.messages_api import _build_message as build_message
from tests.fakes.messages_api import _sse as sse_frame
from tests.fakes.messages_api import _sse_events as sse_events
from tests.fakes.messages_api import _validate_messages as validate_messages
from tests.fakes.messages_api import _validate_tools as validate_tools

__all__ = ["ERROR_TYPES", "Call", "PlatformFake", "RequestInvalid", "Turn", "build_message", "new_id",
           "sse_events", "sse_frame", "validate_body"]

Turn = dict[str, Any]


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    """Lower-case names."""
    raw: bytes
    body: Any
    status: int = 0


def validate_body(body: Any, *, version: str | None) -> None:
    """A Messages request as a platform receives it: no `model` (it is in the URL), the API
    version in the body (`version`, or any when None), and otherwise what the Messages API checks."""
    if not isinstance(body, dict):
        raise RequestInvalid(400, "The request body is not valid JSON.")
    if not body.get("anthropic_version") or (version is not None and body["anthropic_version"] != version):
        raise RequestInvalid(400, f"anthropic_version: expected {version!r}, got {body.get('anthropic_version')!r}")
    if "model" in body:
        raise RequestInvalid(400, "model: Extra inputs are not permitted (the model is named in the URL)")
    for name, kind in (("max_tokens", int), ("messages", list)):
        if not isinstance(body.get(name), kind):
            raise RequestInvalid(400, f"{name}: Field required")
    validate_tools(body.get("tools"))
    validate_messages(body["messages"])


@dataclass
class _State:
    script: list[Turn | Callable[[Call], Turn | None]]
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class PlatformFake:
    """Base of the platform fakes: `handler` answers each request; `next_turn(call)` gives its turn."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self, script: Iterable[Turn | Callable[[Call], Turn | None]] = ()) -> None:
        self._state = _State(list(script))
        fake = self

        class Handler(self.handler):  # type: ignore[name-defined,misc]
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> PlatformFake:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def calls(self) -> list[Call]:
        with self._state.lock:
            return list(self._state.calls)

    def record(self, call: Call) -> None:
        with self._state.lock:
            self._state.calls.append(call)

    def next_turn(self, call: Call) -> Turn:
        with self._state.lock:
            item = self._state.script.pop(0) if self._state.script else None
        turn = item(call) if callable(item) else item
        return dict(turn) if turn is not None else {"text": "done"}


class BaseHandler(BaseHTTPRequestHandler):
    owner: PlatformFake
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def read_call(self) -> Call:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        call = Call(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, raw, body)
        self.owner.record(call)
        return call

    def _error(self, status: int, message: str) -> None:
        raise NotImplementedError  # each platform answers errors in its own shape

    def scripted_turn(self, call: Call) -> dict[str, Any] | None:
        """The next scripted turn, or None when it was a scripted error (already answered)."""
        turn = self.owner.next_turn(call)
        if "error" in turn:
            status = int(turn["error"] if not isinstance(turn["error"], dict) else turn["error"]["status"])
            call.status = status
            self._error(status, f"fake error {status}")
            return None
        call.status = 200
        return turn

    def send_body(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def start_chunked(self, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
