from __future__ import annotations

import json
from pathlib import Path

import pytest
import xmlschema

from runner.models.base import Usage
from runner.models.pricing import load_prices
from runner.reports.files import write_json_atomic, write_reports, write_text_atomic

from .helpers import make_result

SCHEMA = Path(__file__).parent.parent / "data" / "junit-10.xsd"


class Unserializable:
    pass


def test_atomic_json_write_keeps_old_file_when_serialization_fails_midway(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    write_json_atomic(path, {"status": "success"})
    before = path.read_text(encoding="utf-8")
    # json.dump writes the big string out before it reaches the object it cannot encode
    with pytest.raises(TypeError):
        write_json_atomic(path, {"big": "x" * 1_000_000, "bad": Unserializable()})
    assert path.read_text(encoding="utf-8") == before
    assert json.loads(before) == {"status": "success"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]  # no temp file left


def test_atomic_json_refuses_nan(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "c.json", {"cost": float("nan")})
    assert not (tmp_path / "c.json").exists()


def test_atomic_text_write_replaces_and_creates_dirs(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "summary.md"
    write_text_atomic(path, "one\n")
    write_text_atomic(path, "two\n")
    assert path.read_text(encoding="utf-8") == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["summary.md"]


def test_write_reports_writes_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    result = make_result(
        "failed", usage={"claude-sonnet-5-5": Usage(1000, 2000, 10_000, 50_000), "claude-new-9": Usage(1, 1)}
    )
    out = tmp_path / "astra-out"
    warnings = write_reports(out, result, load_prices())
    assert sorted(p.name for p in out.iterdir()) == ["cost.json", "junit.xml", "report.html", "result.json", "summary.md"]
    assert json.loads((out / "result.json").read_text(encoding="utf-8"))["status"] == "failed"
    cost = json.loads((out / "cost.json").read_text(encoding="utf-8"))
    assert cost["total_cost_usd"] is None
    assert cost["models"]["claude-sonnet-5-5"]["cost_usd"] == pytest.approx(0.052)
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(out / "junit.xml"))
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "Status: FAILED" in summary
    assert step.read_text(encoding="utf-8").startswith(summary)
    assert len(warnings) == 1 and "claude-new-9" in warnings[0]


def test_write_reports_keeps_going_when_one_report_fails(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "junit.xml").mkdir()  # os.replace cannot put a file over a directory
    warnings = write_reports(out, make_result("success"), load_prices())
    assert any("junit.xml" in w for w in warnings)
    assert (
        (out / "result.json").is_file() and (out / "cost.json").is_file() and (out / "summary.md").is_file()
    )
