"""What each model accepts and offers, from a dated data file (runner/models/models.json).

The file holds, per provider and model: the context window, the output limits, which thinking
and effort settings the API accepts, whether it takes sampling parameters or a forced
`tool_choice`, and which context-management features it has (server-side compaction, context
editing). Each row names the documentation page it comes from; rows a page did not confirm list
what is unconfirmed. A model that is not in the file gets the conservative `defaults` (a 200k
window, no thinking parameters, no server-side features: the client-side fallback).

The file is extensible per provider: `providers.<name>.models.<model id>` rows, each merged over
the file's `defaults`. A provider without a row for a model falls back to the `anthropic` row of
the same id (Bedrock and Vertex serve the same models under other ids; a provider's helper adds
its own rows and `betas`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from runner.errors import ConfigError

_DATE_SUFFIX = re.compile(r"-\d{8}$")
THINKING_VALUES = ("adaptive", "between_tools", "off")
EFFORT_VALUES = ("low", "medium", "high", "xhigh", "max")
DEFAULT_PROVIDER = "anthropic"


@dataclass(frozen=True)
class ModelInfo:
    id: str
    known: bool
    """False: not in the file; the defaults apply."""
    context_window: int
    max_output_tokens: int | None
    default_output_tokens: int
    thinking_default: str
    thinking_allowed: tuple[str, ...]
    between_tools_efforts: tuple[str, ...] | None
    off_max_effort: str | None
    """`thinking: off` only up to this effort (Opus 5)."""
    effort_default: str | None
    effort_allowed: tuple[str, ...]
    sampling_parameters: bool
    forced_tool_choice: bool
    compaction: bool
    context_editing: bool
    preserved_thinking: bool
    retired: bool
    betas: Mapping[str, str] = field(default_factory=dict)
    unconfirmed: tuple[str, ...] = ()

    @property
    def thinks_by_default(self) -> bool:
        return self.thinking_default != "off"


@dataclass(frozen=True)
class RequestOptions:
    """`model_options` checked against a model and turned into request parameters."""

    max_tokens: int
    thinking: dict[str, Any] | None = None
    """The `thinking` parameter, or None to leave the model's default."""
    effort: str | None = None
    """`output_config.effort`, or None for the model's default."""

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.thinking is not None:
            out["thinking"] = dict(self.thinking)
        if self.effort is not None:
            out["output_config"] = {"effort": self.effort}
        return out


@dataclass(frozen=True)
class Catalog:
    date: str
    rows: Mapping[str, Mapping[str, Mapping[str, Any]]]
    defaults: Mapping[str, Any]
    betas: Mapping[str, Mapping[str, str]]

    def info(self, model: str, provider: str = DEFAULT_PROVIDER) -> ModelInfo:
        for table in (provider, DEFAULT_PROVIDER):
            models = self.rows.get(table, {})
            for key in (model, _DATE_SUFFIX.sub("", model)):
                if key in models:
                    return _info(key, True, {**self.defaults, **models[key]}, self.betas.get(provider, {}))
        return _info(model, False, dict(self.defaults), self.betas.get(provider, {}))


def _info(model: str, known: bool, row: Mapping[str, Any], betas: Mapping[str, str]) -> ModelInfo:
    thinking = row.get("thinking") or {}
    effort = row.get("effort") or {}
    bte = thinking.get("between_tools_efforts")
    return ModelInfo(
        id=model,
        known=known,
        context_window=int(row["context_window"]),
        max_output_tokens=row.get("max_output_tokens"),
        default_output_tokens=int(row["default_output_tokens"]),
        thinking_default=str(thinking.get("default", "off")),
        thinking_allowed=tuple(thinking.get("allowed", ["off"])),
        between_tools_efforts=tuple(bte) if bte else None,
        off_max_effort=thinking.get("off_max_effort"),
        effort_default=effort.get("default"),
        effort_allowed=tuple(effort.get("allowed", ())),
        sampling_parameters=bool(row.get("sampling_parameters", True)),
        forced_tool_choice=bool(row.get("forced_tool_choice", True)),
        compaction=bool(row.get("compaction", False)),
        context_editing=bool(row.get("context_editing", False)),
        preserved_thinking=bool(row.get("preserved_thinking", False)),
        retired=bool(row.get("retired", False)),
        betas=dict(betas),
        unconfirmed=tuple(row.get("unconfirmed", ())),
    )


@functools.cache
def load_catalog() -> Catalog:
    text = resources.files("runner.models").joinpath("models.json").read_text(encoding="utf-8")
    data = json.loads(text)
    providers = data["providers"]
    return Catalog(
        date=data["date"],
        rows={name: p.get("models", {}) for name, p in providers.items()},
        defaults=data["defaults"],
        betas={name: p.get("betas", {}) for name, p in providers.items()},
    )


def model_info(model: str, provider: str = DEFAULT_PROVIDER) -> ModelInfo:
    return load_catalog().info(model, provider)


Where = Callable[[str], str]
"""`where("model_options.thinking")` -> "task.yaml:7: model_options.thinking" for error messages."""


def resolve_options(
    info: ModelInfo,
    *,
    effort: str | None = None,
    thinking: str | None = None,
    max_output_tokens: int | None = None,
    where: Where = lambda f: f,
) -> RequestOptions:
    """Check `model_options` against the model; raise ConfigError (FILE:LINE: field: why) for
    anything the model's API would reject. Unset fields keep the model's own defaults."""
    name = info.id
    most = info.max_output_tokens
    if max_output_tokens is not None and most is not None and max_output_tokens > most:
        raise ConfigError(
            f"{where('model_options.max_output_tokens')}: {max_output_tokens} is more than {name} can write "
            f"({info.max_output_tokens} output tokens at most)"
        )
    if not info.known:
        # A model the file does not know (a gateway, a local server): pass what the user asked
        # for and nothing else; its API is the judge.
        return RequestOptions(
            max_tokens=max_output_tokens or info.default_output_tokens,
            thinking=None if thinking is None else _thinking_param(thinking),
            effort=effort,
        )
    if effort is not None and effort not in info.effort_allowed:
        accepted = ", ".join(info.effort_allowed) if info.effort_allowed else "no effort setting"
        raise ConfigError(
            f"{where('model_options.effort')}: {name} does not accept effort {effort!r} (it accepts {accepted})"
        )
    if thinking is not None and thinking not in info.thinking_allowed:
        hint = ""
        if thinking == "off" and "between_tools" in info.thinking_allowed:
            hint = "; use `thinking: between_tools`, its lowest thinking setting"
        elif thinking == "off":
            hint = "; its thinking is always on"
        raise ConfigError(
            f"{where('model_options.thinking')}: {name} does not accept thinking {thinking!r} "
            f"(it accepts {', '.join(info.thinking_allowed)}){hint}"
        )
    level = effort or info.effort_default
    allowed_levels = info.between_tools_efforts
    if thinking == "between_tools" and allowed_levels is not None and level not in allowed_levels:
        raise ConfigError(
            f"{where('model_options.thinking')}: {name} allows `thinking: between_tools` only at effort "
            f"{', '.join(allowed_levels)} (effort is {level}); use `thinking: adaptive` for xhigh or max"
        )
    ceiling = info.off_max_effort
    if thinking == "off" and ceiling is not None and level is not None and (
        EFFORT_VALUES.index(level) > EFFORT_VALUES.index(ceiling)
    ):
        raise ConfigError(
            f"{where('model_options.thinking')}: {name} allows `thinking: off` only up to effort "
            f"{ceiling} (effort is {level})"
        )
    param = None
    if thinking is not None and not (thinking == "off" and not info.thinks_by_default):
        param = _thinking_param(thinking)
    return RequestOptions(max_tokens=max_output_tokens or info.default_output_tokens, thinking=param, effort=effort)


def _thinking_param(value: str) -> dict[str, Any]:
    if value == "off":
        return {"type": "disabled"}
    return {"type": value}
