"""Model ids, features and prices per platform, from runner/models/providers.json."""

from __future__ import annotations

from typing import Any

import pytest

from runner.models.pricing import load_prices
from runner.models.providers import (
    FEATURES,
    adapt_params,
    add_platform_prices,
    load,
    platform_context_window,
    platform_features,
    resolve,
)


@pytest.mark.parametrize(("model", "region", "wire", "platform", "premium"), [
    # InvokeModel models: the global inference profile where there is one (no premium)
    ("claude-sonnet-4-5", "us-east-1", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock-runtime", False),
    ("claude-haiku-4-5-20251001", "eu-west-1", "global.anthropic.claude-haiku-4-5-20251001-v1:0", "bedrock-runtime",
     False),
    # no global profile: the region's geography, else the base id
    ("claude-opus-4-1", "us-west-2", "us.anthropic.claude-opus-4-1-20250805-v1:0", "bedrock-runtime", False),
    ("claude-opus-4-1", "eu-central-1", "anthropic.claude-opus-4-1-20250805-v1:0", "bedrock-runtime", False),
    # Opus 4.7 and later: the Messages API on bedrock-mantle (a regional endpoint)
    ("claude-sonnet-5-5", "us-east-1", "anthropic.claude-sonnet-5-5", "bedrock-mantle", True),
    # explicit platform ids are sent as they are, and still priced as their model
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "us-east-1", "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
     "bedrock-runtime", True),
    ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "us-east-1",
     "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock-runtime", False),
    ("anthropic.claude-opus-4-8", "us-east-1", "anthropic.claude-opus-4-8", "bedrock-mantle", True),
    # an inference-profile id of a mantle model asks for InvokeModel: it is sent there
    ("us.anthropic.claude-sonnet-5-5", "us-east-1", "us.anthropic.claude-sonnet-5-5", "bedrock-runtime", True),
])
def test_bedrock_ids(model: str, region: str, wire: str, platform: str, premium: bool) -> None:
    target = resolve("bedrock", model, region=region)
    assert (target.wire_id, target.platform, target.premium) == (wire, platform, premium)


def test_explicit_bedrock_ids_keep_their_models_price_key() -> None:
    assert resolve("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", region="us-east-1").model == \
        "claude-sonnet-4-5"
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    target = resolve("bedrock", arn, region="us-east-1")
    assert (target.wire_id, target.platform, target.model) == (arn, "bedrock-runtime", arn)  # price unknown


@pytest.mark.parametrize(("model", "region", "wire", "premium"), [
    ("claude-sonnet-4-5", "global", "claude-sonnet-4-5@20250929", False),
    ("claude-sonnet-4-5", "us-east5", "claude-sonnet-4-5@20250929", True),
    ("claude-opus-4-1", "us-east5", "claude-opus-4-1@20250805", False),  # before Sonnet 4.5: no premium
    ("claude-sonnet-5-5", "europe-west1", "claude-sonnet-5-5", True),
    ("claude-opus-4-5@20251101", "global", "claude-opus-4-5@20251101", False),
])
def test_vertex_ids(model: str, region: str, wire: str, premium: bool) -> None:
    target = resolve("vertex", model, region=region)
    assert (target.wire_id, target.premium) == (wire, premium)


def test_the_claude_api_takes_the_id_as_given() -> None:
    target = resolve("anthropic", "claude-sonnet-5-5")
    assert (target.wire_id, target.price_key, target.premium) == ("claude-sonnet-5-5", "claude-sonnet-5-5", False)


def test_every_model_in_the_table_has_a_price_and_known_features() -> None:
    prices = load_prices()
    data = load()
    assert data.date and data.source
    for name in data.models:
        assert prices.price_for(name) is not None, name
    for features in data.features.values():
        assert features <= set(FEATURES)


def test_regional_premium_is_priced_and_global_is_not() -> None:
    prices = load_prices()
    regional = resolve("vertex", "claude-sonnet-5-5", region="us-east5")
    add_platform_prices(prices, regional)
    base = prices.price_for("claude-sonnet-5-5")
    priced = prices.price_for(regional.price_key)
    assert base is not None and priced is not None
    assert priced.input == pytest.approx(base.input * 1.1) and priced.cache_read == pytest.approx(base.cache_read * 1.1)
    global_ = resolve("vertex", "claude-sonnet-5-5", region="global")
    add_platform_prices(prices, global_)
    assert global_.price_key == "claude-sonnet-5-5"


def test_an_unknown_models_price_stays_unknown() -> None:
    prices = load_prices()
    target = resolve("vertex", "claude-nonesuch-9", region="us-east5")
    add_platform_prices(prices, target)
    assert prices.price_for(target.price_key) is None


def test_context_windows_differ_only_where_the_data_says(monkeypatch: pytest.MonkeyPatch) -> None:
    assert platform_context_window("vertex", "claude-sonnet-5-5") is None
    import json
    from importlib import resources

    import runner.models.providers as providers

    data = json.loads(resources.files("runner.models").joinpath("providers.json").read_text())
    data["models"]["claude-sonnet-5-5"]["vertex"]["context_window"] = 200_000
    monkeypatch.setattr(providers, "load", lambda: providers._parse(data))
    assert platform_context_window("vertex", "claude-sonnet-5-5") == 200_000
    assert platform_context_window("bedrock", "anthropic.claude-sonnet-5-5") is None


def test_platform_features() -> None:
    assert "compaction" in platform_features("anthropic", "claude-sonnet-5-5")
    assert "compaction" not in platform_features("bedrock", "claude-sonnet-4-5", region="us-east-1")
    assert "context_editing" in platform_features("bedrock", "claude-sonnet-4-5", region="us-east-1")
    assert "compaction" in platform_features("vertex", "claude-sonnet-5-5", region="global")


def request_with_everything() -> dict[str, Any]:
    return {
        "model": "m", "max_tokens": 10, "betas": ["compact-2026-01-12"],
        "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x",
                                                    "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],
        "extra_body": {"context_management": {"edits": [{"type": "compact_20260112"},
                                                         {"type": "clear_tool_uses_20250919"}]},
                       "thinking": {"type": "adaptive"}},
        "extra_headers": {"anthropic-beta": "context-management-2025-06-27"},
    }


def test_adapt_params_keeps_what_the_platform_has() -> None:
    params = request_with_everything()
    assert adapt_params(params, FEATURES) == []
    assert params == request_with_everything()


def test_adapt_params_drops_what_the_platform_lacks_and_says_so() -> None:
    params = request_with_everything()
    dropped = adapt_params(params, {"context_editing", "thinking"})
    assert params["extra_body"]["context_management"]["edits"] == [{"type": "clear_tool_uses_20250919"}]
    assert "ttl" not in params["system"][0]["cache_control"]
    assert "ttl" not in params["messages"][0]["content"][0]["cache_control"]
    assert "betas" not in params and "anthropic-beta" not in params["extra_headers"]
    assert "thinking" not in params["extra_body"]
    assert any("compaction" in d for d in dropped) and any("1-hour cache" in d for d in dropped)
    everything_gone = request_with_everything()
    adapt_params(everything_gone, set())
    assert "context_management" not in everything_gone["extra_body"]


def test_the_data_files_are_installed_with_the_package() -> None:
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["runner"])
    shipped = {str(p.relative_to(root / "runner")) for p in (root / "runner" / "models").glob("*.json")}
    assert shipped <= listed, shipped - listed  # a pip-installed astra-run (the Action's) reads them
