"""Fixtures for the model tests: a fake Messages API on a random port and models pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anthropic._base_client
import pytest

from runner.models.anthropic import AnthropicModel
from tests.fakes.messages_api import FakeMessagesAPI

API_KEY = "sk-ant-test-0123456789-SECRET"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real credentials or endpoints leak in from the environment; SDK backoff kept short."""
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_PROFILE",
        "ANTHROPIC_CUSTOM_HEADERS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(anthropic._base_client, "INITIAL_RETRY_DELAY", 0.01)
    monkeypatch.setattr(anthropic._base_client, "MAX_RETRY_DELAY", 0.02)


@pytest.fixture
def api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI(api_key=API_KEY) as server:
        yield server


@pytest.fixture
async def make_model(api: FakeMessagesAPI) -> AsyncIterator[Callable[..., AnthropicModel]]:
    """`make_model(**kwargs)`: an AnthropicModel on the fake (key and URL unless given)."""
    made: list[AnthropicModel] = []

    def make(**kwargs: Any) -> AnthropicModel:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("base_url", api.base_url)
        model = AnthropicModel(kwargs.pop("model", "claude-test-1"), **kwargs)
        model.stream_retry_delay_s = 0.01
        made.append(model)
        return model

    yield make
    for model in made:
        await model.aclose()
