from __future__ import annotations

import json

import pytest

from runner.models.base import Usage
from runner.models.pricing import ModelPrice, PriceTable, load_prices
from runner.reports.cost import cost_json

from .helpers import make_result

TABLE = PriceTable(
    date="2026-11-01",
    source="test table",
    models={
        "claude-sonnet-5-5": ModelPrice(2.0, 10.0, 2.5, 0.1),
        "claude-opus-4-5": ModelPrice(5.0, 25.0, 6.25, 0.5),
    },
)


def test_two_models_with_cache_writes_and_reads_match_hand_computation() -> None:
    result = make_result(
        usage={
            "claude-sonnet-5-5": Usage(1000, 2000, 10_000, 50_000),
            "claude-opus-4-5-20251101": Usage(500, 100, 2000, 100_000),
        }
    )
    data = cost_json(result, TABLE)
    # sonnet: 1000*2 + 2000*10 + 10000*2.5 + 50000*0.1 = 52000 USD per 1e6 tokens
    sonnet = data["models"]["claude-sonnet-5-5"]
    assert sonnet["cost_usd"] == pytest.approx(0.052)
    assert sonnet["input_tokens"] == 1000
    assert sonnet["output_tokens"] == 2000
    assert sonnet["cache_creation_input_tokens"] == 10_000
    assert sonnet["cache_read_input_tokens"] == 50_000
    # opus (dated alias): 500*5 + 100*25 + 2000*6.25 + 100000*0.5 = 67500
    opus = data["models"]["claude-opus-4-5-20251101"]
    assert opus["cost_usd"] == pytest.approx(0.0675)
    assert opus["priced_as"] == "claude-opus-4-5"
    assert opus["price"] == {"input": 5.0, "output": 25.0, "cache_write": 6.25, "cache_read": 0.5,
                             "cache_write_1h": 10.0}  # 1-hour writes: 2x input unless the file says
    assert data["total_cost_usd"] == pytest.approx(0.1195)
    assert data["prices"]["date"] == "2026-11-01"
    assert data["prices"]["source"] == "test table"
    assert data["warnings"] == []
    json.dumps(data, allow_nan=False)


def test_builtin_prices_for_sonnet_5_5() -> None:
    data = cost_json(
        make_result(usage={"claude-sonnet-5-5": Usage(1000, 2000, 10_000, 50_000)}), load_prices()
    )
    assert data["total_cost_usd"] == pytest.approx(0.052)


def test_unknown_model_gives_null_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    result = make_result(
        usage={"claude-sonnet-5-5": Usage(1000, 0, 0, 0), "claude-mystery-1": Usage(10, 10, 0, 0)}
    )
    data = cost_json(result, TABLE)
    assert data["models"]["claude-mystery-1"]["cost_usd"] is None
    assert data["models"]["claude-mystery-1"]["price"] is None
    assert data["models"]["claude-sonnet-5-5"]["cost_usd"] == pytest.approx(0.002)
    assert data["total_cost_usd"] is None
    assert len(data["warnings"]) == 1 and "claude-mystery-1" in data["warnings"][0]
    assert "claude-mystery-1" in caplog.text


def test_scripted_model_costs_zero_and_no_usage_costs_zero() -> None:
    data = cost_json(
        make_result(model="scripted:demo.yaml", usage={"scripted:demo.yaml": Usage(5, 5)}), TABLE
    )
    assert data["models"]["scripted:demo.yaml"]["cost_usd"] == 0.0
    assert data["total_cost_usd"] == 0.0
    assert cost_json(make_result(usage={}), TABLE)["total_cost_usd"] == 0.0
