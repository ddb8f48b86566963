"""The policy judges the path the model names; reads through a symlink are re-checked on the real path."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import make_repo, sh_git
from tests.core.test_run_e2e import BUGGY, TEST, astra, events


def test_a_symlink_does_not_read_past_the_policy(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"calc.py": BUGGY, "test_calc.py": TEST, "secret/key": "TOPSECRET\n"})
    (repo / "docs").mkdir()
    (repo / "docs" / "k").symlink_to("../secret/key")
    sh_git(repo, "add", "-A")
    sh_git(repo, "commit", "-qm", "link")
    turns = [{"tool_calls": [{"name": "read", "input": {"path": "docs/k"}},
                             {"name": "grep", "input": {"pattern": "TOP", "path": "docs/k"}},
                             {"name": "grep", "input": {"pattern": "TOP"}},
                             {"name": "read", "input": {"path": "calc.py"}}]},
             {"text": "done"}]
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(turns))
    spec = {"name": "e2e", "repo": "repo", "prompt": "p", "model": "scripted:model.yaml",
            "sandbox": {"backend": "local"}, "outputs": {"dir": str(tmp_path / "out")}, "expect_changes": False,
            "policy": {"default": "allow", "deny": ["read(secret/**)", "grep(secret/**)"]}}
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(spec))
    proc = astra("run", str(tmp_path / "task.yaml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outputs = [e["output"] for e in events(tmp_path / "out") if e["type"] == "tool_result"]
    assert "TOPSECRET" not in "\n".join(outputs)
    assert "permission denied: docs/k leads to secret/key" in outputs[0]
    assert outputs[1].startswith("[no matches]") and outputs[2].startswith("[no matches]")
    assert "def mean" in outputs[3]
