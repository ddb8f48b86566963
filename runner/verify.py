"""The task's verify checks, run in the sandbox after the agent stops (SPEC §2 `verify`).

Each check gets `$ASTRA_JUNIT`, a path it may write a JUnit file to (collected and merged into
junit.xml), and its own timeout (`timeout`, else `limits.tool_timeout`): a check that hangs is
killed with its whole process group.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from runner.agent.events import Event, VerifyFinished
from runner.result import VerifyResult
from runner.sandbox import Sandbox
from runner.task import TaskSpec

JUNIT_LIMIT = 8 * 1024 * 1024
VERIFY_OUTPUT_LIMIT = 30_000


async def run_checks(
    spec: TaskSpec, sandbox: Sandbox, worktree: Path, emit: Callable[[Event], None]
) -> list[VerifyResult]:
    results = []
    for i, check in enumerate(spec.verify):
        junit_rel = f".astra/junit-{i}.xml"
        # The path as the check sees it: inside the container, or the worktree for `local`.
        local = spec.sandbox.backend == "local"
        junit_path = str(worktree / junit_rel) if local else f"{sandbox.workspace}/{junit_rel}"
        timeout = check.timeout or spec.limits.tool_timeout
        await sandbox.exec("mkdir -p .astra && rm -f " + junit_rel, timeout=30)
        started = time.monotonic()
        res = await sandbox.exec(check.run, timeout=timeout, env={"ASTRA_JUNIT": junit_path},
                                 output_limit=VERIFY_OUTPUT_LIMIT)
        junit = await sandbox.exec(f"test -s {junit_rel} && cat {junit_rel}", timeout=30, output_limit=JUNIT_LIMIT)
        result = VerifyResult(
            name=check.name, passed=res.ok, exit_code=res.exit_code,
            output=res.output + (f"\n[timed out after {timeout:g}s]" if res.timed_out else ""),
            duration_s=round(time.monotonic() - started, 3), timed_out=res.timed_out,
            junit_xml=junit.output if junit.ok and junit.output.strip() else None,
        )
        results.append(result)
        emit(VerifyFinished(check.name, result.passed, result.exit_code, result.duration_s, result.output[-2000:]))
    return results


def not_run(spec: TaskSpec, done: list[VerifyResult], why: str) -> list[VerifyResult]:
    """The checks a run never got to (wall clock, interrupt, error): reported, as not run."""
    names = {v.name for v in done}
    return [VerifyResult(c.name, passed=False, exit_code=None, output=f"not run: {why}", ran=False)
            for c in spec.verify if c.name not in names]
