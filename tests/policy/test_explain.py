"""`astra-run policy TASK.yaml -- COMMAND...` (SPEC §1): the rule per command, the verdict, exit 0/1/2."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cli import main
from runner.policy import Policy
from runner.task import PolicySpec

TASK = """\
name: t
prompt: x
policy:
  default: deny
  allow: ["bash(python -m pytest*)", "bash(ls*)"]
  deny: ["bash(git push*)", "write(.github/workflows/**)"]
"""


@pytest.fixture
def task(tmp_path: Path) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(TASK)
    return path


def test_allowed_line_lists_each_command_and_exits_0(task: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", str(task), "--", "cd tests && python -m pytest -q | ls"]) == 0
    out = capsys.readouterr().out
    assert "cd tests" in out and "no rule needed" in out
    assert "rule bash(python -m pytest*)" in out and "rule bash(ls*)" in out
    assert out.rstrip().endswith("verdict: allowed (first rule: bash(python -m pytest*))")


def test_denied_line_prints_the_words_the_model_gets(task: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", str(task), "--", "git", "--shallow-file", "/dev/null", "push"]) == 1
    out = capsys.readouterr().out
    message = Policy.from_spec(PolicySpec(allow=["bash(python -m pytest*)", "bash(ls*)"],
                                          deny=["bash(git push*)"])).check(
        "bash", {"command": "git --shallow-file /dev/null push"}).message  # type: ignore[union-attr]
    assert f"verdict: denied: {message}" in out
    assert "rule bash(git push*)" in out


def test_writes_and_unknowns_are_shown(task: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", str(task), "--", "ls > .github/workflows/$N; eval ls"]) == 1
    out = capsys.readouterr().out
    assert "(write) .github/workflows/$N" in out and "rule write(.github/workflows/**)" in out
    assert "cannot tell what" in out


def test_several_words_are_quoted_back(task: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", str(task), "--", "ls", "a b; git push"]) == 0  # one argument: not a separator
    assert "command: ls 'a b; git push'" in capsys.readouterr().out


def test_bad_task_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('name: t\nprompt: x\npolicy: {allow: ["bash("]}\n')
    assert main(["policy", str(bad), "--", "ls"]) == 2
    assert "policy.allow[0]" in capsys.readouterr().err
    assert main(["policy", str(tmp_path / "missing.yaml"), "--", "ls"]) == 2
