"""The Anthropic model: Messages API over the `anthropic` SDK, streamed, with prompt caching.

Our typed blocks (runner.models.base) become wire JSON here and nowhere else. The response is
assembled from the raw stream events, so a broken tool-input JSON becomes a `ToolUse` with
`input_error` instead of an exception, and thinking or unknown blocks are skipped.

Failures come out in two lanes (see `ModelCallFailed`):
- retryable, raised as `ModelCallFailed` once the SDK's own retries (429, 529, 5xx) and ours
  (a stream that died midway: dropped connection, `error` event, no `message_stop`) are spent;
- fatal, raised as `runner.errors.ModelAPIError`: no key, 400/401/403/404/413, unreachable
  (connection refused, DNS, TLS, connect timeout) after the SDK's retries.
Messages carry the status and the API's own error message, never the API key.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
from anthropic.types import (
    InputJSONDelta,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    TextDelta,
)

from runner.errors import ModelAPIError
from runner.models.base import (
    Message,
    ModelCallFailed,
    ModelRequest,
    ModelResponse,
    TextBlock,
    ToolResult,
    ToolSpec,
    ToolUse,
    Usage,
)
from runner.models.provider_clients import OnSecret, make_client
from runner.models.providers import Provider

CACHE = {"type": "ephemeral"}
MAX_CACHE_BREAKPOINTS = 4
STREAM_RETRY_DELAY_S = 0.5
"""First pause before re-sending a turn whose stream died; doubles each time, capped at 4 s."""
RETRYABLE_STATUS = frozenset({408, 409, 429})
"""Besides 5xx: statuses the SDK retries itself, so after its retries they are still worth a later try."""
FATAL_STREAM_ERRORS = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
    }
)
UNREACHABLE = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.ProxyError, httpx2.UnsupportedProtocol)
EMPTY_MESSAGE = "(no content)"
"""Stands in for a message whose blocks were all empty text: the API rejects empty content."""


class _StreamBroken(Exception):
    """The response stream died before `message_stop`: the turn may be re-sent."""


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    """The SDK's default TLS context (honours SSL_CERT_FILE / SSL_CERT_DIR), built once."""
    return httpx2.create_ssl_context()


class AnthropicModel:
    """A `runner.models.base.Model` backed by Anthropic's Messages API."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 2,
        timeout_s: float = 600,
        stream_retries: int = 2,
        max_tokens: int = 16_000,
        provider: Provider = "anthropic",
        on_secret: OnSecret | None = None,
    ) -> None:
        self.name = model
        self.stream_retries = stream_retries
        self.stream_retry_delay_s = STREAM_RETRY_DELAY_S
        self.max_tokens = max_tokens
        timeout = httpx2.Timeout(timeout_s, connect=min(10.0, timeout_s))
        # The provider's SDK client and its credentials (runner.models.provider_clients). One TLS
        # context per process: building one reads the CA bundle (~26 ms of CPU), which a batch of
        # concurrent runs would otherwise pay per run.
        built = make_client(provider, model, api_key=api_key, base_url=base_url, max_retries=max_retries,
                            timeout=timeout, verify=_shared_ssl_context(), on_secret=on_secret)
        self.target = built.target
        self._secrets = built.secrets
        self._client = built.sdk

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        params = self.build_params(request)
        retries = 0
        while True:
            try:
                response = await self._stream_once(params)
            except _StreamBroken as exc:
                if retries >= self.stream_retries:
                    raise ModelCallFailed(
                        self._redact(f"the model's response stream broke {retries + 1} time(s); last: {exc}")
                    ) from None
                await asyncio.sleep(min(self.stream_retry_delay_s * 2**retries, 4.0))
                retries += 1
                continue
            return ModelResponse(
                response.content,
                response.stop_reason,
                response.usage,
                response.model,
                retries=retries,
                request_id=response.request_id,
            )

    # -- the request ---------------------------------------------------------------------------
    def build_params(self, request: ModelRequest) -> dict[str, Any]:
        """The keyword arguments of `messages.create` for `request`, cache breakpoints included."""
        params: dict[str, Any] = {
            "model": self.name,
            "max_tokens": min(request.max_tokens, self.max_tokens),
            "messages": to_wire_messages(request.messages),
        }
        if request.system:
            params["system"] = [{"type": "text", "text": request.system}]
        if request.tools:
            params["tools"] = [tool_to_wire(t) for t in request.tools]
        add_cache_breakpoints(params)
        if request.extra:
            params["extra_body"] = dict(request.extra)
        return params

    # -- one HTTP call -------------------------------------------------------------------------
    async def _stream_once(self, params: dict[str, Any]) -> _Assembled:
        try:
            stream = await self._client.messages.create(**params, stream=True)
        except anthropic.APIStatusError as exc:
            raise self._status_error(exc) from None
        except anthropic.APIConnectionError as exc:
            raise self._connection_error(exc) from None
        assembler = _Assembler(request_id=stream.response.headers.get("request-id"))
        try:
            async with stream:  # closes the HTTP response on every way out, cancellation included
                async for event in stream:
                    assembler.feed(event)
        except anthropic.APIStatusError as exc:  # an `error` event in the stream
            etype = exc.type or ""
            if etype in FATAL_STREAM_ERRORS:
                raise ModelAPIError(self._redact(f"Anthropic API error in the stream: {_describe(exc)}")) from None
            raise _StreamBroken(f"error event {etype or '?'}: {exc.api_message or exc.message}") from None
        except (httpx2.HTTPError, anthropic.APIConnectionError, json.JSONDecodeError) as exc:
            raise _StreamBroken(f"{type(exc).__name__}: {exc}") from None
        if not assembler.stopped:
            raise _StreamBroken("the stream ended without message_stop")
        return assembler.result(default_model=self.name)

    def _status_error(self, exc: anthropic.APIStatusError) -> Exception:
        text = self._redact(_describe(exc))
        if exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500:
            return ModelCallFailed(f"Anthropic API call failed after {self._client.max_retries} retries: {text}")
        return ModelAPIError(f"Anthropic API error: {text}")

    def _connection_error(self, exc: anthropic.APIConnectionError) -> Exception:
        """Unreachable (refused, DNS, TLS, proxy, connect timeout) is fatal; a server that took
        the connection and then dropped it or was too slow is worth another try later."""
        cause = exc.__cause__
        where = f"{self._client.base_url} after {self._client.max_retries} retries"
        detail = f"{type(cause).__name__}: {cause}" if cause is not None else exc.message
        if cause is None or isinstance(cause, UNREACHABLE):
            return ModelAPIError(self._redact(f"cannot reach the Anthropic API at {where}: {detail}"))
        if isinstance(exc, anthropic.APITimeoutError):
            return ModelCallFailed(self._redact(f"the Anthropic API timed out at {where}: {detail}"))
        return ModelCallFailed(self._redact(f"the Anthropic API connection failed at {where}: {detail}"))

    def _redact(self, text: str) -> str:
        for secret in self._secrets:  # the key, tokens and headers of this client
            text = text.replace(secret, "[api key]")
        return text


def _describe(exc: anthropic.APIStatusError) -> str:
    """'429 rate_limit_error: <the API's message> (request req_...)'."""
    status = "" if exc.status_code == 200 else f"{exc.status_code} "
    message = exc.api_message or exc.message
    rid = f" (request {exc.request_id})" if exc.request_id else ""
    return f"{status}{exc.type or 'error'}: {message}{rid}"


# -- assembling the response from the stream -------------------------------------------------------
@dataclass
class _Assembled:
    content: list[TextBlock | ToolUse]
    stop_reason: str
    usage: Usage
    model: str
    request_id: str | None


@dataclass
class _Block:
    kind: str  # "text" | "tool_use" | anything else (ignored)
    text: list[str] = field(default_factory=list)
    tool_id: str = ""
    tool_name: str = ""
    start_input: Any = None
    done: TextBlock | ToolUse | None = None


class _Assembler:
    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id
        self.blocks: dict[int, _Block] = {}
        self.usage: dict[str, int] = {}
        self.model = ""
        self.stop_reason = ""
        self.started = False
        self.stopped = False

    def feed(self, event: RawMessageStreamEvent) -> None:
        # Dispatch on the wire `type`, not the class: the SDK builds an event or delta of a type
        # it does not know as the first member of its union (a "message_start" with no message).
        kind = getattr(event, "type", None)
        if kind == "message_start" and isinstance(event, RawMessageStartEvent):
            self.started = True
            message = getattr(event, "message", None)
            self.model = str(getattr(message, "model", "") or "")
            self._take_usage(getattr(message, "usage", None))
        elif kind == "content_block_start" and isinstance(event, RawContentBlockStartEvent):
            cb = event.content_block
            block = _Block(str(getattr(cb, "type", "") or "unknown"))
            if block.kind == "text":
                block.text.append(str(getattr(cb, "text", "") or ""))
            elif block.kind == "tool_use":
                block.tool_id = str(getattr(cb, "id", "") or "")
                block.tool_name = str(getattr(cb, "name", "") or "")
                block.start_input = getattr(cb, "input", None)
            self.blocks[event.index] = block
        elif kind == "content_block_delta" and isinstance(event, RawContentBlockDeltaEvent):
            target = self.blocks.get(event.index)
            delta = event.delta
            delta_kind = getattr(delta, "type", None)
            if target is None:
                return
            if target.kind == "text" and delta_kind == "text_delta" and isinstance(delta, TextDelta):
                target.text.append(str(delta.text or ""))
            elif target.kind == "tool_use" and delta_kind == "input_json_delta" and isinstance(delta, InputJSONDelta):
                target.text.append(str(delta.partial_json or ""))
        elif kind == "content_block_stop" and isinstance(event, RawContentBlockStopEvent):
            target = self.blocks.get(event.index)
            if target is not None:
                target.done = _finish(target)
        elif kind == "message_delta" and isinstance(event, RawMessageDeltaEvent):
            stop_reason = getattr(event.delta, "stop_reason", None)
            if stop_reason:
                self.stop_reason = str(stop_reason)
            # message_delta usage is cumulative: a value given here replaces message_start's.
            self._take_usage(getattr(event, "usage", None))
        elif kind == "message_stop" and isinstance(event, RawMessageStopEvent):
            self.stopped = self.started

    def _take_usage(self, usage: object) -> None:
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ):
            value = getattr(usage, name, None)
            if isinstance(value, int):
                self.usage[name] = value

    def result(self, default_model: str) -> _Assembled:
        content: list[TextBlock | ToolUse] = []
        for index in sorted(self.blocks):
            block = self.blocks[index]
            done = block.done or _finish(block)  # a block never stopped (max_tokens): take what came
            if isinstance(done, TextBlock) and not done.text:
                continue
            if done is not None:
                content.append(done)
        return _Assembled(
            content,
            self.stop_reason or ("tool_use" if any(isinstance(b, ToolUse) for b in content) else "end_turn"),
            Usage(**self.usage),
            self.model or default_model,
            self.request_id,
        )


def _finish(block: _Block) -> TextBlock | ToolUse | None:
    if block.kind == "text":
        return TextBlock("".join(block.text))
    if block.kind != "tool_use":
        return None  # thinking, redacted_thinking, server tools, future kinds: not ours to keep
    raw = "".join(block.text)
    if not raw.strip():
        start = block.start_input
        return ToolUse(block.tool_id, block.tool_name, dict(start) if isinstance(start, dict) else {})
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return ToolUse(
            block.tool_id,
            block.tool_name,
            {},
            input_error=f"could not parse the tool input as JSON: {exc} (input was {_clip(raw)})",
        )
    if not isinstance(value, dict):
        return ToolUse(
            block.tool_id,
            block.tool_name,
            {},
            input_error=f"the tool input must be a JSON object, got {type(value).__name__}: {_clip(raw)}",
        )
    return ToolUse(block.tool_id, block.tool_name, value)


def _clip(text: str, limit: int = 200) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


# -- our blocks to the wire format ------------------------------------------------------------------
def tool_to_wire(tool: ToolSpec) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}


def to_wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    return [{"role": m.role, "content": _content_to_wire(m)} for m in messages]


def _content_to_wire(message: Message) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            if block.text.strip():  # the API rejects empty and whitespace-only text blocks
                others.append({"type": "text", "text": block.text})
        elif isinstance(block, ToolUse):
            # A call whose input could not be parsed was not run; its input is sent as {} and
            # its tool_result (from the loop) says why.
            others.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
        elif isinstance(block, ToolResult):
            wire: dict[str, Any] = {"type": "tool_result", "tool_use_id": block.tool_use_id}
            if block.content:
                wire["content"] = block.content
            if block.is_error:
                wire["is_error"] = True
            results.append(wire)
    # The API wants tool results before any other content of a user message.
    content = results + others
    return content or [{"type": "text", "text": EMPTY_MESSAGE}]


def add_cache_breakpoints(params: dict[str, Any]) -> None:
    """Mark the cacheable prefix: last tool, system prompt, newest message, and the user message
    that was newest one exchange earlier (so this call reads what the previous call wrote even
    when a turn added more blocks than the API's 20-block lookback). At most 4, as the API allows.
    """
    targets: list[dict[str, Any]] = []
    if params.get("tools"):
        targets.append(params["tools"][-1])
    if params.get("system"):
        targets.append(params["system"][-1])
    messages: list[dict[str, Any]] = params["messages"]
    if messages:
        targets.append(messages[-1]["content"][-1])
        earlier = [m for m in messages[:-1] if m["role"] == "user"]
        if earlier:
            targets.append(earlier[-1]["content"][-1])
    for block in targets[:MAX_CACHE_BREAKPOINTS]:
        block["cache_control"] = dict(CACHE)
