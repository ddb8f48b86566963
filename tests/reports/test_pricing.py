from __future__ import annotations

import json
import os
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


_OK = '{"input": 1, "output": 2, "cache_write": 3, "cache_read": 1}'


@pytest.mark.parametrize(
    ("content", "problems"),
    [
        ("{not json", ["1: JSON syntax error: Expecting property name enclosed in double quotes (column 2)"]),
        ('["a"]', ["1: (top level): expected a JSON object with date, source and models"]),
        ('{"source": "s",\n "models": {}}', ["1: date: must be a non-empty string"]),
        ('{"date": "d", "source": "s"}', ["1: models: must be an object of model id -> prices"]),
        ('{"date": "d", "source": "s", "models": {\n"m": 3}}',
         ["2: models.m: expected an object with input, output, cache_write, cache_read"]),
        ('{"date": "d", "source": "s", "models": {\n"m": {"input": 1, "output": 2, "cache_write": 3}}}',
         ["2: models.m.cache_read: required field is missing (USD per million tokens)"]),  # at its entry
        ('{"date": "d", "source": "s", "models": {\n"m": {"input": -1, "output": 2, "cache_write": 3,\n'
         '"cache_read": "1"}}}',
         ["2: models.m.input: must be a finite number >= 0, got -1",
          "3: models.m.cache_read: must be a number (USD per million tokens)"]),
        ('{"date": "d", "source": "s", "models": {\n"m": {"input": 1, "output": 2, "cache_write": 3, "cache_read": 1,\n'
         '"cache_1h": 2}}}', ["3: models.m.cache_1h: unknown field"]),
        ('{"date": "d", "source": "s", "models": {\n"m": ' + _OK + ',\n"m": ' + _OK + '}}',
         ["3: models.m: duplicate key (first at line 2): JSON would keep only the last; merge them into one"]),
        ('{"date": "d", "source": "s", "models": {"m": {"input": NaN, "output": 2, "cache_write": 3, '
         '"cache_read": 1}}}', ["1: models.m.input: NaN is not a JSON number",
                                "1: models.m.input: must be a number (USD per million tokens)"]),
        ("[" * 50 + "]" * 50, ["1: (top level): nested more than 40 levels deep"]),
    ],
)
def test_bad_override_file_gives_every_problem_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, problems: list[str]
) -> None:
    path = tmp_path / "bad-prices.json"
    path.write_text(content, encoding="utf-8")
    monkeypatch.setenv("ASTRA_PRICES_FILE", str(path))
    with pytest.raises(ConfigError) as info:
        load_prices()
    assert str(info.value).splitlines() == [f"{path}:{p}" for p in problems]
    assert info.value.exit_code == 2


def test_a_price_file_is_read_with_limits(tmp_path: Path) -> None:
    fifo = tmp_path / "prices.json"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="the price file is not a regular file"):
        load_prices(fifo)  # would block forever in open()
    big = tmp_path / "big.json"
    big.write_text('{"date": "d", "source": "s", "models": {}, "pad": "' + "x" * 2_000_000 + '"}')
    with pytest.raises(ConfigError, match="the price file is larger than 1024 KiB"):
        load_prices(big)


def test_missing_override_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.json"):
        load_prices(tmp_path / "missing.json")
