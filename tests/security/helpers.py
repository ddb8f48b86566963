"""Attack scenarios through the real CLI: a scripted hostile model, real git, a real sandbox.

Each test in this package is one class of attack from issue 12; docs/security.md lists them next
to the guarantee each one holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import make_repo

FILES = {"calc.py": "def mean(xs):\n    return sum(xs) / len(xs)\n", "README.md": "# calc\n"}


def bash(command: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "bash", "input": {"command": command}}]}


def attack(tmp_path: Path, turns: list[dict[str, Any]], *, backend: str = "docker",
           files: dict[str, str | bytes] | None = None, env: dict[str, str] | None = None,
           args: tuple[str, ...] = (), timeout: float = 240, **task: Any) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run a task whose model plays `turns` (then ends its turn); returns the CLI's process and OUT."""
    make_repo(tmp_path / "repo", dict(FILES if files is None else files))
    (tmp_path / "model.yaml").write_text(yaml.safe_dump([*turns, {"text": "done"}]))
    spec: dict[str, Any] = {
        "name": "attack", "repo": "repo", "prompt": "do it", "model": "scripted:model.yaml",
        "sandbox": {"backend": backend}, "outputs": {"dir": str(tmp_path / "out")},
        "policy": {"default": "allow"},
        "expect_changes": False,  # an attack that is held changes nothing; each test checks the outcome it expects
    }
    for key, value in task.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(spec))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "ASTRA_", "GITHUB_"))}
    full_env.update({"ASTRA_CACHE": str(tmp_path / "cache"), **(env or {})})
    proc = subprocess.run([sys.executable, "-m", "runner", "run", str(tmp_path / "task.yaml"), *args],
                          capture_output=True, text=True, env=full_env, cwd=tmp_path, timeout=timeout)
    return proc, tmp_path / "out"


def result(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "result.json").read_text())
    return data


def tool_outputs(out: Path) -> list[str]:
    found = []
    for line in (out / "trajectory.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "tool_result":
            found.append(json.dumps(event))
    return found


def every_output(out: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(out.iterdir()) if p.is_file())
