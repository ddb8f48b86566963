"""Issue 12.9: every output a person reads (summary.md, $GITHUB_STEP_SUMMARY, the console) is
free of terminal escapes, control characters and bidi/zero-width characters, whatever the model
names its files or says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.redact_view import CONTROL_AND_BIDI, strip_hidden
from tests.security.helpers import attack, bash

HIDDEN = re.compile(f"[{CONTROL_AND_BIDI}]")
NAMES = ("printf x > \"$(printf 'evil\\033[31mred\\033]8;;x\\007link\\342\\200\\256gpj.exe\\r')\" && "
         "printf x > \"$(printf 'zero\\342\\200\\213width\\001\\010bs')\" && ls")


@pytest.mark.docker
def test_file_names_and_model_text_reach_no_reader_with_hidden_characters(tmp_path: Path) -> None:
    step = tmp_path / "step-summary.md"
    turns = [bash(NAMES), {"text": "done \x1b[2J\x1b[H\u202ereversed\u2066 \x07"}]
    proc, out = attack(tmp_path, turns, env={"GITHUB_STEP_SUMMARY": str(step)}, args=("-v",))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (out / "summary.md").read_text()
    assert "evil" in summary and "zero" in summary  # the files are listed...
    for name, text in {"summary.md": summary, "step summary": step.read_text(),
                       "stdout": proc.stdout, "stderr": proc.stderr}.items():
        assert not HIDDEN.search(text), (name, [c for c in text if HIDDEN.match(c)])  # ...without what hides


def test_strip_hidden_keeps_text() -> None:
    assert strip_hidden("a\tb\nc\x1b[1;31md\x1b]0;t\x07e\u202ef\u200bg\x00h") == "a\tb\ncdefgh"
    assert strip_hidden("naïve — ok ✓") == "naïve — ok ✓"
