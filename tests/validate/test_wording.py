"""Wording a person reads (issue 17.6): no "1 turns", no limit said twice, no "none permission"."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.agent.guards import Guards
from runner.errors import LimitExceeded
from runner.github.gate import _access


def test_one_turn_is_one_turn() -> None:
    guards = Guards(1, 5.0, 5)
    guards.turns = 1
    with pytest.raises(LimitExceeded) as info:
        guards.before_model_call()
    assert str(info.value) == "max_turns reached: 1 of 1 turn used"


@pytest.mark.parametrize(("permission", "role", "said"), [
    ("none", "none", "no access"), ("read", "read", "read access"), ("read", "triage", "read access (role triage)"),
])
def test_access_is_said_as_a_person_would(permission: str, role: str, said: str) -> None:
    assert _access(permission, role) == said


def test_merge_says_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from runner.batch.commands import _print_total

    _print_total([], 0, tmp_path, "merge")
    assert capsys.readouterr().out.startswith("astra-run merge: 0 task(s)")
