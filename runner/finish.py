"""The finish phase of a run: the patch, the outcome, every output, the cleanup.

Four rules, each closing a class of faults:

1. **It runs to its end.** `run.py` awaits it with `deadline.to_the_end`: a signal (or a batch
   cancelling its tasks) that comes meanwhile is remembered, never obeyed half-way; the signal
   decides the exit code once the outputs are written and the cleanup is done.
2. **No step stops another.** The patch, the reports and each cleanup step are guarded one by
   one: whatever one raises - a full disk, a RecursionError on a tree the model made, a Docker
   daemon that does not answer - is recorded, and the next step runs.
3. **Nothing false, nothing lost.** An output that could not be made (the patch, a report, the
   trajectory) makes the run an `error` (exit 4) whose reason says which and why. When the
   agent's work is not safely in patch.diff, the worktree is kept and its path said. A
   result.json that could not be brought up to date is removed rather than left saying
   something else.
4. **Bounded.** The phase ends within FINISH_GRACE_S of its start whatever hangs: each step has
   a limit of its own (PAUSE_LIMIT_S, CLEANUP_LIMIT_S, the patch's), and Docker calls run in
   threads nobody waits for past their limit (runner/deadline.py). `duration_s` is measured
   at the very end and result.json rewritten with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from runner import resume as resume_state
from runner.agent.events import Event, Note, RunFinished
from runner.agent.loop import AgentState
from runner.deadline import blocking
from runner.errors import AstraError, InfraError
from runner.outcome import record_output_failures, redact_result, set_outcome
from runner.patch import PATCH_TIMEOUT_S, Patch, compute_patch
from runner.reports.files import write_bytes_atomic, write_json_atomic, write_reports
from runner.result import last_words
from runner.verify import not_run
from runner.walk import walk

if TYPE_CHECKING:
    from runner.run import RunContext

EmitFn = Callable[[Event], None]

FINISH_GRACE_S = 360.0
"""The most the finish phase takes, from its start (after the wall clock, a signal or the end)."""
CLEANUP_RESERVE_S = 60.0
"""Kept back from the patch's share of FINISH_GRACE_S for the reports and the cleanup."""
PAUSE_LIMIT_S = 10.0
"""Pausing (or resuming) the sandbox around the patch: a daemon that takes longer is not waited for."""
CLEANUP_LIMIT_S = 30.0
"""Each cleanup step (MCP servers, sandbox, model client, worktree)."""


class PatchError(InfraError):
    """The patch could not be computed or written (the run is an error; the worktree is kept)."""


class OutputError(InfraError):
    """An output file could not be written (a full disk): the run is an error."""


def trajectory_failure(ctx: RunContext) -> str | None:
    error = ctx.trajectory.error if ctx.trajectory is not None else None
    return None if error is None else f"could not write trajectory.jsonl: {describe(error)}"


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Clock:
    def __init__(self, limit_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.end = self._loop.time() + limit_s

    def left(self, cap: float) -> float:
        return max(0.1, min(cap, self.end - self._loop.time()))


async def write_patch(ctx: RunContext, emit: EmitFn, *, time_limit_s: float = PATCH_TIMEOUT_S) -> None:
    """patch.diff from the worktree as it is now, once (the sandbox paused meanwhile).

    Raises PatchError when the patch cannot be computed or written, and remembers why in
    `ctx.patch_error` so the finish phase does not try again. A cancellation is not a failure:
    the patch is then taken again by the finish phase.
    """
    if ctx.patch_written or ctx.patch_error is not None or ctx.workspace is None:
        return
    try:
        patch = await _compute(ctx, emit, time_limit_s)
    except Exception as exc:  # a git failure, a full cache, a RecursionError: never an empty "success"
        ctx.patch_error = f"the patch could not be computed: {describe(exc)}"
        raise PatchError(ctx.patch_error) from None
    try:
        # Written (and fsynced) off the event loop: concurrent runs of a batch keep going.
        await asyncio.to_thread(write_bytes_atomic, ctx.out_dir / "patch.diff",
                                ctx.redactor.known_values_bytes(patch.data))
    except Exception as exc:
        ctx.patch_error = f"could not write patch.diff: {describe(exc)}"
        raise PatchError(ctx.patch_error) from None
    ctx.patch_written = True
    ctx.result.patch = patch.stats
    ctx.result.patch_excluded = [f"{path} ({why})" for path, why in patch.excluded]
    for path, why in patch.excluded:
        emit(Note(f"left out of the patch: {path} ({why})", level="warning"))


async def _compute(ctx: RunContext, emit: EmitFn, time_limit_s: float) -> Patch:
    assert ctx.workspace is not None
    sandbox = ctx.sandbox if ctx.sandbox_started else None
    paused = False
    try:
        if sandbox is not None:
            try:  # frozen, nothing inside can race host git
                async with asyncio.timeout(PAUSE_LIMIT_S):
                    await sandbox.pause()
                paused = True
            except Exception as exc:  # a dead container, a daemon that does not answer
                why = f"no answer within {PAUSE_LIMIT_S:g}s" if isinstance(exc, TimeoutError) else describe(exc)
                emit(Note(f"could not pause the sandbox for the patch: {why}", level="warning"))
        return await compute_patch(ctx.workspace, secrets=ctx.redactor.known_values, time_limit_s=time_limit_s)
    finally:
        if paused and sandbox is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(PAUSE_LIMIT_S):
                    await sandbox.resume()


async def finish_run(ctx: RunContext, outcome: AstraError | None, emit: EmitFn, keep: bool, started: float) -> None:
    """Patch, outcome, reports, cleanup: see the module docstring. Never raises for a step's failure."""
    clock = _Clock(FINISH_GRACE_S)
    result, state = ctx.result, (ctx.agent.state if ctx.agent else AgentState())
    problems: list[str] = []
    if ctx.workspace is not None:
        with contextlib.suppress(PatchError):  # recorded in ctx.patch_error
            await write_patch(ctx, emit, time_limit_s=max(1.0, clock.left(PATCH_TIMEOUT_S + CLEANUP_RESERVE_S)
                                                            - CLEANUP_RESERVE_S))
    keep_worktree = keep
    if ctx.patch_error is not None:
        problem = ctx.patch_error
        if ctx.workspace is not None:
            keep_worktree = True  # the agent's work is there and nowhere else
            problem += f"; the worktree is kept at {ctx.workspace.path}"
        problems.append(problem)
    if not ctx.patch_written:  # SPEC §4: patch.diff is always there (empty: no patch)
        try:
            await asyncio.to_thread(write_bytes_atomic, ctx.out_dir / "patch.diff", b"")
        except Exception as exc:
            if ctx.patch_error is None:
                problems.append(f"could not write patch.diff: {describe(exc)}")
    if (lost := trajectory_failure(ctx)) is not None:
        problems.append(lost)

    set_outcome(result, state, outcome, ctx.notes, expect_changes=ctx.task.spec.expect_changes)
    result.verify += not_run(ctx.task.spec, result.verify, result.reason)
    result.turns, result.tool_calls = state.turns, state.tool_calls
    result.usage, result.cost_usd = dict(state.usage), state.cost_usd
    result.cost_by_model, result.compactions = dict(state.cost_by_model), state.compactions
    result.permission_denials = list(state.denials)
    result.final_message = last_words(state.messages)
    record_output_failures(result, problems, kind="patch" if ctx.patch_error else "output")
    # A resumed run's outputs describe the whole run: the stopped parts' time counts too.
    earlier_s = ctx.resumed.duration_s if ctx.resumed is not None else 0.0
    result.duration_s = time.monotonic() - started + earlier_s
    if ctx.resumed is not None:
        result.resumed = ctx.resumed.part
    kept = False
    try:
        kept = resume_state.save(ctx, result, ctx.resumed)
        if kept:  # `run --resume` continues in the worktree; `astra-run cleanup` may still remove it
            emit(Note(f"the run can be continued: astra-run run --resume {ctx.out_dir} (with higher limits)"))
        elif ctx.resumed is not None:
            resume_state.discard(ctx.run_dir)
    except Exception as exc:  # a full cache: the run is not resumable, its outputs still get written
        emit(Note(f"could not save the state for --resume: {describe(exc)}", level="warning"))
    emit(RunFinished(result.status, result.reason, result.exit_code, result.turns, result.tool_calls,
                     result.cost_usd, round(result.duration_s, 3), {"notes": ctx.notes}))

    result_json = await _write_reports(ctx, emit, clock)
    await _cleanup(ctx, keep_worktree or kept, emit, clock, mark_kept=keep_worktree)
    result.duration_s = time.monotonic() - started + earlier_s  # the truth: the cleanup included
    if result_json:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(write_json_atomic, ctx.out_dir / "result.json",
                                    redact_result(result, ctx.redactor).to_json())


async def _write_reports(ctx: RunContext, emit: EmitFn, clock: _Clock) -> bool:
    """result.json, junit.xml, cost.json, summary.md; on a failure the run becomes an error and
    the ones that can be written are written again saying so. Returns whether result.json is
    this run's (and up to date)."""
    result = ctx.result
    failed: list[str] = []

    async def write(step_summary: bool) -> list[str]:
        return await asyncio.to_thread(write_reports, ctx.out_dir, redact_result(result, ctx.redactor), ctx.prices,
                                       step_summary=step_summary, failed=failed)

    try:
        async with asyncio.timeout(clock.left(CLEANUP_LIMIT_S)):
            warnings = await write(ctx.step_summary)
    except Exception as exc:
        warnings, failed[:] = [], [f"could not write the reports: {describe(exc)}"]
    for warning in warnings:
        emit(Note(warning, level="warning"))
    if not failed:
        return True
    record_output_failures(result, list(failed))
    emit(Note(f"the run is an error: {'; '.join(failed)}", level="warning"))
    failed.clear()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(clock.left(CLEANUP_LIMIT_S)):
            await write(False)
        if not any(f.startswith("could not write result.json") for f in failed):
            return True
    # An older result.json (this run's first try, or a previous run's) must not speak for this run.
    with contextlib.suppress(OSError):
        os.unlink(ctx.out_dir / "result.json")
    return False


async def _step(what: str, action: Callable[[], Awaitable[object]], emit: EmitFn, limit_s: float) -> None:
    try:
        async with asyncio.timeout(limit_s):
            await action()
    except Exception as exc:  # recorded; the next step runs
        why = f"not done within {limit_s:.3g}s" if isinstance(exc, TimeoutError) else describe(exc)
        emit(Note(f"{what} failed: {why}", level="warning"))


async def _cleanup(ctx: RunContext, keep: bool, emit: EmitFn, clock: _Clock, *, mark_kept: bool = True) -> None:
    """`mark_kept`: a worktree kept for the user (--keep, a lost patch) is marked so that
    `astra-run cleanup` leaves it; one kept only for `run --resume` is not."""
    if ctx.mcp is not None:  # before the sandbox: its stdio servers run inside it
        await _step("MCP cleanup", ctx.mcp.close, emit, clock.left(CLEANUP_LIMIT_S))
    if ctx.sandbox is not None:
        await _step("sandbox cleanup", ctx.sandbox.close, emit, clock.left(CLEANUP_LIMIT_S))
    if ctx.model is not None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(clock.left(5.0)):
                await ctx.model.aclose()
    workspace = ctx.workspace
    if workspace is None:
        return
    if keep:
        if workspace.loop is not None:  # nothing stays mounted: the files move to a plain directory
            await _step("moving the kept worktree off its file system",
                        lambda: blocking(workspace.detach_disk, limit_s=None, what="copy the kept worktree"),
                        emit, clock.left(4 * CLEANUP_LIMIT_S))
        emit(Note(f"kept the worktree at {workspace.path}"))
        with contextlib.suppress(Exception):
            nested = await blocking(lambda: nested_git_dirs(workspace.path), limit_s=clock.left(CLEANUP_LIMIT_S),
                                    what="look for nested repositories")
            if nested:
                emit(Note("the kept worktree holds nested git repositories the agent may have planted "
                          f"(their config can run commands when you use git in them): {', '.join(nested)}",
                          level="warning"))
        if mark_kept:
            with contextlib.suppress(OSError):
                workspace.mark_kept()
        return

    async def remove() -> None:
        await blocking(workspace.remove, limit_s=None, what="remove the worktree")

    await _step("removing the worktree", remove, emit, clock.left(CLEANUP_LIMIT_S))


def nested_git_dirs(root: os.PathLike[str], limit: int = 20) -> list[str]:
    found: list[str] = []
    top = os.fspath(root)
    for dirpath, dirnames, filenames in walk(top, skip={".git"}):
        if dirpath != top and (".git" in dirnames or ".git" in filenames):
            found.append(os.path.relpath(dirpath, top))
        if len(found) >= limit:
            break
    return found
