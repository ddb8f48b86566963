"""A fake Anthropic Messages API: real HTTP, real wire format, scripted answers and faults.

    with FakeMessagesAPI(script=[{"text": "hi"}], api_key="sk-test") as api:
        client = AsyncAnthropic(api_key="sk-test", base_url=api.base_url)
        ...
        api.requests[0]["messages"]          # every request body received, in order

As a process (end-to-end CLI tests, benchmarks); the URL is printed on stdout once it listens:

    python -m tests.fakes.messages_api --port 0 --script turns.yaml [--api-key K] [--latency-ms 20]
                                       [--requests-log requests.jsonl]

A script is a list of turns (YAML or JSON in a file). Each request to `POST /v1/messages` that
passes validation takes the next turn; when the list runs out the answer is an end_turn "done".

    - text: "Let me look."                              # a text block (split into `chunks` deltas)
      tool_calls:
        - {name: bash, input: {command: ls}}            # a tool_use block, its JSON split in chunks
        - {name: bash, input_json: '{"command": "l'}    # raw (here broken) JSON sent as is
      usage: {input_tokens: 100, output_tokens: 20, cache_creation_input_tokens: 50,
              cache_read_input_tokens: 900}             # default: estimated from the sizes
      stop_reason: tool_use                             # default: tool_use if tool calls else end_turn
      model: claude-x                                   # default: the model of the request
      thinking: "hmm"                                   # a thinking block before the text
      chunks: 3                                         # deltas per block
      delta_usage: full                                 # or output_only (message_delta.usage shape)
      delay_ms: 200                                     # latency before the response headers
      chunk_delay_ms: 5                                 # latency between SSE events
    - error: 429                                        # HTTP error: 400 401 403 404 413 429 500 529
    - error: {status: 429, retry_after: 0.05, message: "slow down", type: rate_limit_error}
    - {text: "abc", cut_after: 4}                       # drop the connection after 4 SSE events
    - {text: "abc", cut_after: 4, cut_mode: eof}        # end the body cleanly without message_stop
    - {text: "abc", stream_error: {type: overloaded_error, after: 3}}   # `error` event mid-stream
    - {text: "abc", stall_after: 2, stall_s: 30}        # stop sending after 2 events (watch cancel)
    - {drop: true}                                      # hang up before any response
    - {text: "no", stop_reason: refusal, stop_details: {category: cyber, explanation: "..."}}
    - {thinking: "plan", redacted_thinking: true}       # thinking text (default ""), a redacted block
    - {opaque: {type: x_fake_future, data: 1}}          # a block type the SDK does not know
    - error: {status: 429, spend_limit: true}           # a spend-limit 429: no retry-after
    - error: {status: 529, headers: {x-should-retry: "false"}}

Current rules (tests/fakes/messages_rules.py, each with its documentation page): per-model
context windows ("prompt is too long: N tokens > M maximum"), thinking by default on the models
that think by default (a `thinking` block first, empty text as with the default display, and a
signature bound to the model and to everything before the block, checked when it comes back),
the parameters each model rejects, threshold compaction (`compact_20260112`), tool-result
clearing (`clear_tool_uses_20250919`), prompt caching from the request's breakpoints (usage is
computed, not guessed, unless a turn gives it) and POST /v1/messages/count_tokens.

In Python a script item may also be a callable `(request_body) -> turn | None`, and `hook=` is
called with each request once the script has run out (None: answer "done").
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import json
import secrets
import select
import signal
import socket
import string
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.fakes import messages_rules as rules_mod
from tests.fakes.messages_rules import Cache, Invalid, Prompt, Signer

Turn = dict[str, Any]
Event = tuple[str, dict[str, Any]]
Hook = Callable[[dict[str, Any]], Turn | None]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
DEFAULT_MESSAGES = {
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
}
SPEND_LIMIT_MESSAGE = (
    "You have reached your specified API usage limits. You will regain access on the first of next month."
)
"""Wording ours: api/errors says a tier spend-limit 429 carries no retry-after, not its text."""
REASONS = {529: "Overloaded"}
_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    return prefix + "01" + "".join(secrets.choice(_ALNUM) for _ in range(22))


class RequestInvalid(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Call:
    """One HTTP request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0
    turn: Turn | None = None


@dataclass
class _State:
    script: list[Turn | Hook]
    hook: Hook | None
    api_key: str | None
    latency_ms: float
    requests_log: Path | None
    calls: list[Call] = field(default_factory=list)
    signer: Signer = field(default_factory=Signer)
    issued: dict[str, str] = field(default_factory=dict)
    """Signatures (and redacted data) the fake sent -> the model that produced them."""
    caches: dict[str, Cache] = field(default_factory=dict)
    opaque: list[dict[str, Any]] = field(default_factory=list)
    """Unknown-type blocks the fake sent; each must come back unchanged."""
    disconnects: int = 0
    stalls: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)
    closing: threading.Event = field(default_factory=threading.Event)


class FakeMessagesAPI:
    """A Messages API on 127.0.0.1 (random port by default), served from a background thread."""

    def __init__(
        self,
        script: Iterable[Turn | Hook] = (),
        *,
        api_key: str | None = None,
        hook: Hook | None = None,
        latency_ms: float = 0,
        port: int = 0,
        host: str = "127.0.0.1",
        requests_log: Path | None = None,
    ) -> None:
        self._state = _State(list(script), hook, api_key, latency_ms, requests_log)
        state = self._state

        class Handler(_Handler):
            st = state

        self._server = _Server((host, port), Handler)
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeMessagesAPI:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-messages-api", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._state.closing.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeMessagesAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what tests look at --------------------------------------------------------------------
    def add(self, *turns: Turn | Hook) -> None:
        """Append turns to the script."""
        with self._state.cond:
            self._state.script.extend(turns)

    @property
    def calls(self) -> list[Call]:
        with self._state.cond:
            return list(self._state.calls)

    @property
    def requests(self) -> list[Any]:
        """The body of every request received (parsed JSON), rejected ones included."""
        return [c.body for c in self.calls]

    @property
    def disconnects(self) -> int:
        """Clients that hung up while the fake was waiting or sending (cancellation, timeouts)."""
        with self._state.cond:
            return self._state.disconnects

    @property
    def stalls(self) -> int:
        with self._state.cond:
            return self._state.stalls

    @property
    def remaining(self) -> int:
        with self._state.cond:
            return len(self._state.script)

    def wait_until(self, predicate: Callable[[FakeMessagesAPI], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._state.cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._state.cond.wait(min(left, 0.05))
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 resets connections when a batch of runs starts at once


class _Handler(BaseHTTPRequestHandler):
    st: _State
    protocol_version = "HTTP/1.1"
    server_version = "fake-messages-api"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # SSE is many small writes: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms to
        # every call, a delay the real API does not have (and which would distort benchmarks).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- entry points --------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._record(None)
        self._send_error(404, "not_found_error", f"Not found: {self.path}")

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        call = self._record(body)
        counting = self.path.split("?")[0] == "/v1/messages/count_tokens"
        try:
            prompt = self._validate(body, counting=counting)
        except (RequestInvalid, Invalid) as exc:
            call.status = exc.status
            self._send_error(exc.status, ERROR_TYPES.get(exc.status, "invalid_request_error"), exc.message)
            return
        if counting:
            with self.st.cond:
                call.status = 200
            self._send_json(200, {"input_tokens": prompt.total})
            return
        turn = self._next_turn(body)
        with self.st.cond:
            call.turn = turn
            call.status = 200
        self._respond(body, turn, call, prompt)

    # -- bookkeeping ---------------------------------------------------------------------------
    def _record(self, body: Any) -> Call:
        call = Call(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        with self.st.cond:
            self.st.calls.append(call)
            self.st.cond.notify_all()
            if self.st.requests_log is not None:
                with self.st.requests_log.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(body) + "\n")
        return call

    def _bump(self, counter: str) -> None:
        with self.st.cond:
            setattr(self.st, counter, getattr(self.st, counter) + 1)
            self.st.cond.notify_all()

    def _next_turn(self, body: dict[str, Any]) -> Turn:
        with self.st.cond:
            item = self.st.script.pop(0) if self.st.script else self.st.hook
        turn = item(body) if callable(item) else item
        return dict(turn) if turn is not None else {"text": "done"}

    # -- validation, like the real API (a subset) ---------------------------------------------
    def _validate(self, body: Any, *, counting: bool = False) -> Prompt:
        if self.path.split("?")[0] not in ("/v1/messages", "/v1/messages/count_tokens"):
            raise RequestInvalid(404, f"Not found: {self.path}")
        key = self.headers.get("x-api-key")
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            key = key or auth[7:]
        if not key:
            raise RequestInvalid(401, "x-api-key header is required")
        if self.st.api_key is not None and key != self.st.api_key:
            raise RequestInvalid(401, "invalid x-api-key")
        if not self.headers.get("anthropic-version"):
            raise RequestInvalid(400, "anthropic-version: header is required")
        if not isinstance(body, dict):
            raise RequestInvalid(400, "The request body is not valid JSON.")
        required = (("model", str), ("messages", list)) if counting else (
            ("model", str), ("max_tokens", int), ("messages", list))
        for name, kind in required:
            if name not in body:
                raise RequestInvalid(400, f"{name}: Field required")
            if not isinstance(body[name], kind):
                raise RequestInvalid(400, f"{name}: Input should be a valid {kind.__name__}")
        _validate_tools(body.get("tools"))
        _validate_messages(body["messages"])
        n = _count_cache_control(body)
        if n > 4:
            # build-with-claude/prompt-caching: at most 4 breakpoints.
            raise RequestInvalid(400, f"A maximum of 4 blocks with cache_control may be provided. Found {n}.")
        model = body["model"]
        rules = rules_mod.rules_for(model)
        betas = {b.strip() for b in (self.headers.get("anthropic-beta") or "").split(",") if b.strip()}
        rules_mod.check_block_types(body)
        rules_mod.check_parameters(body, rules, betas)
        self._check_opaque(body)
        with self.st.cond:
            issued = dict(self.st.issued)
        drop = rules_mod.drops_mismatched(body, betas)
        rules_mod.check_thinking(body, self.st.signer, rules, issued, drop)
        rules_mod.check_tool_turn_starts_with_thinking(body, rules)
        prompt = rules_mod.effective_prompt(body)
        if not counting and prompt.total > rules.window and not _will_compact(body, prompt):
            # api/errors: a prompt over the model's context window is a 400 invalid_request_error.
            raise RequestInvalid(400, f"prompt is too long: {prompt.total} tokens > {rules.window} maximum")
        return prompt

    def _check_opaque(self, body: dict[str, Any]) -> None:
        with self.st.cond:
            sent = list(self.st.opaque)
        if not sent:
            return
        back = [rules_mod._strip_cache(b) for m in body["messages"] if m.get("role") == "assistant"
                for b in rules_mod._blocks(m.get("content")) if str(b.get("type", "")).startswith("x_fake_")]
        for b in back:
            if b not in sent:
                raise RequestInvalid(400, f"a `{b.get('type')}` block came back changed: {json.dumps(b)[:200]}")

    # -- responses -----------------------------------------------------------------------------
    def _respond(self, body: dict[str, Any], turn: Turn, call: Call, prompt: Prompt) -> None:
        wait_s = (self.st.latency_ms + float(turn.get("delay_ms", 0))) / 1000
        if wait_s > 0 and not self._wait(wait_s):
            return
        if turn.get("drop"):
            self._hang_up()
            return
        if "error" in turn:
            spec = turn["error"] if isinstance(turn["error"], dict) else {"status": turn["error"]}
            status = int(spec.get("status", 500))
            etype = spec.get("type") or ERROR_TYPES.get(status, "api_error")
            with self.st.cond:
                call.status = status
            headers = dict(spec.get("headers", {}))
            message = spec.get("message") or DEFAULT_MESSAGES.get(etype, etype)
            if spec.get("spend_limit"):
                message = spec.get("message") or SPEND_LIMIT_MESSAGE
            elif "retry_after" in spec:
                headers["retry-after"] = str(spec["retry_after"])
            elif status == 429:
                headers.setdefault("retry-after", "0")  # a rate limit says when to come back
            self._send_error(status, etype, message, headers)
            return
        message, blocks = self._build(body, turn, prompt)
        if not body.get("stream"):
            if "cut_after" in turn or "stall_after" in turn:
                self._hang_up()
                return
            if "stream_error" in turn:
                etype = turn["stream_error"].get("type", "overloaded_error")
                status = next((s for s, t in ERROR_TYPES.items() if t == etype), 500)
                text = turn["stream_error"].get("message") or DEFAULT_MESSAGES.get(etype, etype)
                self._send_error(status, etype, str(text))
                return
            message["content"] = [b["final"] for b in blocks]
            self._send_json(200, message)
            return
        self._stream(turn, _sse_events(message, blocks, turn))

    def _stream(self, turn: Turn, events: list[Event]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("request-id", new_id("req_"))
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        cut = turn.get("cut_after")
        stall = turn.get("stall_after")
        err = turn.get("stream_error")
        delay_s = float(turn.get("chunk_delay_ms", 0)) / 1000
        try:
            for i, (name, data) in enumerate(events):
                if cut is not None and i >= int(cut):
                    if turn.get("cut_mode") == "eof":
                        self._chunk(b"")
                    else:
                        self._hang_up()
                    return
                if stall is not None and i >= int(stall):
                    self._bump("stalls")
                    self._wait(float(turn.get("stall_s", 30)))
                    self._hang_up()
                    return
                if err is not None and i >= int(err.get("after", 1)):
                    etype = err.get("type", "overloaded_error")
                    message = err.get("message") or DEFAULT_MESSAGES.get(etype, etype)
                    payload = {"type": "error", "error": {"type": etype, "message": message}}
                    self._chunk(_sse("error", payload))
                    self._chunk(b"")
                    return
                if delay_s and i and not self._wait(delay_s):
                    return
                self._chunk(_sse(name, data))
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self._bump("disconnects")
            self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def _wait(self, seconds: float) -> bool:
        """Sleep, but notice a client that hangs up meanwhile (False: it did)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self.st.closing.is_set():
            try:
                readable, _, _ = select.select([self.connection], [], [], min(left, 0.02))
                if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
                    raise ConnectionResetError
            except (ConnectionResetError, OSError, ValueError):
                self._bump("disconnects")
                self.close_connection = True
                return False
            if readable:  # a pipelined request: nothing to watch any more
                time.sleep(max(0.0, deadline - time.monotonic()))
                break
        return not self.st.closing.is_set()

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status, REASONS.get(status))
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", payload.get("request_id") or new_id("req_"))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self._bump("disconnects")
            self.close_connection = True

    def _send_error(self, status: int, etype: str, message: str, headers: dict[str, str] | None = None) -> None:
        rid = new_id("req_")
        payload = {"type": "error", "error": {"type": etype, "message": message}, "request_id": rid}
        self._send_json(status, payload, headers)


    def _build(self, body: dict[str, Any], turn: Turn, prompt: Prompt) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The response: compaction, thinking (signed), the turn's blocks; usage from the cache."""
        st, model = self.st, body["model"]
        rules = rules_mod.rules_for(model)
        pre: list[dict[str, Any]] = []
        iterations: list[dict[str, Any]] = []
        compaction = _compaction_edit(body)
        if compaction is not None and prompt.total >= _trigger(compaction):
            summary = turn.get("summary") or f"Summary of the conversation so far ({prompt.total} tokens compacted)."
            pre.append({
                "start": {"type": "compaction", "content": ""},
                "deltas": [{"type": "compaction_delta", "content": summary}],
                "final": {"type": "compaction", "content": summary},
            })
            with st.cond:  # the summary step reads the prompt as sent: from the cache where it can
                fresh, write, read = st.caches.setdefault(model, Cache()).usage(model, prompt)
            iterations.append({"type": "compaction", "input_tokens": fresh, "output_tokens": 500,
                               "cache_creation_input_tokens": write, "cache_read_input_tokens": read})
            prompt = Prompt([({"type": "compaction", "content": summary}, False)],
                            rules_mod.tokens(summary), prompt.sent_total)
        thinks = "thinking" in turn or rules_mod.thinking_on(body, rules)
        messages = body["messages"]
        if thinks and not turn.get("no_thinking"):
            text = str(turn.get("thinking") or "")
            final = {"type": "thinking", "thinking": text, "signature": ""}
            head = [b["final"] for b in pre]
            digest = st.signer.digests(body, head)[(len(messages), len(head))]
            final["signature"] = st.signer.sign(model, digest, text)
            n = int(turn.get("chunks", 3))
            pre.append({
                "start": {"type": "thinking", "thinking": "", "signature": ""},
                "deltas": ([{"type": "thinking_delta", "thinking": p} for p in _split(text, n)] if text else [])
                + [{"type": "signature_delta", "signature": final["signature"]}],
                "final": final,
            })
            with st.cond:
                st.issued[final["signature"]] = model
        if turn.get("redacted_thinking"):
            data = base64.b64encode(secrets.token_bytes(24)).decode()
            pre.append({"start": {"type": "redacted_thinking", "data": data}, "deltas": [],
                        "final": {"type": "redacted_thinking", "data": data}})
            with st.cond:
                st.issued[data] = model
        if turn.get("opaque"):
            opaque = copy.deepcopy(turn["opaque"])
            pre.append({"start": opaque, "deltas": [], "final": opaque})
            with st.cond:
                st.opaque.append(copy.deepcopy(opaque))
        message, blocks = _build_message(body, turn)
        message["usage"] = self._usage(model, turn, prompt, message["usage"], iterations)
        if prompt.cleared_uses:
            message["context_management"] = {"applied_edits": [{
                "type": "clear_tool_uses_20250919", "cleared_tool_uses": prompt.cleared_uses,
                "cleared_input_tokens": prompt.cleared_tokens}]}
        if turn.get("stop_details") is not None:
            message["stop_details"] = turn["stop_details"]
        return message, pre + blocks

    def _usage(self, model: str, turn: Turn, prompt: Prompt, guessed: dict[str, Any],
               iterations: list[dict[str, Any]]) -> dict[str, Any]:
        with self.st.cond:
            cache = self.st.caches.setdefault(model, Cache())
            fresh, write, read = cache.usage(model, prompt)
        spec = turn.get("usage")
        if spec is None:  # computed from the request's breakpoints and what earlier calls wrote
            spec = {"input_tokens": fresh, "cache_creation_input_tokens": write, "cache_read_input_tokens": read}
        usage = {
            "input_tokens": int(spec.get("input_tokens", prompt.total)),
            "cache_creation_input_tokens": int(spec.get("cache_creation_input_tokens", 0)),
            "cache_read_input_tokens": int(spec.get("cache_read_input_tokens", 0)),
            "output_tokens": int(guessed["output_tokens"]),
        }
        if "ephemeral_1h_input_tokens" in spec:
            usage["cache_creation"] = {"ephemeral_5m_input_tokens": usage["cache_creation_input_tokens"]
                                       - int(spec["ephemeral_1h_input_tokens"]),
                                       "ephemeral_1h_input_tokens": int(spec["ephemeral_1h_input_tokens"])}
        if iterations:
            usage["iterations"] = [*iterations, {"type": "message", **{k: usage[k] for k in (
                "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}}]
        return usage


# -- the wire format -----------------------------------------------------------------------------
def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _split(text: str, n: int) -> list[str]:
    n = max(1, min(n, len(text)))
    size = -(-len(text) // n) if text else 1
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _compaction_edit(body: dict[str, Any]) -> dict[str, Any] | None:
    edits = (body.get("context_management") or {}).get("edits") or []
    return next((e for e in edits if e.get("type") == "compact_20260112"), None)


def _trigger(edit: dict[str, Any]) -> int:
    return int(((edit.get("trigger") or {}).get("value")) or rules_mod.DEFAULT_COMPACTION_TRIGGER)


def _will_compact(body: dict[str, Any], prompt: Prompt) -> bool:
    """Threshold compaction summarizes a prompt that reached its trigger before answering."""
    edit = _compaction_edit(body)
    return edit is not None and prompt.total >= _trigger(edit)


def _build_message(body: dict[str, Any], turn: Turn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The message skeleton (as in message_start) and its blocks: start, deltas, final form."""
    n = int(turn.get("chunks", 3))
    blocks: list[dict[str, Any]] = []
    text = turn.get("text", "")
    if text or not (turn.get("tool_calls") or turn.get("thinking") is not None or turn.get("opaque")):
        blocks.append(
            {
                "start": {"type": "text", "text": ""},
                "deltas": [{"type": "text_delta", "text": p} for p in _split(text, n)],
                "final": {"type": "text", "text": text},
            }
        )
    for tc in turn.get("tool_calls", []):
        tid = tc.get("id") or new_id("toolu_")
        raw = tc["input_json"] if "input_json" in tc else json.dumps(tc.get("input", {}))
        try:
            final_input = json.loads(raw) if raw else {}
        except ValueError:
            final_input = {}
        blocks.append(
            {
                "start": {"type": "tool_use", "id": tid, "name": tc["name"], "input": {}},
                "deltas": [
                    {"type": "input_json_delta", "partial_json": p} for p in ["", *(_split(raw, n) if raw else [])]
                ],
                "final": {"type": "tool_use", "id": tid, "name": tc["name"], "input": final_input},
            }
        )
    out_chars = sum(len(json.dumps(b["final"])) for b in blocks)
    usage_spec = turn.get("usage", {})
    usage = {
        "input_tokens": int(usage_spec.get("input_tokens", max(1, len(json.dumps(body)) // 4))),
        "cache_creation_input_tokens": int(usage_spec.get("cache_creation_input_tokens", 0)),
        "cache_read_input_tokens": int(usage_spec.get("cache_read_input_tokens", 0)),
        "output_tokens": int(usage_spec.get("output_tokens", max(1, out_chars // 4))),
    }
    stop = turn.get("stop_reason") or ("tool_use" if turn.get("tool_calls") else "end_turn")
    message = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": turn.get("model") or body["model"],
        "content": [],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }
    return message, blocks


def _sse_events(message: dict[str, Any], blocks: list[dict[str, Any]], turn: Turn) -> list[Event]:
    usage = message["usage"]
    start_usage = {
        "input_tokens": usage["input_tokens"],
        "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
        "cache_read_input_tokens": usage["cache_read_input_tokens"],
        "cache_creation": usage.get("cache_creation") or {
            "ephemeral_5m_input_tokens": usage["cache_creation_input_tokens"],
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": min(1, usage["output_tokens"]),
        "service_tier": "standard",
    }
    start = {k: v for k, v in message.items() if k not in ("stop_details", "context_management")}
    events: list[Event] = [
        (
            "message_start",
            {"type": "message_start", "message": {**start, "stop_reason": None, "usage": start_usage}},
        )
    ]
    for i, b in enumerate(blocks):
        events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": b["start"]}))
        if i == 0:
            events.append(("ping", {"type": "ping"}))
        events += [
            ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}) for d in b["deltas"]
        ]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    if not blocks:
        events.append(("ping", {"type": "ping"}))
    full = turn.get("delta_usage", "full") == "full"
    delta_usage = dict(usage) if full else {"output_tokens": usage["output_tokens"]}
    if "iterations" in usage:
        delta_usage["iterations"] = usage["iterations"]
    delta: dict[str, Any] = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    if message.get("stop_details") is not None:
        delta["stop_details"] = message["stop_details"]
    payload: dict[str, Any] = {"type": "message_delta", "delta": delta, "usage": delta_usage}
    if message.get("context_management") is not None:
        payload["context_management"] = message["context_management"]
    events.append(("message_delta", payload))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _validate_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise RequestInvalid(400, "tools: Input should be a valid list")
    names = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or "name" not in t:
            raise RequestInvalid(400, f"tools.{i}.name: Field required")
        if t.get("type") in (None, "custom") and "input_schema" not in t:
            raise RequestInvalid(400, f"tools.{i}.custom.input_schema: Field required")
        names.append(t["name"])
    if len(set(names)) != len(names):
        raise RequestInvalid(400, "tools: Tool names must be unique.")


def _blocks(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _unanswered(index: int, ids: list[str]) -> RequestInvalid:
    return RequestInvalid(
        400,
        f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
        f"{', '.join(ids)}. Each `tool_use` block must have a corresponding `tool_result` block "
        "in the next message.",
    )


def _validate_messages(messages: list[Any]) -> None:
    prev_tool_ids: list[str] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise RequestInvalid(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = m.get("content")
        if not isinstance(content, (str, list)):
            raise RequestInvalid(400, f"messages.{i}.content: Field required")
        blocks = _blocks(content)
        if not blocks and not (m["role"] == "assistant" and i == len(messages) - 1):
            raise RequestInvalid(
                400,
                f"messages.{i}: all messages must have non-empty content "
                "except for the optional final assistant message",
            )
        for j, b in enumerate(blocks):
            if b.get("type") == "text" and not str(b.get("text", "")).strip():
                raise RequestInvalid(
                    400,
                    f"messages.{i}.content.{j}.text: text content blocks must contain non-whitespace text",
                )
        if m["role"] == "assistant":
            if prev_tool_ids:
                raise _unanswered(i - 1, prev_tool_ids)
            prev_tool_ids = [b["id"] for b in blocks if b.get("type") == "tool_use"]
            continue
        results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        missing = [t for t in prev_tool_ids if t not in results]
        if missing:
            raise _unanswered(i - 1, missing)
        for j, b in enumerate(blocks):
            if b.get("type") == "tool_result" and b.get("tool_use_id") not in prev_tool_ids:
                raise RequestInvalid(
                    400,
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{b.get('tool_use_id')}. Each `tool_result` block must have a corresponding `tool_use` "
                    "block in the previous message.",
                )
        kinds = [b.get("type") == "tool_result" for b in blocks]
        if any(kinds) and kinds != sorted(kinds, reverse=True):
            raise RequestInvalid(
                400, f"messages.{i}: `tool_result` blocks must come before any other content in the message."
            )
        prev_tool_ids = []
    if prev_tool_ids:
        raise _unanswered(len(messages) - 1, prev_tool_ids)


def _count_cache_control(body: dict[str, Any]) -> int:
    items: list[Any] = list(body.get("tools") or [])
    if isinstance(body.get("system"), list):
        items += body["system"]
    for m in body["messages"]:
        if isinstance(m.get("content"), list):
            items += m["content"]
    return sum(1 for b in items if isinstance(b, dict) and b.get("cache_control"))


# -- as a process --------------------------------------------------------------------------------
def load_script(path: Path) -> list[Turn]:
    text = path.read_text(encoding="utf-8")
    try:
        import yaml

        data = yaml.safe_load(text)
    except ImportError:
        data = json.loads(text)
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(t, dict) for t in data):
        raise SystemExit(f"{path}: a script is a list of turns (mappings)")
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fakes.messages_api", description="A fake Anthropic Messages API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--script", type=Path, help="YAML or JSON list of turns")
    p.add_argument("--api-key", help="the only key accepted (default: any non-empty key)")
    p.add_argument("--latency-ms", type=float, default=0, help="added before every response")
    p.add_argument("--requests-log", type=Path, help="append every request body as a JSON line")
    args = p.parse_args(argv)
    script = load_script(args.script) if args.script else []
    api = FakeMessagesAPI(
        script,
        api_key=args.api_key,
        latency_ms=args.latency_ms,
        port=args.port,
        host=args.host,
        requests_log=args.requests_log,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with api:
        print(api.base_url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
