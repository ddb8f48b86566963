"""The Anthropic model: Messages API over the `anthropic` SDK, streamed, with prompt caching.

Our typed blocks become wire JSON in runner.models.wire and come back from the stream in
runner.models.stream, every block verbatim (thinking with its signature, redacted thinking,
compaction, unknown types). What a request may carry for a model (thinking, effort, output
limit, context management and its beta headers) comes from runner.models.catalog.

Failures come out in three lanes:
- retryable, raised as `ModelCallFailed` once the SDK's own retries (429, 529, 5xx) and ours
  (a stream that died midway: dropped connection, an `error` event of a transient type, no
  `message_stop`) are spent; it carries the API's `retry-after` when there was one;
- the prompt did not fit the context window: `PromptTooLong` (the loop shrinks the context);
- fatal, raised as `runner.errors.ModelAPIError`: no key, 400/401/403/404/413, a spend-limit 429,
  `x-should-retry: false`, unreachable (connection refused, DNS, TLS, connect timeout).
Messages carry the status and the API's own error message, never the API key.
(platform.claude.com: api/errors, build-with-claude/handling-stop-reasons.)
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import ssl
from typing import Any

import anthropic
import httpx2

from runner.errors import ModelAPIError
from runner.models.base import (
    ContextRequest,
    ModelCallFailed,
    ModelRequest,
    ModelResponse,
    PromptTooLong,
)
from runner.models.catalog import ModelInfo, RequestOptions, model_info, resolve_options
from runner.models.provider_clients import OnSecret, make_client
from runner.models.providers import Provider
from runner.models.stream import Assembled, Assembler
from runner.models.wire import add_cache_breakpoints, to_wire_messages, tool_to_wire

# Re-exported: tests and callers used to import these from here.
__all__ = ["AnthropicModel", "add_cache_breakpoints", "install_retry_policy", "to_wire_messages", "tool_to_wire"]

STREAM_RETRY_DELAY_S = 0.5
"""First pause before re-sending a turn whose stream died; doubles each time, capped at 4 s."""
MAX_RETRY_WAIT_S = 60.0
"""The longest the SDK waits between its retries, whatever `retry-after` asks (api/errors)."""
RETRYABLE_STATUS = frozenset({408, 409, 429})
"""Besides 5xx: statuses the SDK retries itself, so after its retries they are still worth a later try."""
FATAL_STREAM_ERRORS = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "billing_error",
    }
)
"""`error` events mid-stream that no retry can fix; every other type (overloaded_error,
api_error, rate_limit_error, timeout_error, and types we do not know) re-sends the turn."""
UNREACHABLE = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.ProxyError, httpx2.UnsupportedProtocol)
PROMPT_TOO_LONG = re.compile(r"prompt is too long(?::\s*(\d+)\s*tokens\s*>\s*(\d+)\s*maximum)?", re.IGNORECASE)
"""The API's 400 for a prompt over the context window: "prompt is too long: N tokens > M maximum"."""
THINKING_BINDING_BETA = "thinking-binding-controls-2026-08-01"
"""preserved-thinking/fix-bound-to-a-different-conversation: the beta of `block_binding`."""
MIN_COMPACTION_TRIGGER = 50_000
"""build-with-claude/compaction-threshold: the trigger's value is at least 50,000 tokens."""


class _StreamBroken(Exception):
    """The response stream died before `message_stop`: the turn may be re-sent."""


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    """The SDK's default TLS context (honours SSL_CERT_FILE / SSL_CERT_DIR), built once."""
    return httpx2.create_ssl_context()


def install_retry_policy(client: Any) -> None:
    """How the SDK retries, as the API documents it (api/errors): `x-should-retry` wins; a 429
    without `retry-after` is a spend limit (the tier's monthly cap), which no retry can fix; and
    no wait is longer than MAX_RETRY_WAIT_S. Set on the client instance, so it holds for every
    provider's SDK client (runner.models.provider_clients builds them)."""
    should_retry = client._should_retry
    retry_timeout = client._calculate_retry_timeout

    def _should_retry(response: httpx2.Response) -> bool:
        header = response.headers.get("x-should-retry")
        if header is None and response.status_code == 429 and _spend_limit_headers(response.headers):
            return False
        return bool(should_retry(response))

    def _calculate_retry_timeout(*args: Any, **kwargs: Any) -> float:
        return min(float(retry_timeout(*args, **kwargs)), MAX_RETRY_WAIT_S)

    client._should_retry = _should_retry
    client._calculate_retry_timeout = _calculate_retry_timeout


def _spend_limit_headers(headers: Any) -> bool:
    return not (headers.get("retry-after") or headers.get("retry-after-ms"))


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
        max_tokens: int | None = None,
        options: RequestOptions | None = None,
        info: ModelInfo | None = None,
        provider: Provider = "anthropic",
        on_secret: OnSecret | None = None,
    ) -> None:
        self.name = model
        self.info = info or model_info(model)
        self.options = options or resolve_options(self.info)
        self.stream_retries = stream_retries
        self.stream_retry_delay_s = STREAM_RETRY_DELAY_S
        self.max_tokens = max_tokens
        """A cap on every request's output limit (None: the options' limit)."""
        timeout = httpx2.Timeout(timeout_s, connect=min(10.0, timeout_s))
        # The provider's SDK client and its credentials (runner.models.provider_clients). One TLS
        # context per process: building one reads the CA bundle (~26 ms of CPU), which a batch of
        # concurrent runs would otherwise pay per run.
        built = make_client(provider, model, api_key=api_key, base_url=base_url, max_retries=max_retries,
                            timeout=timeout, verify=_shared_ssl_context(), on_secret=on_secret)
        self.target = built.target
        self._secrets = built.secrets
        self._client = built.sdk
        install_retry_policy(self._client)

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
                stop_details=response.stop_details,
                iterations=response.iterations,
                context_edits=response.context_edits,
            )

    async def count_tokens(self, request: ModelRequest) -> int | None:
        """The prompt's size as the API counts it (POST /v1/messages/count_tokens); None when
        the endpoint cannot be used (a gateway without it): callers fall back to usage figures."""
        params = self.build_params(request)
        for name in ("max_tokens", "stream"):
            params.pop(name, None)
        try:
            counted = await self._client.beta.messages.count_tokens(**params)
        except (anthropic.APIError, httpx2.HTTPError):
            return None
        value = getattr(counted, "input_tokens", None)
        return int(value) if isinstance(value, int) else None

    # -- the request ---------------------------------------------------------------------------
    def build_params(self, request: ModelRequest) -> dict[str, Any]:
        """The keyword arguments of `beta.messages.create` for `request`, cache breakpoints included."""
        max_tokens = request.max_tokens or self.options.max_tokens
        if self.max_tokens is not None:
            max_tokens = min(max_tokens, self.max_tokens)
        params: dict[str, Any] = {
            "model": self.name,
            "max_tokens": max_tokens,
            "messages": to_wire_messages(request.messages),
        }
        if request.system:
            params["system"] = [{"type": "text", "text": request.system}]
        if request.tools:
            params["tools"] = [tool_to_wire(t) for t in request.tools]
        params.update(self.options.params())
        if request.context is not None:
            self._add_context_management(params, request.context)
        add_cache_breakpoints(params)
        if request.extra:
            params["extra_body"] = dict(request.extra)
        return params

    def _add_context_management(self, params: dict[str, Any], context: ContextRequest) -> None:
        """build-with-claude/compaction-threshold and build-with-claude/context-editing."""
        edits: list[dict[str, Any]] = []
        betas: list[str] = []
        if context.compact_at_tokens is not None:
            edits.append({
                "type": "compact_20260112",
                "trigger": {"type": "input_tokens", "value": max(MIN_COMPACTION_TRIGGER, context.compact_at_tokens)},
            })
            betas.append(self.info.betas.get("compaction", "compact-2026-01-12"))
        if context.clear_at_tokens is not None:
            edit: dict[str, Any] = {
                "type": "clear_tool_uses_20250919",
                "trigger": {"type": "input_tokens", "value": context.clear_at_tokens},
                "keep": {"type": "tool_uses", "value": context.clear_keep},
            }
            if context.clear_at_least:
                edit["clear_at_least"] = {"type": "input_tokens", "value": context.clear_at_least}
            edits.append(edit)
            betas.append(self.info.betas.get("context_editing", "context-management-2025-06-27"))
        if context.drop_mismatched_thinking:
            thinking = dict(params.get("thinking") or {"type": "adaptive"})
            thinking["block_binding"] = {"prefix_mismatch_behavior": "drop_block"}
            params["thinking"] = thinking
            betas.append(self.info.betas.get("thinking_binding", THINKING_BINDING_BETA))
        if edits:
            params["context_management"] = {"edits": edits}
        if betas:
            params["betas"] = betas

    # -- one HTTP call -------------------------------------------------------------------------
    async def _stream_once(self, params: dict[str, Any]) -> Assembled:
        try:
            stream = await self._client.beta.messages.create(**params, stream=True)
        except anthropic.APIStatusError as exc:
            raise self._status_error(exc) from None
        except anthropic.APIConnectionError as exc:
            raise self._connection_error(exc) from None
        assembler = Assembler(request_id=stream.response.headers.get("request-id"))
        try:
            async with stream:  # closes the HTTP response on every way out, cancellation included
                async for event in stream:
                    assembler.feed(event)
        except anthropic.APIStatusError as exc:  # an `error` event in the stream
            etype = exc.type or ""
            message = str(exc.api_message or exc.message)
            if etype == "invalid_request_error" and PROMPT_TOO_LONG.search(message):
                raise _prompt_too_long(self._redact(_describe(exc)), message) from None
            if etype in FATAL_STREAM_ERRORS:
                raise ModelAPIError(self._redact(f"Anthropic API error in the stream: {_describe(exc)}")) from None
            raise _StreamBroken(f"error event {etype or '?'}: {message}") from None
        except (httpx2.HTTPError, anthropic.APIConnectionError, json.JSONDecodeError) as exc:
            raise _StreamBroken(f"{type(exc).__name__}: {exc}") from None
        if not assembler.stopped:
            raise _StreamBroken("the stream ended without message_stop")
        return assembler.result(default_model=self.name)

    def _status_error(self, exc: anthropic.APIStatusError) -> Exception:
        text = self._redact(_describe(exc))
        message = str(exc.api_message or exc.message)
        headers = exc.response.headers
        should_retry = headers.get("x-should-retry")
        if exc.status_code == 400 and PROMPT_TOO_LONG.search(message):
            return _prompt_too_long(text, message)
        if exc.status_code == 429 and should_retry != "true" and _spend_limit_headers(headers):
            return ModelAPIError(
                f"Anthropic API spend limit reached (a 429 without retry-after; not retried): {text}"
            )
        if should_retry == "false":
            return ModelAPIError(f"Anthropic API error (the API says not to retry): {text}")
        if should_retry == "true" or exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500:
            return ModelCallFailed(
                f"Anthropic API call failed after {self._client.max_retries} retries: {text}",
                retry_after_s=_retry_after(headers),
            )
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


def _prompt_too_long(text: str, message: str) -> PromptTooLong:
    match = PROMPT_TOO_LONG.search(message)
    tokens = int(match.group(1)) if match and match.group(1) else None
    maximum = int(match.group(2)) if match and match.group(2) else None
    return PromptTooLong(f"Anthropic API: {text}", tokens=tokens, maximum=maximum)


def _retry_after(headers: Any) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                return None
    return None


def _describe(exc: anthropic.APIStatusError) -> str:
    """'429 rate_limit_error: <the API's message> (request req_...)'."""
    status = "" if exc.status_code == 200 else f"{exc.status_code} "
    message = exc.api_message or exc.message
    rid = f" (request {exc.request_id})" if exc.request_id else ""
    return f"{status}{exc.type or 'error'}: {message}{rid}"
