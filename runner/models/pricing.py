"""Model prices, from a dated data file (runner/models/prices.json), never from code.

An unknown model's cost is *unknown* (None), never 0: a report that silently prices a new model
at zero would let a run blow through its cost limit. Scripted models (`scripted:PATH`) call no
API and are free by definition.

`ASTRA_PRICES_FILE` (or the `path` argument) replaces the built-in file; it has the same format:

    {"date": "YYYY-MM-DD", "source": "...",
     "models": {"claude-sonnet-5-5": {"input": 2.0, "output": 10.0,
                                      "cache_write": 2.5, "cache_read": 0.1}, ...}}

Prices are USD per million tokens; `cache_write` is the 5-minute ephemeral cache-write price,
`cache_write_1h` the 1-hour one (optional: 2x input when absent, as on every model's page).
A model priced by prompt length (Claude Haiku 5.5) has a `long_prompt` block — `threshold_tokens`
and the five prices that apply to *every* token of a call whose prompt (input + cache writes +
cache reads) is longer — so such a model is priced call by call (`turn_cost`). `retired: true`
marks a model the API no longer serves; `unconfirmed` lists prices not confirmed on the pricing page.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from runner.models.base import Usage
from runner.yamlio import Positions, Problem, format_loc

SCRIPTED_PREFIX = "scripted:"
PRICES_ENV = "ASTRA_PRICES_FILE"
_DATE_SUFFIX = re.compile(r"-\d{8}$")
_MTOK = 1_000_000
_FIELDS = ("input", "output", "cache_write", "cache_read")
_OPTIONAL = ("cache_write_1h",)
_META = ("long_prompt", "retired", "unconfirmed", "note")


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float
    """5-minute ephemeral cache write (1.25x input on every current model)."""
    cache_read: float
    """Cache hit."""
    cache_write_1h: float | None = None
    """1-hour cache write; None: twice the input price (pricing page: 1h writes are 2x input)."""
    long_prompt: LongPrompt | None = None
    retired: bool = False

    @property
    def write_1h(self) -> float:
        return self.cache_write_1h if self.cache_write_1h is not None else 2 * self.input

    def cost(self, usage: Usage) -> float:
        """USD for `usage` at this (base) price. For a model with a long-prompt price, use
        `turn_cost` per call: summed usage cannot tell which calls were long."""
        five_minute = usage.cache_creation_input_tokens - usage.cache_creation_1h_input_tokens
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + five_minute * self.cache_write
            + usage.cache_creation_1h_input_tokens * self.write_1h
            + usage.cache_read_input_tokens * self.cache_read
        ) / _MTOK

    def turn_cost(self, usage: Usage) -> float:
        """USD for one call: the long-prompt price when its prompt is over the threshold."""
        band = self.long_prompt
        if band is not None and usage.prompt_tokens > band.threshold_tokens:
            return band.price.cost(usage)
        return self.cost(usage)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f: getattr(self, f) for f in _FIELDS}
        out["cache_write_1h"] = self.write_1h
        if self.long_prompt is not None:
            out["long_prompt"] = {"threshold_tokens": self.long_prompt.threshold_tokens,
                                  **self.long_prompt.price.as_dict()}
        return out


@dataclass(frozen=True)
class LongPrompt:
    threshold_tokens: int
    price: ModelPrice


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

    def turn_cost(self, model: str, usage: Usage) -> float | None:
        """USD for one call's usage (prompt-length bands applied); None when unknown."""
        price = self.price_for(model)
        return None if price is None else price.turn_cost(usage)

    def highest(self) -> ModelPrice:
        """Every token kind at the highest price in the table: an upper bound for an unknown model."""
        prices = list(self.models.values()) or [FREE]
        top = [p.long_prompt.price if p.long_prompt is not None else p for p in prices] + prices
        i, o, w, r = (max(getattr(p, f) for p in top) for f in _FIELDS)
        return ModelPrice(i, o, w, r, cache_write_1h=max(p.write_1h for p in top))

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

    The file is read with the task file's limits (a regular file, at most 1 MiB, UTF-8, nested
    at most 40 levels, no duplicate keys). Raises ConfigProblems with every problem found, each
    as `FILE:LINE: field: problem`, when the file cannot be used.
    """
    from runner.problems import ConfigProblems
    from runner.yamlio import load_json, read_text

    if path is None and os.environ.get(PRICES_ENV):
        path = Path(os.environ[PRICES_ENV])
    if path is None:
        name = "runner/models/prices.json (built in)"
        text = resources.files("runner.models").joinpath("prices.json").read_text(encoding="utf-8")
    else:
        name = str(path)
        text = read_text(Path(path), "price file")
    if (table := _parsed.get((name, text))) is None:
        data, positions, problems = load_json(text, name)
        at = _At(name, positions, (), problems)
        table = _parse(at, data)
        if problems or table is None:
            raise ConfigProblems(problems or [at.problem("not a price table")])
        _parsed[(name, text)] = table
    return dataclasses.replace(table, models=dict(table.models))  # a run adds its platform's prices to its own


_parsed: dict[tuple[str, str], PriceTable] = {}
"""Parsed tables by (file, text): every run of a batch reads the file, but parses it once."""


@dataclass(frozen=True)
class _At:
    """A place in the price file, for `FILE:LINE: field: problem` (every problem is collected)."""

    source: str
    positions: Positions
    loc: tuple[int | str, ...]
    problems: list[Problem]

    def __truediv__(self, part: int | str) -> _At:
        return _At(self.source, self.positions, (*self.loc, part), self.problems)

    def problem(self, message: str) -> Problem:
        return Problem(self.source, self.positions.line(self.loc), format_loc(self.loc), message, self.loc)

    def add(self, message: str) -> None:
        self.problems.append(self.problem(message))


def _parse(at: _At, data: Any) -> PriceTable | None:
    if not isinstance(data, dict):
        at.add("expected a JSON object with date, source and models")
        return None
    for key in ("date", "source"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            (at / key).add("must be a non-empty string")
    models = data.get("models")
    if not isinstance(models, dict):
        (at / "models").add("must be an object of model id -> prices")
        return None
    table: dict[str, ModelPrice] = {}
    for model, entry in models.items():
        if (price := _price(at / "models" / model, entry, meta=True)) is not None:
            table[model] = price
    if at.problems:
        return None
    return PriceTable(date=data["date"], source=data["source"], models=table)


def _price(at: _At, entry: Any, *, meta: bool) -> ModelPrice | None:
    if not isinstance(entry, dict):
        at.add(f"expected an object with {', '.join(_FIELDS)}")
        return None
    before = len(at.problems)
    allowed = set(_FIELDS) | set(_OPTIONAL) | (set(_META) if meta else {"threshold_tokens"})
    for key in entry:
        if key not in allowed:
            (at / key).add("unknown field")
    values = [_number(at, entry, f) for f in _FIELDS]
    write_1h = _number(at, entry, "cache_write_1h") if "cache_write_1h" in entry else None
    band = None
    if meta and entry.get("long_prompt") is not None:
        raw = entry["long_prompt"]
        threshold = raw.get("threshold_tokens") if isinstance(raw, dict) else None
        if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold <= 0:
            (at / "long_prompt" / "threshold_tokens").add("must be a positive integer")
        elif (long_price := _price(at / "long_prompt", raw, meta=False)) is not None:
            band = LongPrompt(threshold, long_price)
    if len(at.problems) > before:
        return None
    return ModelPrice(values[0], values[1], values[2], values[3], cache_write_1h=write_1h, long_prompt=band,
                      retired=bool(entry.get("retired", False)))


def _number(at: _At, entry: dict[str, Any], field_name: str) -> float:
    value = entry.get(field_name)
    if field_name not in entry:
        (at / field_name).add("required field is missing (USD per million tokens)")
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        (at / field_name).add("must be a number (USD per million tokens)")
        return 0.0
    if not math.isfinite(value) or value < 0:
        (at / field_name).add(f"must be a finite number >= 0, got {value}")
        return 0.0
    return float(value)
