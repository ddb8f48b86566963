"""The SDK client of each provider: `AsyncAnthropic`, `AsyncAnthropicBedrock` (InvokeModel),
`AsyncAnthropicBedrockMantle` (Bedrock's Messages API) or `AsyncAnthropicVertex`.

Credentials come from each platform's standard chain, resolved by the SDK (runner.models.credentials
says what is missing first). Every credential a request carries (a bearer token minted by
google-auth, an AWS session token, a gateway's header) is handed to `on_secret` as it leaves, so
outputs redact values that were never in the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2

from runner.errors import ModelAPIError
from runner.models.credentials import OnSecret, check_credentials, credential_values, request_secrets
from runner.models.providers import Provider, Target, aws_region, resolve

__all__ = ["Client", "OnSecret", "make_client"]

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


# -- clients ------------------------------------------------------------------------------------------
@dataclass
class Client:
    sdk: anthropic.AsyncAnthropic | Any
    """The SDK client; every one has `.messages.create`, `.base_url`, `.max_retries`, `.close()`."""
    target: Target
    secrets: list[str]
    """Known credential values at construction (more are reported to `on_secret` as requests go)."""


def make_client(
    provider: Provider,
    model: str,
    *,
    api_key: str | None,
    base_url: str | None,
    max_retries: int,
    timeout: httpx2.Timeout,
    verify: Any,
    on_secret: OnSecret | None = None,
) -> Client:
    """The SDK client for `model` on `provider`. Raises ModelAPIError naming a missing credential."""
    target = resolve(provider, model)
    secrets = credential_values()
    seen: set[str] = set(secrets)

    async def record(request: httpx2.Request) -> None:
        new = [v for v in request_secrets(request.headers) if v not in seen]
        if new:
            seen.update(new)
            secrets.extend(new)
            if on_secret is not None:
                on_secret(new)

    http_client = anthropic.DefaultAsyncHttpxClient(verify=verify, timeout=timeout,
                                                    event_hooks={"request": [record]})
    common: dict[str, Any] = {"max_retries": max_retries, "timeout": timeout, "http_client": http_client}
    try:
        sdk = _build(provider, target, api_key=api_key, base_url=base_url, common=common)
    except (ValueError, RuntimeError, anthropic.AnthropicError) as exc:  # the SDK's own configuration errors
        raise ModelAPIError(f"provider {provider}: {exc}") from None
    if api_key:
        secrets.append(api_key)
    return Client(sdk, target, secrets)


def _build(provider: Provider, target: Target, *, api_key: str | None, base_url: str | None,
           common: dict[str, Any]) -> Any:
    if provider == "bedrock":
        if problems := check_credentials("bedrock"):
            raise ModelAPIError("; ".join(problems))
        from anthropic.lib.bedrock import AsyncAnthropicBedrock, AsyncAnthropicBedrockMantle

        # base_url None: ANTHROPIC_BEDROCK_BASE_URL / ANTHROPIC_BEDROCK_MANTLE_BASE_URL, then AWS's.
        cls = AsyncAnthropicBedrock if target.platform == "bedrock-runtime" else AsyncAnthropicBedrockMantle
        return cls(aws_region=aws_region(), base_url=base_url, **common)
    if provider == "vertex":
        if problems := check_credentials("vertex"):
            raise ModelAPIError("; ".join(problems))
        from anthropic.lib.vertex import AsyncAnthropicVertex

        credentials, adc_project = _google_credentials()
        # The project is given, not left to the SDK: it would look for it only after building the
        # first request's URL, which needs it (a RuntimeError before any call).
        project = os.environ.get("ANTHROPIC_VERTEX_PROJECT_ID") or adc_project
        return AsyncAnthropicVertex(region=os.environ["CLOUD_ML_REGION"], project_id=project,
                                    credentials=credentials, base_url=base_url, **common)
    key = api_key or os.environ.get("ANTHROPIC_API_KEY")
    token = None if key else os.environ.get("ANTHROPIC_AUTH_TOKEN")
    if not key and not token:
        raise ModelAPIError(f"{check_credentials('anthropic')[0]} (model {target.model!r}; a scripted:PATH "
                            "model needs none)")
    # An explicit credential keeps the SDK from looking for credential profiles on disk.
    # base_url None: ANTHROPIC_BASE_URL, then the SDK's default. ANTHROPIC_CUSTOM_HEADERS: read by the SDK.
    if key:
        return anthropic.AsyncAnthropic(api_key=key, base_url=base_url, **common)
    return anthropic.AsyncAnthropic(auth_token=token, base_url=base_url, **common)


def _google_credentials() -> tuple[Any, str]:
    """Application-default credentials scoped for Vertex, with no token minted yet (the SDK
    refreshes them on the first request, in a thread), and their project ("" when they have none;
    check_credentials made sure ANTHROPIC_VERTEX_PROJECT_ID is set then). Loaded without scopes
    first: `google.auth.default(scopes=...)` asks Cloud Resource Manager for the project of a
    workload identity pool when GOOGLE_CLOUD_PROJECT is unset, although it is not needed."""
    import google.auth
    import google.auth.credentials

    credentials, project = google.auth.default()
    scoped = google.auth.credentials.with_scopes_if_required(  # type: ignore[no-untyped-call]
        credentials, [CLOUD_PLATFORM_SCOPE])
    return scoped, str(project or "")
