"""Where Claude is reached: the Claude API, Amazon Bedrock or Google Vertex AI (SPEC §7).

A task names a model as users know it (`claude-sonnet-5-5`); each platform knows it under its own
id (`anthropic.claude-sonnet-5-5` on Bedrock, `claude-sonnet-4-5@20250929` on Vertex), offers its
own subset of the API's features, and prices some endpoints differently. All of that is data, in
the dated file runner/models/providers.json; this module reads it and answers three questions:

- `resolve(provider, model)`: which id to send, on which endpoint, and under which price key;
- `platform_features(provider, model)`: which features the request may use there (the request
  builder drops the rest with `adapt_params`, so the client-side fallback applies);
- `add_platform_prices(prices, target)`: the price table entry for a platform's price key.

An explicit platform id (`us.anthropic.claude-sonnet-4-5-20250929-v1:0`, `claude-opus-4-1@20250805`,
an inference-profile ARN) is sent as it is; its price is the model's when it can be recognised.
Credentials and SDK clients are in runner.models.provider_clients.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from runner.models.pricing import ModelPrice, PriceTable

Provider = Literal["anthropic", "bedrock", "vertex"]
PROVIDERS: tuple[Provider, ...] = ("anthropic", "bedrock", "vertex")
Platform = Literal["anthropic", "bedrock-runtime", "bedrock-mantle", "vertex"]

FEATURES = ("thinking", "adaptive_thinking", "effort", "compaction", "context_editing", "cache_1h", "betas")
"""Every feature name `platform_features` may return."""

_BEDROCK_GEO = re.compile(r"^(global|us-gov|us|eu|jp|apac|au|ca)\.")
_BEDROCK_VERSION = re.compile(r"(-\d{8})?-v\d+(:\d+)?$")
_DATE = re.compile(r"-\d{8}$")


@dataclass(frozen=True)
class ModelEntry:
    bedrock_id: str | None
    bedrock_endpoint: Literal["runtime", "mantle"]
    bedrock_profiles: tuple[str, ...]
    vertex_id: str | None
    context_windows: dict[str, int]
    """Per provider, where its context window differs from the model's own (tokens)."""


@dataclass(frozen=True)
class ProviderData:
    date: str
    source: str
    regional_premium: float
    premium_models: frozenset[str]
    features: dict[str, frozenset[str]]
    versions: dict[str, str]
    """The `anthropic_version` a platform needs in the body, where it is not the SDK's default."""
    models: dict[str, ModelEntry]


@dataclass(frozen=True)
class Target:
    """A model on a platform: what is sent, where, and how it is priced."""

    provider: Provider
    platform: Platform
    model: str
    """The id users know (the Claude API id) when it could be recognised, else the id given."""
    wire_id: str
    """The id sent to the platform."""
    premium: bool = False
    """A regional endpoint with the platform's regional price premium."""

    @property
    def price_key(self) -> str:
        """The model's key in the price table and cost.json."""
        return f"{self.model} ({self.provider}, regional)" if self.premium else self.model


@functools.cache
def load() -> ProviderData:
    """The built-in runner/models/providers.json (read once)."""
    text = resources.files("runner.models").joinpath("providers.json").read_text(encoding="utf-8")
    return _parse(json.loads(text))


def _parse(data: dict[str, Any]) -> ProviderData:
    models = {}
    for name, entry in data["models"].items():
        bedrock = entry.get("bedrock") or {}
        models[name] = ModelEntry(
            bedrock_id=bedrock.get("id"),
            bedrock_endpoint=bedrock.get("endpoint", "runtime"),
            bedrock_profiles=tuple(bedrock.get("profiles", ())),
            vertex_id=(entry.get("vertex") or {}).get("id"),
            context_windows={p: int(entry[p]["context_window"]) for p in ("bedrock", "vertex")
                             if isinstance(entry.get(p), dict) and "context_window" in entry[p]},
        )
    features = {name: frozenset(p["features"]) for name, p in data["platforms"].items()}
    unknown = sorted({f for fs in features.values() for f in fs} - set(FEATURES))
    if unknown:
        raise ValueError(f"providers.json: unknown feature name(s) {', '.join(unknown)}")
    return ProviderData(
        date=data["date"], source=data["source"], regional_premium=float(data["regional_premium"]),
        premium_models=frozenset(data["premium_models"]), features=features, models=models,
        versions={n: p["anthropic_version"] for n, p in data["platforms"].items() if "anthropic_version" in p},
    )


# -- model ids --------------------------------------------------------------------------------------
def resolve(provider: Provider, model: str, *, region: str | None = None) -> Target:
    """The platform id of `model` (a known name or an explicit platform id) and its price key.

    `region`: the AWS region (Bedrock: which geographic inference profile) or the Vertex region
    (`global` has no price premium); None reads it from the environment as the SDK does.
    """
    if provider == "bedrock":
        return _bedrock(model, aws_region() if region is None else region)
    if provider == "vertex":
        return _vertex(model, os.environ.get("CLOUD_ML_REGION", "") if region is None else region)
    return Target("anthropic", "anthropic", model, model)


def _bedrock(model: str, region: str | None) -> Target:
    data = load()
    if "anthropic." in model or model.startswith("arn:"):  # an explicit Bedrock id: sent as is
        canonical, entry = _known_bedrock(model)
        # The id's shape decides: a geographic profile, a version suffix or an ARN is InvokeModel's.
        endpoint = "runtime" if _is_runtime_id(model) else (entry.bedrock_endpoint if entry else "mantle")
        regional = not model.startswith("global.")
        premium = canonical is not None and canonical in data.premium_models and regional
        platform: Platform = "bedrock-runtime" if endpoint == "runtime" else "bedrock-mantle"
        return Target("bedrock", platform, canonical or model, model, premium)
    name = _DATE.sub("", model)
    entry = data.models.get(name)
    if entry is None or entry.bedrock_id is None:  # not in our table: trust the caller's id
        return Target("bedrock", "bedrock-mantle", model, model, model in data.premium_models)
    if entry.bedrock_endpoint == "mantle":
        return Target("bedrock", "bedrock-mantle", name, entry.bedrock_id, name in data.premium_models)
    profile = _profile_for(entry.bedrock_profiles, region)
    wire = f"{profile}.{entry.bedrock_id}" if profile else entry.bedrock_id
    premium = profile != "global" and name in data.premium_models
    return Target("bedrock", "bedrock-runtime", name, wire, premium)


def _known_bedrock(model: str) -> tuple[str | None, ModelEntry | None]:
    base = _BEDROCK_GEO.sub("", model.rsplit("/", 1)[-1])
    for name, entry in load().models.items():
        if entry.bedrock_id == base:
            return name, entry
    guess = _BEDROCK_VERSION.sub("", base).removeprefix("anthropic.")
    found = load().models.get(guess)
    return (guess, found) if found is not None else (None, None)


def _is_runtime_id(model: str) -> bool:
    return model.startswith("arn:") or bool(_BEDROCK_GEO.match(model) or _BEDROCK_VERSION.search(model))


def _profile_for(profiles: tuple[str, ...], region: str | None) -> str | None:
    """`global` where the model has it; else the geography of the region; else none (base id)."""
    if "global" in profiles:
        return "global"
    geo = _geography(region or "")
    return geo if geo in profiles else None


def _geography(region: str) -> str | None:
    if region.startswith("us-gov-"):
        return "us-gov"
    if region in ("ap-northeast-1", "ap-northeast-3"):
        return "jp"
    for prefix, geo in (("us-", "us"), ("eu-", "eu"), ("ap-", "apac"), ("ca-", "ca")):
        if region.startswith(prefix):
            return geo
    return None


def _vertex(model: str, region: str) -> Target:
    data = load()
    regional = region != "global"
    if "@" in model:  # an explicit Vertex id (claude-sonnet-4-5@20250929)
        canonical = next((n for n, e in data.models.items() if e.vertex_id == model), None)
        premium = canonical is not None and canonical in data.premium_models and regional
        return Target("vertex", "vertex", canonical or model, model, premium)
    name = _DATE.sub("", model)
    entry = data.models.get(name)
    wire = entry.vertex_id if entry is not None and entry.vertex_id else model
    return Target("vertex", "vertex", name if entry else model, wire, regional and name in data.premium_models)


def aws_region() -> str | None:
    """The AWS region as the SDK finds it: AWS_REGION, AWS_DEFAULT_REGION, then the profile's."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    try:
        import boto3
        import botocore.exceptions

        region = boto3.Session(profile_name=os.environ.get("AWS_PROFILE") or None).region_name
        return str(region) if region else None
    except (ImportError, botocore.exceptions.BotoCoreError):
        return None


def platform_context_window(provider: Provider, model: str) -> int | None:
    """The context window of `model` on `provider` where it differs from the model's own; None:
    the model's own applies (the per-model data of runner/models)."""
    entry = load().models.get(resolve(provider, model, region="").model)
    return entry.context_windows.get(provider) if entry is not None else None


# -- features ---------------------------------------------------------------------------------------
def platform_features(provider: Provider, model: str, *, region: str | None = None) -> frozenset[str]:
    """The features a request to `model` on `provider` may use (names from FEATURES).

    For the per-model data of runner/models (what the *model* supports), intersect with this:
    a feature is used when the model has it and the platform offers it.
    """
    return load().features[resolve(provider, model, region=region).platform]


def adapt_params(params: dict[str, Any], features: Iterable[str]) -> list[str]:
    """Drop from `messages.create` keyword arguments what the platform lacks; say what was dropped.

    Works on the top level and on `extra_body`: `context_management` edits (compaction,
    context editing), 1-hour cache TTLs (become the default 5 minutes), `betas` and
    `anthropic-beta` headers, and thinking of a kind the platform does not take.
    """
    have = set(features)
    dropped: list[str] = []
    for holder in (params, params.get("extra_body") if isinstance(params.get("extra_body"), dict) else None):
        if holder is None:
            continue
        _adapt_context(holder, have, dropped)
        if "betas" not in have and holder.pop("betas", None) is not None:
            dropped.append("betas")
        thinking = holder.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") == "adaptive" and "adaptive_thinking" not in have:
            holder.pop("thinking")
            dropped.append("adaptive thinking")
        config = holder.get("output_config")
        if "effort" not in have and isinstance(config, dict) and config.pop("effort", None) is not None:
            dropped.append("effort")
    headers = params.get("extra_headers")
    if "betas" not in have and isinstance(headers, dict) and headers.pop("anthropic-beta", None) is not None:
        dropped.append("anthropic-beta header")
    if "cache_1h" not in have and _drop_long_ttls(params):
        dropped.append("1-hour cache (5-minute cache used)")
    return dropped


def _adapt_context(holder: dict[str, Any], have: set[str], dropped: list[str]) -> None:
    cm = holder.get("context_management")
    if not isinstance(cm, dict) or not isinstance(cm.get("edits"), list):
        return
    kept = []
    for edit in cm["edits"]:
        kind = str(edit.get("type", "")) if isinstance(edit, dict) else ""
        needs = "compaction" if kind.startswith("compact") else "context_editing"
        if needs in have:
            kept.append(edit)
        else:
            dropped.append(f"{needs.replace('_', ' ')} ({kind or 'edit'})")
    if kept:
        cm["edits"] = kept
    else:
        holder.pop("context_management")


def _drop_long_ttls(value: Any) -> bool:
    """Remove `ttl: 1h` from every cache_control in the request (True if any was there)."""
    found = False
    if isinstance(value, dict):
        cc = value.get("cache_control")
        if isinstance(cc, dict) and cc.get("ttl") not in (None, "5m"):
            cc.pop("ttl")
            found = True
        for v in value.values():
            found = _drop_long_ttls(v) or found
    elif isinstance(value, list):
        for v in value:
            found = _drop_long_ttls(v) or found
    return found


# -- prices -----------------------------------------------------------------------------------------
def add_platform_prices(prices: PriceTable, target: Target) -> None:
    """Give `target.price_key` its platform price (the regional premium), when the model's is known.

    An unknown model stays unknown (its cost is reported as unknown, never 0).
    """
    if not target.premium or target.price_key in prices.models:
        return
    base = prices.price_for(target.model)
    if base is None:
        return
    k = load().regional_premium
    prices.models[target.price_key] = ModelPrice(base.input * k, base.output * k, base.cache_write * k,
                                                 base.cache_read * k)
