"""Claude on Bedrock or Vertex: the Anthropic model with the platform's id, features and price key.

The conversation, streaming and error handling are `AnthropicModel`'s (the SDK's platform clients
speak the Messages API); only three things differ, all from runner/models/providers.json:
- the model id sent (`resolve`), while the run, the trajectory and cost.json keep the name the
  task gave, or `<name> (<provider>, regional)` where a regional endpoint costs more;
- what the request may use: features the platform lacks are dropped (`adapt_params`), so the
  client-side fallback applies, and `fallbacks` says what was dropped;
- the usage is booked under that price key, whatever model name the platform answers with.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from runner.errors import ModelAPIError
from runner.models.anthropic import AnthropicModel
from runner.models.base import Model, ModelCallFailed, ModelRequest, ModelResponse
from runner.models.pricing import PriceTable
from runner.models.provider_clients import OnSecret
from runner.models.providers import Provider, adapt_params, add_platform_prices, load


class PlatformModel(AnthropicModel):
    """An AnthropicModel on a provider other than the Claude API."""

    def __init__(self, model: str, *, provider: Provider, **kwargs: Any) -> None:
        super().__init__(model, provider=provider, **kwargs)
        self.features = load().features[self.target.platform]
        self.fallbacks: list[str] = []
        """Features the requests asked for that this platform lacks (dropped, each named once)."""

    def build_params(self, request: ModelRequest) -> dict[str, Any]:
        params = super().build_params(request)
        params["model"] = self.target.wire_id
        if version := load().versions.get(self.target.platform):
            params["extra_body"] = {**params.get("extra_body", {}), "anthropic_version": version}
        for dropped in adapt_params(params, self.features):
            if dropped not in self.fallbacks:
                self.fallbacks.append(dropped)
        return params

    async def complete(self, request: ModelRequest) -> ModelResponse:
        try:
            response = await super().complete(request)
        except (ModelAPIError, ModelCallFailed):
            raise
        except Exception as exc:
            if not _is_credential_error(exc):
                raise
            # google-auth's refresh or botocore's STS call failed while the request was signed:
            # fatal, like a 401, and said as such (not an "internal error").
            raise ModelAPIError(self._redact(f"{self.target.provider} credentials could not be used: "
                                             f"{type(exc).__name__}: {exc}")) from None
        return dataclasses.replace(response, model=self.target.price_key)


def _is_credential_error(exc: Exception) -> bool:
    module = type(exc).__module__
    if module.startswith(("google.auth", "google.oauth2", "botocore")):
        return True
    return isinstance(exc, RuntimeError) and "credentials" in str(exc).lower()  # the SDK's own


def make_api_model(name: str, provider: Provider, *, prices: PriceTable | None = None,
                   on_secret: OnSecret | None = None) -> Model:
    """The model `name` on `provider`; its platform price entered into `prices` (when given)."""
    if provider == "anthropic":
        return AnthropicModel(name, on_secret=on_secret)
    model = PlatformModel(name, provider=provider, on_secret=on_secret)
    if prices is not None:
        add_platform_prices(prices, model.target)
    return model
