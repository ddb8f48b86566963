"""Building batches of scripted tasks on a real git repository, and running them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from runner.cli import main
from tests.conftest import make_repo

OUTPUT_FILES = {"result.json", "patch.diff", "junit.xml", "cost.json", "summary.md", "trajectory.jsonl"}
AGGREGATES = {"junit.xml", "cost.json", "summary.md", "results.jsonl"}

LS: list[dict[str, Any]] = [{"tool_calls": [{"name": "ls", "input": {}}]}, {"text": "done"}]
EDIT: list[dict[str, Any]] = [
    {"tool_calls": [{"name": "write", "input": {"path": "NOTES.md", "content": "hello\n"}}]},
    {"text": "wrote NOTES.md"},
]
CRASH: list[dict[str, Any]] = [{"tool_calls": [{"name": "bash", "input": {"command": "kill -9 $PPID"}}]}, {"text": "unreachable"}]
"""A real sandbox failure: the command kills the local sandbox's helper process."""
LOOP: list[dict[str, Any]] = [{"tool_calls": [{"name": "ls", "input": {}}]}] * 5


class Workdir:
    """tmp_path/repo (a git repo), tasks/*.yaml with models/*.yaml, manifest.yaml, out/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repo = make_repo(root / "repo", {"calc.py": "x = 1\n"})
        (root / "tasks").mkdir()
        (root / "models").mkdir()
        self.out = root / "out"

    def task(self, name: str, turns: list[dict[str, Any]], **extra: Any) -> Path:
        (self.root / "models" / f"{name}.yaml").write_text(yaml.safe_dump(turns))
        spec = {"name": name, "repo": "../repo", "prompt": f"do {name}", "model": f"scripted:../models/{name}.yaml",
                "expect_changes": False, **extra}  # most test tasks change nothing by design
        path = self.root / "tasks" / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    def manifest(self, body: dict[str, Any] | None = None, name: str = "manifest.yaml") -> Path:
        body = body or {"defaults": {"sandbox": {"backend": "local"}}, "tasks": ["tasks/*.yaml"]}
        path = self.root / name
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        return path

    def batch(self, *args: str, out: Path | None = None, manifest: Path | None = None) -> int:
        return main(["batch", str(manifest or self.root / "manifest.yaml"), "--out", str(out or self.out), *args])

    def results(self, out: Path | None = None) -> dict[str, dict[str, Any]]:
        lines = ((out or self.out) / "results.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        names = [r["task"] for r in records]
        assert names == sorted(names), "results.jsonl is in canonical (name) order"
        return {r["task"]: r for r in records}


def normalized(record: dict[str, Any]) -> dict[str, Any]:
    """A result line without what differs between two runs of the same task."""
    return {k: v for k, v in record.items() if k not in ("run_id", "duration_s", "started_at")}
