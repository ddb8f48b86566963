"""Batch bookkeeping as a new user would try it: --resume keyed on the task's content,
--retry-failed, a cost cap that holds for running tasks, JUnit rows per task, matrix names."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.batch.manifest import _repo_labels
from tests.batch.helpers import LOOP, LS, Workdir
from tests.fakes.messages_api import FakeMessagesAPI


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def _run_ids(wd: Workdir) -> dict[str, str]:
    return {name: r["run_id"] for name, r in wd.results().items()}


def test_resume_reruns_a_task_whose_file_or_defaults_changed(tmp_path: Path) -> None:
    wd = Workdir(tmp_path)
    for name in ("a", "b"):
        wd.task(name, LS)
    wd.manifest()
    assert wd.batch() == 0
    first = _run_ids(wd)
    assert wd.batch("--resume") == 0
    assert _run_ids(wd) == first, "nothing changed: nothing runs again"

    wd.task("b", LS, prompt="do b, differently")  # the task file was edited
    assert wd.batch("--resume") == 0
    second = _run_ids(wd)
    assert second["a"] == first["a"] and second["b"] != first["b"]

    wd.manifest({"defaults": {"sandbox": {"backend": "local"}, "limits": {"max_turns": 7}}, "tasks": ["tasks/*.yaml"]})
    assert wd.batch("--resume") == 0
    third = _run_ids(wd)
    assert third["a"] != second["a"] and third["b"] != second["b"], "the defaults are part of every task"


def test_retry_failed_reruns_failed_and_limit_tasks_only(tmp_path: Path) -> None:
    wd = Workdir(tmp_path)
    wd.task("ok", LS)
    wd.task("bad", LS, verify=[{"name": "v", "run": "false"}])
    wd.task("loop", LOOP, limits={"max_turns": 2})
    wd.manifest()
    assert wd.batch() == 3
    first = _run_ids(wd)
    assert wd.batch("--resume") == 3
    assert _run_ids(wd) == first, "--resume keeps every final result"
    assert wd.batch("--retry-failed") == 3
    again = _run_ids(wd)
    assert again["ok"] == first["ok"]
    assert again["bad"] != first["bad"] and again["loop"] != first["loop"]


TURN_COST = {"input_tokens": 50_000, "output_tokens": 0}
"""claude-sonnet-5-5 at $2 per million input tokens: $0.10 a turn."""


def test_the_batch_cost_cap_holds_for_running_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--max-cost-usd 0.2 spent $0.30: only starts were checked; running tasks went on spending."""
    wd = Workdir(tmp_path)
    for name in "abcd":
        wd.task(name, [])
        path = tmp_path / "tasks" / f"{name}.yaml"
        path.write_text("\n".join(line for line in path.read_text().splitlines() if not line.startswith("model:")))
    wd.manifest({"defaults": {"sandbox": {"backend": "local"}, "model": "claude-sonnet-5-5",
                              "limits": {"max_turns": 10}}, "tasks": ["tasks/*.yaml"]})

    def answer(body: dict[str, Any]) -> dict[str, Any]:  # every turn asks for one more ls
        return {"tool_calls": [{"name": "ls", "input": {}}], "usage": dict(TURN_COST)}

    cap = 0.25
    with FakeMessagesAPI(hook=answer, api_key="test", latency_ms=50) as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
        assert wd.batch("-j", "4", "--max-cost-usd", str(cap)) == 3
        calls = len(api.requests)
    results = wd.results()
    total = json.loads((wd.out / "cost.json").read_text())["total_cost_usd"]
    assert total <= cap + 0.10 + 1e-9, f"spent ${total} against a ${cap} cap ({calls} calls)"
    assert calls == round(total / 0.10)
    stopped = [r for r in results.values() if r["status"] == "limit"]
    assert stopped and all("--max-cost-usd $0.25 was reached" in r["reason"] for r in stopped)


def test_batch_junit_classnames_carry_the_task_name(tmp_path: Path) -> None:
    wd = Workdir(tmp_path)
    junit = ("<testsuite name='t' tests='1'><testcase classname='tests.test_calc' name='test_one'/></testsuite>")
    check = {"name": "unit", "run": f"printf \"%s\" \"{junit}\" > $ASTRA_JUNIT"}
    for name in ("a", "b"):
        wd.task(name, LS, verify=[check])
    wd.manifest()
    assert wd.batch() == 0
    root = ET.parse(wd.out / "junit.xml").getroot()
    rows = {(c.get("classname"), c.get("name")) for c in root.iter("testcase")}
    assert ("a.tests.test_calc", "test_one") in rows and ("b.tests.test_calc", "test_one") in rows
    assert ("astra.a", "agent") in rows and ("astra.b.verify", "unit") in rows


def test_matrix_repos_of_one_name_are_numbered_among_themselves() -> None:
    assert _repo_labels(["../svc-b", "x/svc", "y/svc.git"]) == ["svc-b", "svc-1", "svc-2"]  # was svc-2, svc-3
    assert _repo_labels(["a/svc", "svc-1", "b/svc"]) == ["svc-2", "svc-1", "svc-3"]  # never two svc-1


def test_resume_of_an_old_result_without_a_digest_runs_again(tmp_path: Path) -> None:
    wd = Workdir(tmp_path)
    wd.task("a", LS)
    wd.manifest()
    assert wd.batch() == 0
    path = wd.out / "a" / "result.json"
    data = json.loads(path.read_text())
    data.pop("task_digest")
    path.write_text(json.dumps(data))
    first = data["run_id"]
    assert wd.batch("--resume") == 0
    assert _run_ids(wd)["a"] != first
    assert yaml.safe_load((tmp_path / "tasks" / "a.yaml").read_text())["name"] == "a"
