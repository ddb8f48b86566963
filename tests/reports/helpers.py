"""Builders shared by the report tests."""

from __future__ import annotations

from typing import Any

from runner.models.base import Usage
from runner.result import FileChange, PatchStats, PermissionDenial, RunResult, VerifyResult

REASONS = {
    "success": "the agent finished and all 2 verify checks passed",
    "failed": "verify failed: unit-tests",
    "limit": "max_turns reached: 50 turns",
    "error": "Docker daemon not reachable at unix:///var/run/docker.sock",
    "interrupted": "interrupted by SIGTERM",
}
EXIT_CODES = {"success": 0, "failed": 1, "limit": 3, "error": 4, "interrupted": 143}


def make_result(status: str = "success", **overrides: Any) -> RunResult:
    values: dict[str, Any] = {
        "run_id": "r-20261120-abcdef",
        "task": "fix-empty-input",
        "model": "claude-sonnet-5-5",
        "status": status,
        "reason": REASONS[status],
        "exit_code": EXIT_CODES[status],
        "turns": 7,
        "tool_calls": 12,
        "duration_s": 83.5,
        "started_at": "2026-11-20T10:00:00Z",
        "verify": [
            VerifyResult("lint", True, 0, "all good\n", 1.25),
            VerifyResult(
                "unit-tests", status == "success", 0 if status == "success" else 1, "1 failed\n", 4.0
            ),
        ],
        "patch": PatchStats(
            2, 10, 3, (FileChange("src/interleave.py", 8, 3), FileChange("tests/test_interleave.py", 2, 0))
        ),
        "permission_denials": [PermissionDenial("bash", {"command": "git push"}, "bash(git push*)")],
        "usage": {"claude-sonnet-5-5": Usage(1000, 2000, 10_000, 50_000)},
        "cost_usd": 0.052,
        "error_kind": "sandbox" if status == "error" else None,
    }
    values.update(overrides)
    return RunResult(**values)
