from __future__ import annotations

from pathlib import Path

import pytest

from runner.reports.summary import append_step_summary, compact_summary, summary_md
from runner.result import FileChange, PatchStats

from .helpers import REASONS, make_result

WORDS = {
    "success": "SUCCESS",
    "failed": "FAILED",
    "limit": "STOPPED BY A LIMIT",
    "error": "INFRASTRUCTURE ERROR",
    "interrupted": "INTERRUPTED",
}


@pytest.mark.parametrize("status", list(WORDS))
def test_summary_for_each_status_starts_with_status_and_reason(status: str) -> None:
    md = summary_md(make_result(status))
    head = md.splitlines()[:6]
    assert any(f"Status: {WORDS[status]}" in line for line in head), md
    assert any(REASONS[status] in line for line in head), md
    status_at = md.index("Status:")
    assert status_at < md.index("Turns") < md.index("Changed files") < md.index("### Verify")
    assert "| Turns | 7 |" in md
    assert "| Cost | $0.0520 |" in md
    assert "| `src/interleave.py` | 8 | 3 |" in md
    assert "| unit-tests |" in md and "| lint | passed | 0 |" in md
    assert md.isascii() or "…" in md  # plain words, no emoji


@pytest.mark.parametrize("status", list(WORDS))
def test_compact_summary_for_each_status(status: str) -> None:
    text = compact_summary(make_result(status))
    lines = text.splitlines()
    assert 2 <= len(lines) <= 5
    assert WORDS[status] in lines[0] and REASONS[status] in lines[0]
    assert "turns 7" in text and "cost $0.0520" in text and "+10 -3" in text


def test_unknown_cost_and_no_changes_and_no_checks() -> None:
    result = make_result("limit", cost_usd=None, patch=PatchStats(), verify=[])
    md = summary_md(result)
    assert "| Cost | unknown |" in md
    assert "No files changed." in md
    assert "No checks ran." in md
    assert "cost unknown" in compact_summary(result)


def test_error_summary_names_the_error_kind() -> None:
    assert "| Error kind | sandbox |" in summary_md(make_result("error"))


def test_table_cells_cannot_break_the_table() -> None:
    patch = PatchStats(1, 1, 0, (FileChange("a|b`c.py", 1, 0), FileChange("img.png", 0, 0, binary=True)))
    md = summary_md(make_result("success", patch=patch, reason="line one\nline | two"))
    assert "| a\\|b\\`c.py | 1 | 0 |" in md
    assert "| `img.png` | bin | bin |" in md
    assert "Reason: line one line | two" in md


def test_append_step_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert append_step_summary("# nothing") is False
    target = tmp_path / "step-summary.md"
    target.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    assert append_step_summary("# one") is True
    assert append_step_summary("# two\n") is True
    assert target.read_text(encoding="utf-8") == "earlier step\n# one\n\n# two\n\n"


def test_append_step_summary_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path))  # a directory: cannot be appended to
    assert append_step_summary("# x") is False
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "missing-dir" / "f.md"))
    assert append_step_summary("# x") is False
