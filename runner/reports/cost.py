"""cost.json (SPEC §4): tokens and USD per model, the total, and the prices used with their date.

A model with no known price gets `cost_usd: null` and makes `total_cost_usd` null: unknown is
never reported as 0. Costs are the run's own, priced call by call (compaction iterations
included, prompt-length bands applied); the summed usage is priced only when a result has none.
Each model without a price also gets a line in the file's `warnings` list, which
`write_reports` passes on to the caller (and which is logged here).
"""

from __future__ import annotations

import logging
from typing import Any

from runner.models.pricing import SCRIPTED_PREFIX, PriceTable
from runner.result import RunResult

log = logging.getLogger(__name__)

COST_DECIMALS = 6


def _usd(value: float | None) -> float | None:
    return None if value is None else round(value, COST_DECIMALS)


def cost_json(result: RunResult, prices: PriceTable) -> dict[str, Any]:
    """The content of cost.json. Unknown prices are listed under `warnings`."""
    models: dict[str, Any] = {}
    warnings: list[str] = []
    for model in sorted(result.usage):
        usage = result.usage[model]
        price = prices.price_for(model)
        cost = result.cost_by_model[model] if model in result.cost_by_model else prices.cost(model, usage)
        entry: dict[str, Any] = dict(usage.as_dict())
        entry["cost_usd"] = _usd(cost)
        if price is None:
            entry["price"] = None
            warnings.append(
                f"no price for model '{model}' in the price table of {prices.date}: its cost is unknown"
                " (set ASTRA_PRICES_FILE to a price file that lists it)"
            )
        else:
            entry["price"] = price.as_dict()
            scripted = model.startswith(SCRIPTED_PREFIX)
            entry["priced_as"] = "scripted (free)" if scripted else prices.entry_for(model)
        models[model] = entry
    for warning in warnings:
        log.warning("%s", warning)
    return {
        "task": result.task,
        "run_id": result.run_id,
        "models": models,
        "total_cost_usd": _usd(_total(result, prices)),
        "prices": {
            "date": prices.date,
            "source": prices.source,
            "unit": "USD per million tokens",
            "cache_write": "5-minute ephemeral cache write",
            "cache_write_1h": "1-hour cache write (cache_creation_1h_input_tokens)",
        },
        "warnings": warnings,
    }


def _total(result: RunResult, prices: PriceTable) -> float | None:
    if not result.cost_by_model:
        return prices.total(result.usage)
    values = [result.cost_by_model.get(m) if m in result.cost_by_model else prices.cost(m, u)
              for m, u in result.usage.items()]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)
