"""Model prices, from a dated data file (runner/models/prices.json), never from code.

An unknown model's cost is *unknown* (None), never 0: a report that silently prices a new model
at zero would let a run blow through its cost limit. Scripted models (`scripted:PATH`) call no
API and are free by definition.

`ASTRA_PRICES_FILE` (or the `path` argument) replaces the built-in file; it has the same format:

    {"date": "YYYY-MM-DD", "source": "...",
     "models": {"claude-sonnet-5-5": {"input": 2.0, "output": 10.0,
                                      "cache_write": 2.5, "cache_read": 0.1}, ...}}

Prices are USD per million tokens; `cache_write` is the 5-minute ephemeral cache-write price.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from runner.errors import ConfigError
from runner.models.base import Usage

SCRIPTED_PREFIX = "scripted:"
PRICES_ENV = "ASTRA_PRICES_FILE"
_DATE_SUFFIX = re.compile(r"-\d{8}$")
_MTOK = 1_000_000
_FIELDS = ("input", "output", "cache_write", "cache_read")


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float
    """5-minute ephemeral cache write (1.25x input on every current model)."""
    cache_read: float
    """Cache hit."""

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_creation_input_tokens * self.cache_write
            + usage.cache_read_input_tokens * self.cache_read
        ) / _MTOK

    def as_dict(self) -> dict[str, float]:
        return {f: getattr(self, f) for f in _FIELDS}


FREE = ModelPrice(0.0, 0.0, 0.0, 0.0)
"""The price of a scripted model: it calls no API."""


@dataclass(frozen=True)
class PriceTable:
    date: str
    source: str
    models: dict[str, ModelPrice]

    def entry_for(self, model: str) -> str | None:
        """The table entry a model id is priced by: itself, or its base id without a date suffix."""
        if model in self.models:
            return model
        base = _DATE_SUFFIX.sub("", model)
        return base if base in self.models else None

    def price_for(self, model: str) -> ModelPrice | None:
        """The model's price; None when it is unknown."""
        if model.startswith(SCRIPTED_PREFIX):
            return FREE
        entry = self.entry_for(model)
        return None if entry is None else self.models[entry]

    def cost(self, model: str, usage: Usage) -> float | None:
        """USD for `usage` on `model`; None (never 0) when the model's price is unknown."""
        price = self.price_for(model)
        return None if price is None else price.cost(usage)

    def highest(self) -> ModelPrice:
        """Every token kind at the highest price in the table: an upper bound for an unknown model."""
        prices = list(self.models.values()) or [FREE]
        return ModelPrice(*(max(getattr(p, f) for p in prices) for f in _FIELDS))

    def total_bound(self, usage_by_model: Mapping[str, Usage]) -> float:
        """Like `total`, but an unknown model is priced at `highest()`: what limits check against."""
        return sum((self.price_for(m) or self.highest()).cost(u) for m, u in usage_by_model.items())

    def total(self, usage_by_model: Mapping[str, Usage]) -> float | None:
        """USD over all models; None when any model's price is unknown."""
        total = 0.0
        for model, usage in usage_by_model.items():
            cost = self.cost(model, usage)
            if cost is None:
                return None
            total += cost
        return total


def load_prices(path: Path | None = None) -> PriceTable:
    """The price table: `path`, else $ASTRA_PRICES_FILE, else the built-in file.

    Raises ConfigError naming the file and the problem when the file cannot be used.
    """
    if path is None and os.environ.get(PRICES_ENV):
        path = Path(os.environ[PRICES_ENV])
    if path is None:
        name = "runner/models/prices.json (built in)"
        text = resources.files("runner.models").joinpath("prices.json").read_text(encoding="utf-8")
    else:
        name = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{name}: cannot read price file: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}: line {exc.lineno}: not valid JSON: {exc.msg}") from None
    return _parse(name, data)


def _parse(name: str, data: Any) -> PriceTable:
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a JSON object with date, source and models")
    for key in ("date", "source"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise ConfigError(f"{name}: field '{key}' must be a non-empty string")
    models = data.get("models")
    if not isinstance(models, dict):
        raise ConfigError(f"{name}: field 'models' must be an object of model id -> prices")
    table: dict[str, ModelPrice] = {}
    for model, entry in models.items():
        where = f"{name}: models.{model}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object with {', '.join(_FIELDS)}")
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
        values: list[float] = []
        for field_name in _FIELDS:
            value = entry.get(field_name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}.{field_name}: must be a number (USD per million tokens)")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{where}.{field_name}: must be a finite number >= 0, got {value}")
            values.append(float(value))
        table[model] = ModelPrice(*values)
    return PriceTable(date=data["date"], source=data["source"], models=table)
