from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.errors import ConfigError
from runner.models.base import Usage
from runner.models.pricing import FREE, ModelPrice, PriceTable, load_prices

SONNET_55 = ModelPrice(input=2.0, output=10.0, cache_write=2.5, cache_read=0.1, cache_write_1h=4.0)


def write_prices(path: Path, models: dict[str, object], **extra: object) -> Path:
    data = {"date": "2026-11-01", "source": "test", "models": models, **extra}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_builtin_table_is_dated_and_sourced() -> None:
    table = load_prices()
    assert table.date and table.source.startswith("https://")
    assert table.price_for("claude-sonnet-5-5") == SONNET_55
    assert table.price_for("claude-opus-4-5") == ModelPrice(5.0, 25.0, 6.25, 0.5, cache_write_1h=10.0)


def test_builtin_cache_prices_follow_the_published_multipliers() -> None:
    for model, price in load_prices().models.items():
        assert price.cache_write == pytest.approx(1.25 * price.input), model  # 5-minute writes
        assert price.write_1h == pytest.approx(2 * price.input), model  # 1-hour writes
        assert 0 < price.cache_read <= 0.1 * price.input + 1e-9, model
        assert price.output > price.input, model


def test_date_suffixed_alias_uses_its_base_entry() -> None:
    table = load_prices()
    assert table.price_for("claude-haiku-4-5-20251001") == table.price_for("claude-haiku-4-5")
    assert table.price_for("claude-sonnet-4-5-20250929") == table.price_for("claude-sonnet-4-5")
    assert table.entry_for("claude-opus-4-5-20251101") == "claude-opus-4-5"


def test_unknown_model_is_unknown_never_zero() -> None:
    table = load_prices()
    usage = Usage(100, 100, 0, 0)
    # Was: claude-haiku-5-5 left out (tiered by prompt length); it is now priced call by call.
    assert table.price_for("claude-mythos-5-2") is None  # no published price: left out
    assert table.cost("claude-imaginary-9", usage) is None
    assert table.total({"claude-sonnet-5-5": usage, "claude-imaginary-9": usage}) is None
    assert table.total({"claude-sonnet-5-5": usage}) == pytest.approx((100 * 2 + 100 * 10) / 1e6)


def test_scripted_models_are_free() -> None:
    table = load_prices()
    assert table.price_for("scripted:examples/demo.yaml") == FREE
    assert table.cost("scripted:x.yaml", Usage(10**6, 10**6, 10**6, 10**6)) == 0.0


def test_cost_counts_every_kind_of_token() -> None:
    table = PriceTable("d", "s", {"m": SONNET_55})
    cost = table.cost("m", Usage(1_000_000, 1_000_000, 1_000_000, 1_000_000))
    assert cost == pytest.approx(2.0 + 10.0 + 2.5 + 0.1)


def test_env_override_replaces_the_builtin_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_prices(
        tmp_path / "p.json", {"my-model": {"input": 1, "output": 2, "cache_write": 3, "cache_read": 4}}
    )
    monkeypatch.setenv("ASTRA_PRICES_FILE", str(path))
    table = load_prices()
    assert table.date == "2026-11-01"
    assert table.price_for("my-model") == ModelPrice(1.0, 2.0, 3.0, 4.0)
    assert table.price_for("claude-sonnet-5-5") is None  # replaced, not merged


def test_explicit_path_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRA_PRICES_FILE", str(tmp_path / "missing.json"))
    path = write_prices(tmp_path / "p.json", {})
    assert load_prices(path).models == {}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "expected a JSON object"),
        ('{"source": "s", "models": {}}', "'date'"),
        ('{"date": "d", "source": "s"}', "'models'"),
        ('{"date": "d", "source": "s", "models": {"m": 3}}', "models.m"),
        (
            '{"date": "d", "source": "s", "models": {"m": {"input": 1, "output": 2, "cache_write": 3}}}',
            "models.m.cache_read",
        ),
        (
            '{"date": "d", "source": "s", "models": '
            '{"m": {"input": -1, "output": 2, "cache_write": 3, "cache_read": 1}}}',
            "models.m.input",
        ),
        (
            '{"date": "d", "source": "s", "models": '
            '{"m": {"input": "1", "output": 2, "cache_write": 3, "cache_read": 1}}}',
            "must be a number",
        ),
        (
            '{"date": "d", "source": "s", "models": '
            '{"m": {"input": 1, "output": 2, "cache_write": 3, "cache_read": 1, "cache_1h": 2}}}',
            "unknown field",
        ),
    ],
)
def test_bad_override_file_is_a_config_error_naming_file_and_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, problem: str
) -> None:
    path = tmp_path / "bad-prices.json"
    path.write_text(content, encoding="utf-8")
    monkeypatch.setenv("ASTRA_PRICES_FILE", str(path))
    with pytest.raises(ConfigError) as info:
        load_prices()
    assert str(path) in str(info.value)
    assert problem in str(info.value)
    assert info.value.exit_code == 2


def test_missing_override_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.json"):
        load_prices(tmp_path / "missing.json")
