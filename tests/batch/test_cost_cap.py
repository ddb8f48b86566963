"""--max-cost-usd with a real price: the real SDK against the fake Messages API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.batch.helpers import Workdir
from tests.fakes.messages_api import FakeMessagesAPI

MILLION_INPUT_TOKENS = {"text": "done", "usage": {"input_tokens": 1_000_000, "output_tokens": 0}}
"""claude-sonnet-5-5 at $2 per million input tokens: each task costs $2.00."""


def test_no_new_task_starts_once_the_batch_cost_is_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASTRA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    wd = Workdir(tmp_path)
    for name in ("a", "b", "c", "d"):
        wd.task(name, [])
        # the same task without the scripted model: the defaults' real model id applies
        path = tmp_path / "tasks" / f"{name}.yaml"
        path.write_text("\n".join(line for line in path.read_text().splitlines() if not line.startswith("model:")))
    wd.manifest({"defaults": {"sandbox": {"backend": "local"}, "model": "claude-sonnet-5-5"},
                 "tasks": ["tasks/*.yaml"]})

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        return dict(MILLION_INPUT_TOKENS)

    with FakeMessagesAPI(hook=answer, api_key="test") as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
        assert wd.batch("--max-cost-usd", "3") == 3
        assert len(api.requests) == 2
    results = wd.results()
    assert [results[n]["status"] for n in "abcd"] == ["success", "success", "skipped", "skipped"]
    assert results["a"]["cost_usd"] == pytest.approx(2.0)
    assert "--max-cost-usd $3 was reached ($4.0000 spent)" in results["c"]["reason"]
    assert results["c"]["exit_code"] == 3
    cost = json.loads((wd.out / "cost.json").read_text())
    assert cost["total_cost_usd"] == pytest.approx(4.0)
    assert cost["tasks"]["a"]["models"]["claude-sonnet-5-5"]["input_tokens"] == 1_000_000
    assert not (wd.out / "c").exists()
