"""Running the tasks of a batch: N at a time, each isolated, all stoppable by one signal.

- Each task is one `run_task` call with its own worktree, sandbox and OUT/<name>/, as a child
  asyncio task. Whatever one task does - fail, hit a limit, crash with an exception we did not
  foresee - is recorded as its result and the others go on.
- Starts are capped and staggered (StartGate): at most `start_cap` tasks are creating their
  sandbox at once, and consecutive starts are `stagger_s` apart, so a batch does not hit the Docker
  daemon with N container creations in the same millisecond.
- No new task starts once the batch's cost (finished tasks + running tasks so far + resumed ones)
  reaches --max-cost-usd, or after the first failure with --fail-fast; running tasks finish under
  their own limits. The tasks left are recorded as `skipped`.
- SIGINT/SIGTERM: the shared Interrupt is set, then every running task is cancelled; each one's
  run_task writes all its outputs and removes its sandbox. Nothing new starts. The batch writes
  its aggregates and exits 130/143.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
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
from runner.models.pricing import load_prices
from runner.reports.console import Console
from runner.reports.files import write_bytes_atomic, write_reports, write_text_atomic
from runner.result import RunResult
from runner.run import Interrupt, run_task
from runner.settings import Settings

log = logging.getLogger(__name__)

START_HOLD_S = 60.0
"""A start slot is held until the task's sandbox is up, but never longer than this."""
START_RETRIES = 2
"""How often a run that failed on git before its first turn is tried again."""


def _once(action: Callable[[], None]) -> Callable[[], None]:
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return call


@dataclass(frozen=True)
class BatchOptions:
    jobs: int = 1
    max_cost_usd: float | None = None
    fail_fast: bool = False
    keep: bool = False
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


class TaskWatch(Console):
    """A silent console for one task: it feeds the batch's progress and start gate, prints nothing."""

    def __init__(self, name: str, on_update: Callable[[str, int, float | None], None]) -> None:
        super().__init__(io.StringIO(), tty=False, verbosity=-1)
        self.name = name
        self.started = asyncio.Event()
        self.turns = 0
        self.cost: float | None = 0.0
        self._on_update = on_update
        self.on_workspace: Callable[[], None] = lambda: None
        """Called once the run has its worktree (or has ended): releases the repository's lock."""

    def on_event(self, event: Event) -> None:
        try:
            if isinstance(event, RunStarted | RunError | RunFinished):
                self.on_workspace()
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
        self._repo_locks: dict[str, asyncio.Lock] = {}

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
        if (spent := self.spent()) >= cap:
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
        ticker = asyncio.create_task(self._tick())
        try:
            workers = [asyncio.create_task(self._worker()) for _ in range(min(self.options.jobs, len(self.queue)))]
            await asyncio.gather(*workers)
        finally:
            ticker.cancel()
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

    def _on_signal(self, signum: int) -> None:
        if self.interrupt.signum is not None:
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
            waiter = asyncio.create_task(watch.started.wait())
            await asyncio.wait({child, waiter}, timeout=START_HOLD_S, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        try:
            entry = await child
        except asyncio.CancelledError:  # cancelled before run_task began: it wrote nothing
            entry = Entry(planned.name, skipped_record(planned.name, "not started: interrupted", None), None)
        finally:
            self.running.pop(planned.name, None)
        self.entries[planned.name] = entry
        self.progress.finish(planned.name, entry.result)
        status = entry.result.get("status")
        if self.options.fail_fast and status not in ("success", "interrupted"):
            self._stop(f"--fail-fast: task {planned.name} ended with status {status}", exit_code=None)

    async def _guarded(self, planned: PlannedTask, watch: TaskWatch) -> Entry:
        """run_task, with any exception it lets out turned into an `error` result of this task only.

        Worktrees of one repository are created one at a time (a per-repository lock held until the
        run has its workspace), and a run that failed on git before its first turn is tried again
        (START_RETRIES): concurrent `git worktree add/prune` in one repository can race.
        """
        out = Path(planned.task.spec.outputs.dir)
        lock = self._repo_locks.setdefault(planned.task.repo, asyncio.Lock())
        for attempt in range(START_RETRIES + 1):
            await lock.acquire()
            watch.on_workspace = _once(lock.release)
            try:
                result = await run_task(planned.task, self.settings, keep=self.options.keep, console=watch,
                                        interrupt=self.interrupt)
            except Exception as exc:
                return Entry(planned.name, self._record_crash(planned, out, exc), out if out.is_dir() else None)
            finally:
                watch.on_workspace()
            retry = (result.status == "error" and result.error_kind == "git" and result.turns == 0
                     and self.interrupt.signum is None and attempt < START_RETRIES)
            if not retry:
                break
            self.progress.note(f"task {planned.name}: trying again after a git failure at start: "
                               f"{result.reason.splitlines()[0][:200]}")
            await asyncio.sleep(0.2 * (attempt + 1))
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
