"""Running the tasks of a batch: N at a time, each isolated, all stoppable by one signal.

- Each task is one `run_task` call with its own worktree, sandbox and OUT/<name>/, as a child
  asyncio task. Whatever one task does - fail, hit a limit, crash with an exception we did not
  foresee - is recorded as its result and the others go on.
- Starts are capped and staggered (StartGate): at most `start_cap` tasks are creating their
  sandbox at once, and consecutive starts are `stagger_s` apart, so a batch does not hit the Docker
  daemon with N container creations in the same millisecond.
- --max-cost-usd is one SharedBudget (runner/budget.py) that every model call of every running
  task passes: once the batch's cost (resumed tasks + every call so far) reaches it, running tasks
  stop as `limit` at their next model call and no new task starts; the cap is passed by at most one
  turn of one task. --fail-fast: no new task starts after the first failure. The tasks left are
  recorded as `skipped`.
- SIGINT/SIGTERM: the shared Interrupt is set, then every running task is cancelled; each one's
  run_task writes all its outputs and removes its sandbox. Nothing new starts. The batch writes
  its aggregates and exits 130/143. A second signal while that cleanup runs calls `on_second_signal`
  (the command writes the aggregates as they are and exits at once, see commands.py).
- A bug in the batch itself (an exception out of a worker) stops it like an interrupt would, but
  without a signal: the other workers are cancelled, and with them their running tasks, each of
  which still writes its outputs and removes its sandbox before the exception goes on.
- Worktrees: `Workspace.create` serialises `git worktree add/remove` on one repository with a
  file lock of its own, so tasks on one repository start concurrently like any others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.agent.events import Event, ModelTurn, RunError, RunFinished, RunStarted, SandboxReady
from runner.batch.aggregate import Entry, read_result, skipped_record
from runner.batch.manifest import PlannedTask
from runner.batch.progress import Progress
from runner.budget import SharedBudget
from runner.models.pricing import load_prices
from runner.outlock import OutputDirBusy
from runner.reports.files import write_bytes_atomic, write_reports, write_text_atomic
from runner.result import RunResult
from runner.run import Interrupt, run_task
from runner.settings import Settings
from runner.signals import early_signal

log = logging.getLogger(__name__)

START_HOLD_S = 60.0
"""A start slot is held until the task's sandbox is up, but never longer than this."""


@dataclass(frozen=True)
class BatchOptions:
    jobs: int = 1
    max_cost_usd: float | None = None
    fail_fast: bool = False
    start_cap: int = 4
    stagger_s: float = 0.1


def start_policy(tasks: Sequence[PlannedTask], jobs: int) -> tuple[int, float]:
    """(start cap, stagger): capped and staggered when any task uses Docker; free for local ones."""
    if any(p.task.spec.sandbox.backend == "docker" for p in tasks):
        return min(jobs, 4), 0.1
    return jobs, 0.0


class StartGate:
    def __init__(self, cap: int, stagger_s: float) -> None:
        self._sem = asyncio.Semaphore(max(1, cap))
        self._stagger = stagger_s
        self._next = 0.0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._sem:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self._stagger
            if wait > 0:
                await asyncio.sleep(wait)
            yield


class TaskWatch:
    """What one task's run reports to (a `runner.run.RunObserver`): it prints nothing, and feeds the
    batch's progress (turns, cost) and its start gate (`started`: the sandbox is up, or the run ended)."""

    def __init__(self, name: str, on_update: Callable[[str, int, float | None], None]) -> None:
        self.name = name
        self.redact: Callable[[str], str] = lambda text: text
        """Set by run_task to the run's redactor (nothing here prints untrusted text)."""
        self.started = asyncio.Event()
        self.turns = 0
        self.cost: float | None = 0.0
        self._on_update = on_update

    def on_event(self, event: Event) -> None:
        try:
            if isinstance(event, SandboxReady | RunError | RunFinished):
                self.started.set()
            if isinstance(event, ModelTurn):
                self.turns, self.cost = event.turn, event.cost_usd
                self._on_update(self.name, self.turns, self.cost)
            elif isinstance(event, RunStarted):
                self._on_update(self.name, 0, 0.0)
        except Exception:  # never let the progress display break a run
            log.debug("progress update failed", exc_info=True)

    def finish(self, result: RunResult) -> None:
        self.started.set()


class Batch:
    def __init__(
        self, todo: Sequence[PlannedTask], done: Sequence[Entry], settings: Settings, options: BatchOptions,
        progress: Progress,
    ) -> None:
        self.queue = deque(todo)
        self.entries: dict[str, Entry] = {e.name: e for e in done}
        self.settings = settings
        self.options = options
        self.progress = progress
        self.interrupt = Interrupt()
        self.running: dict[str, tuple[asyncio.Task[Entry], TaskWatch]] = {}
        self.stop_reason: str | None = None
        self.stop_exit: int | None = None
        self.gate = StartGate(options.start_cap, options.stagger_s)
        self.on_second_signal: Callable[[int], None] | None = None
        """Called (with the signal) when a second SIGINT/SIGTERM comes while the first one's cleanup runs."""
        self.budget = (SharedBudget(options.max_cost_usd, self.spent()) if options.max_cost_usd is not None
                       else None)
        """--max-cost-usd, held before every model call of every running task (runner/budget.py)."""

    # -- money -------------------------------------------------------------------------------------
    def spent(self) -> float:
        """Finished and resumed tasks' cost plus the running tasks' cost so far (unknown counts as 0)."""
        total = 0.0
        for e in self.entries.values():
            cost = e.result.get("cost_usd")
            total += cost if isinstance(cost, int | float) else 0.0
        return total + sum(w.cost or 0.0 for _, w in self.running.values())

    def _cost_cap_reached(self) -> bool:
        cap = self.options.max_cost_usd
        if cap is None or self.stop_reason is not None:
            return False
        spent = self.budget.spent if self.budget is not None else self.spent()
        if spent >= cap:
            self._stop(f"the batch's --max-cost-usd ${cap:g} was reached (${spent:.4f} spent)", exit_code=3)
            return True
        return False

    def _stop(self, reason: str, exit_code: int | None) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.stop_exit = reason, exit_code
            self.progress.note(f"no new task starts: {reason}")

    # -- the loop ----------------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                pass
        if (early := early_signal()) is not None:  # came before the loop ran (runner/signals.py)
            self._on_signal(early)
        ticker = asyncio.create_task(self._tick())
        try:
            # One worker raising cancels the others (TaskGroup), and a cancelled worker cancels
            # the task it runs and waits for its outputs and cleanup (_run_one).
            async with asyncio.TaskGroup() as workers:
                for _ in range(min(self.options.jobs, len(self.queue))):
                    workers.create_task(self._worker())
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            for signum in installed:
                loop.remove_signal_handler(signum)
        for p in self.queue:
            self.progress.skip(p.name, "skipped")

    def entries_now(self) -> list[Entry]:
        """Every task of the batch: finished or resumed ones, and a `skipped` record for the others."""
        why = f"not started: {self.stop_reason or 'the batch ended first'}"
        entries = dict(self.entries)
        for name in [*self.running, *(p.name for p in self.queue)]:
            entries.setdefault(name, Entry(name, skipped_record(name, why, self.stop_exit), None))
        return sorted(entries.values(), key=lambda e: e.name)

    def mark_running_interrupted(self, signum: int) -> None:
        """Record the running tasks as interrupted now, without waiting for them (a second signal):
        their own outputs may be incomplete, and `--resume` runs them again."""
        name = signal.Signals(signum).name
        for task in self.running:
            record = skipped_record(task, f"interrupted by {name}; the batch exited before this task had written "
                                    "its outputs", 128 + signum)
            self.entries.setdefault(task, Entry(task, {**record, "status": "interrupted"}, None))

    def _on_signal(self, signum: int) -> None:
        if self.interrupt.signum is not None:  # a second signal: the user will not wait for the cleanup
            if self.on_second_signal is not None:
                self.on_second_signal(signum)
            return
        self.interrupt.signum = signum
        self._stop(f"interrupted by {signal.Signals(signum).name}", exit_code=None)
        for child, _ in self.running.values():
            child.cancel()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.progress.redraw(force=True)

    async def _worker(self) -> None:
        while self.queue and self.stop_reason is None and not self._cost_cap_reached():
            await self._run_one(self.queue.popleft())

    async def _run_one(self, planned: PlannedTask) -> None:
        async with self.gate.slot():
            if self.stop_reason is not None or self._cost_cap_reached():
                self.queue.appendleft(planned)  # recorded as skipped at the end
                return
            watch = TaskWatch(planned.name, self.progress.update)
            child = asyncio.create_task(self._guarded(planned, watch), name=f"astra-task-{planned.name}")
            self.running[planned.name] = (child, watch)
            self.progress.start(planned.name)
            try:
                waiter = asyncio.create_task(watch.started.wait())
                try:
                    await asyncio.wait({child, waiter}, timeout=START_HOLD_S, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
            except asyncio.CancelledError:
                await self._abandon(planned, child)
                raise
        try:
            entry = await child
        except asyncio.CancelledError:
            if not child.done():
                await self._abandon(planned, child)
                raise
            # the task was cancelled before run_task began: it wrote nothing
            entry = Entry(planned.name, skipped_record(planned.name, "not started: interrupted", None), None)
        finally:
            self.running.pop(planned.name, None)
        self.entries[planned.name] = entry
        self.progress.finish(planned.name, entry.result)
        status = entry.result.get("status")
        if self.options.fail_fast and status not in ("success", "interrupted"):
            self._stop(f"--fail-fast: task {planned.name} ended with status {status}", exit_code=None)

    async def _abandon(self, planned: PlannedTask, child: asyncio.Task[Entry]) -> None:
        """This worker is cancelled (the batch is ending on an error of its own): so is its task,
        whose run still writes its outputs and removes its sandbox before this returns."""
        self._stop("the batch runner itself failed", exit_code=None)
        child.cancel()
        await asyncio.wait({child})
        self.running.pop(planned.name, None)
        if not child.cancelled() and child.exception() is None:
            self.entries[planned.name] = child.result()
        else:
            self.entries[planned.name] = Entry(planned.name, skipped_record(
                planned.name, "stopped: the batch ended before it finished", None), None)

    async def _guarded(self, planned: PlannedTask, watch: TaskWatch) -> Entry:
        """run_task, with any exception it lets out turned into an `error` result of this task only."""
        out = Path(planned.task.spec.outputs.dir)
        try:
            # each task's summary.md is its own; the step summary gets the batch's table only
            result = await run_task(planned.task, self.settings, console=watch, interrupt=self.interrupt,
                                    step_summary=False, budget=self.budget)
        except OutputDirBusy as exc:  # another process writes there: write nothing into it
            record = skipped_record(planned.name, str(exc), exc.exit_code)
            return Entry(planned.name, {**record, "status": "error"}, None)
        except Exception as exc:
            return Entry(planned.name, self._record_crash(planned, out, exc), out if out.is_dir() else None)
        on_disk = read_result(out)  # the redacted result.json run_task wrote
        if on_disk is None or on_disk.get("run_id") != result.run_id:
            return Entry(planned.name, result.to_json(), None)
        return Entry(planned.name, on_disk, out)

    def _record_crash(self, planned: PlannedTask, out: Path, exc: Exception) -> dict[str, object]:
        """Write what a run would have written for a task whose run_task raised; return its result."""
        spec = planned.task.spec
        result = RunResult(
            run_id=f"{spec.name}-crashed", task=spec.name, model=spec.model or "", status="error", exit_code=4,
            reason=f"internal error in the batch runner: {type(exc).__name__}: {exc}", error_kind="internal",
        )
        try:
            out.mkdir(parents=True, exist_ok=True)
            if not (out / "patch.diff").exists():
                write_bytes_atomic(out / "patch.diff", b"")
            event = {"type": "run_error", "kind": "internal", "message": result.reason}
            write_text_atomic(out / "trajectory.jsonl", json.dumps(event) + "\n")
            write_reports(out, result, load_prices(self.settings.prices_file))
        except Exception as write_exc:
            self.progress.note(f"task {spec.name}: its outputs could not be written: {write_exc}")
        return result.to_json()
