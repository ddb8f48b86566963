"""One run, start to finish, as a readable sequence (DESIGN.md "The flow of one run").

    workspace (worktree at the base commit)
    -> sandbox (setup as root with network, then network cut)
    -> agent loop (policy, limits, breaker)          \\ all inside the run's wall clock
    -> patch (the agent's work, before verify touches anything)
    -> verify checks in the sandbox                  /
    -> reports (always: result.json, patch.diff, junit.xml, cost.json, summary.md, trajectory.jsonl)
    -> cleanup (container removed, worktree removed unless --keep)

Whatever stops the run - a limit, an infrastructure failure, a signal - the work done so far is
kept: the patch and every report are written in `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from runner import preflight
from runner.agent.context import ContextManager, choose
from runner.agent.events import (
    AgentReady,
    Event,
    LimitReached,
    Note,
    RunError,
    RunResumed,
    RunStarted,
    SandboxReady,
    SetupFinished,
)
from runner.agent.guards import Guards
from runner.agent.loop import Agent
from runner.agent.prompt import build_system_prompt, build_task_message
from runner.budget import BudgetedModel, SharedBudget
from runner.deadline import blocking, to_the_end
from runner.digest import task_digest
from runner.diskcap import kernel_cap_problem
from runner.errors import AstraError, ConfigError, InfraError, Interrupted, LimitExceeded, SandboxError
from runner.finish import OutputError, finish_run, trajectory_failure, write_patch
from runner.models.base import Model
from runner.models.catalog import ModelInfo, RequestOptions, model_info, resolve_options
from runner.models.credentials import credential_values
from runner.models.pricing import PriceTable, load_prices
from runner.models.providers import Provider
from runner.models.scripted import PREFIX as SCRIPTED_PREFIX
from runner.outcome import error_kind
from runner.outlock import hold_output_dir
from runner.policy import Allow, Policy
from runner.redact import MIN_SECRET_LEN, Redactor, expand_host_vars
from runner.redact_view import strip_hidden
from runner.reports.trajectory import TrajectoryWriter
from runner.result import RunResult
from runner.sandbox import Sandbox, SandboxConfig, make_sandbox
from runner.sandbox.base import DISK_POLL_S, size_bytes
from runner.settings import Settings
from runner.signals import early_signal
from runner.task import LoadedTask, is_git_url
from runner.tools import ToolContext, ToolRegistry
from runner.verify import run_checks
from runner.workspace import Workspace

if TYPE_CHECKING:
    from runner.mcp import McpServers
    from runner.resume import Resumed

EmitFn = Callable[[Event], None]


class RunObserver(Protocol):
    """What a run reports its progress to (the console, a batch's progress table)."""

    redact: Callable[[str], str]

    def on_event(self, event: Event) -> None: ...

    def finish(self, result: RunResult) -> None: ...


@dataclass
class Interrupt:
    """Set by the signal handler before it cancels the run's task (so cancellation means 'interrupted').

    A signal that comes while a run is finishing (its outputs and cleanup, runner/finish.py) does
    not cut that short: the run's result stands as it ended, and the process exits with the
    signal's code afterwards (`exit_code`).
    """

    signum: int | None = None

    def exit_code(self, result: RunResult) -> int:
        """The process's exit code for a run that ended with `result`: the signal's, if one came."""
        return 128 + self.signum if self.signum is not None else result.exit_code


@dataclass
class RunContext:
    """Everything one run holds while it goes; cleaned up in `finally`."""

    task: LoadedTask
    settings: Settings
    run_id: str
    out_dir: Path
    run_dir: Path
    redactor: Redactor
    prices: PriceTable
    result: RunResult
    workspace: Workspace | None = None
    sandbox: Sandbox | None = None
    sandbox_started: bool = False
    mcp: McpServers | None = None
    model: Model | None = None
    agent: Agent | None = None
    context: ContextManager | None = None
    instructions_commit: str | None = None
    step_summary: bool = True
    patch_written: bool = False
    patch_error: str | None = None
    """Why the patch could not be computed or written (the run is then an error, the worktree kept)."""
    trajectory: TrajectoryWriter | None = None
    budget: SharedBudget | None = None
    verify_note: str = ""
    notes: list[str] = field(default_factory=list)
    resumed: Resumed | None = None
    """Set when this run continues a stopped one (`run --resume`)."""


def install_signal_handlers(interrupt: Interrupt) -> None:
    """SIGINT/SIGTERM: remember which, cancel the current task; the run writes its outputs."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if interrupt.signum is None and task is not None:
            interrupt.signum = signum
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    if (early := early_signal()) is not None:  # came before the loop ran (runner/signals.py)
        on_signal(early)


def new_run_id(task_name: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{task_name}-{stamp}-{secrets.token_hex(3)}"


def make_model(name: str, base_dir: Path, *, provider: Provider = "anthropic", prices: PriceTable | None = None,
               on_secret: Callable[[Iterable[str]], object] | None = None) -> Model:
    """The task's model: scripted, or Claude on `provider` (its platform price entered into `prices`;
    credentials minted while it runs, such as a Google access token, reported to `on_secret`)."""
    from runner.models.scripted import ScriptedModel, resolve_script

    if name.startswith(SCRIPTED_PREFIX):
        return ScriptedModel(resolve_script(name, base_dir), name)
    from runner.models.platform_model import make_api_model

    return make_api_model(name, provider, prices=prices, on_secret=on_secret)


def model_info_date() -> str:
    from runner.models.catalog import load_catalog

    return load_catalog().date


def model_setup(task: LoadedTask) -> tuple[ModelInfo, RequestOptions, ContextManager]:
    """The model's row of runner/models/models.json, the task's `model_options` checked against
    it, and how the run keeps its history inside the window. ConfigError (FILE:LINE) otherwise."""
    spec = task.spec
    info = model_info(spec.model or "")
    provider = spec.provider or "anthropic"
    if provider != "anthropic" and not (spec.model or "").startswith(SCRIPTED_PREFIX):
        # A platform without a feature drops it from the request (runner.models.providers):
        # choose the long-history mechanism from what the platform has, so the fallback applies.
        from runner.models.providers import load as load_platforms
        from runner.models.providers import resolve as resolve_platform

        have = load_platforms().features[resolve_platform(provider, spec.model or "").platform]
        info = dataclasses.replace(info, compaction=info.compaction and "compaction" in have,
                                   context_editing=info.context_editing and "context_editing" in have)

    def where(dotted: str) -> str:
        return task.where(*dotted.split("."))

    opts = spec.model_options
    options = resolve_options(info, effort=opts.effort, thinking=opts.thinking,
                              max_output_tokens=opts.max_output_tokens, where=where)
    context = ContextManager(info, choose(spec.context.strategy, info, where), spec.context.trigger_tokens)
    return info, options, context


async def run_task(
    task: LoadedTask,
    settings: Settings,
    *,
    keep: bool = False,
    console: RunObserver | None = None,
    interrupt: Interrupt | None = None,
    instructions_commit: str | None = None,
    secrets: Sequence[str] = (),
    step_summary: bool = True,
    budget: SharedBudget | None = None,
    event_stream: TextIO | None = None,
    resume: Resumed | None = None,
) -> RunResult:
    """Run one task and write all its outputs. Never raises for run outcomes: they are in the result.

    `console`: anything with `on_event`, `finish` and a settable `redact` (a Console, or a batch's
    silent observer). `instructions_commit`: read AGENTS.md / CLAUDE.md from this commit instead
    of the base (a pull request's run reads them from its base branch, never from the head it
    works on). `secrets`: values to redact besides the API key, GITHUB_TOKEN and `${NAME}` values
    (a caller that removed a token from the environment passes it here). `step_summary`: append
    summary.md to $GITHUB_STEP_SUMMARY (a batch appends its own table instead). `budget`: a cost
    cap shared with other runs (a batch's --max-cost-usd), held before every model call.
    `event_stream`: also write every trajectory line there as it happens (`--json`). `resume`:
    continue that stopped run (runner.resume) instead of starting one.
    """
    spec = task.spec
    interrupt = interrupt or Interrupt()
    run_id = resume.run_id if resume else new_run_id(spec.name)
    out_dir = Path(spec.outputs.dir).expanduser().resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"outputs.dir (or --out): cannot create {out_dir}: {exc.strerror or exc}") from None
    started = time.monotonic()
    result = RunResult(
        run_id=run_id, task=spec.name, model=spec.model or "",
        started_at=resume.started_at if resume else dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    # every provider's credentials too; the task name and run id are never masked by shape
    redactor = Redactor([*secrets, *credential_values()], keep=[spec.name, run_id])
    ctx = RunContext(
        task=task, settings=settings, run_id=run_id, out_dir=out_dir,
        run_dir=settings.cache / "runs" / run_id, redactor=redactor,
        prices=load_prices(settings.prices_file), result=result, instructions_commit=instructions_commit,
        step_summary=step_summary, budget=budget, resumed=resume,
    )
    result.task_digest = task_digest(task)
    if console is not None:
        console.redact = lambda text: strip_hidden(redactor.text(text))  # a person reads it
    header = {"run_id": run_id, "task": spec.name, "model": spec.model or "", "provider": spec.provider,
              "model_options": spec.model_options.model_dump(mode="json")}
    mirror = [event_stream] if event_stream is not None else []
    with hold_output_dir(out_dir), TrajectoryWriter(
        out_dir / "trajectory.jsonl", redactor, header=header, mirror=mirror,
        append=resume is not None, t_offset=resume.duration_s if resume else 0.0,
    ) as trajectory:
        ctx.trajectory = trajectory

        def emit(event: Event) -> None:
            trajectory.write(event)  # a failed write is recorded in trajectory.error, never raised
            if console is not None:
                with contextlib.suppress(Exception):  # a closed stdout must not stop the run or its cleanup
                    console.on_event(event)

        outcome: AstraError | None = None
        try:
            await _phases(ctx, emit)
        except LimitExceeded as exc:
            outcome = exc
            emit(LimitReached(exc.limit, exc.value, str(exc)))
        except ConfigError as exc:  # found only once the run began (a ref, a host variable): exit 2
            outcome = exc
            emit(RunError("config", str(exc)))
        except asyncio.CancelledError:
            if interrupt.signum is None:
                raise
            task_ = asyncio.current_task()
            if task_ is not None:
                task_.uncancel()
            outcome = Interrupted(interrupt.signum)
        except InfraError as exc:
            outcome = exc
            emit(RunError(error_kind(exc), str(exc)))
        except Exception as exc:  # a bug of ours: still write everything, say so, exit 4
            outcome = InfraError(f"internal error: {type(exc).__name__}: {exc}")
            emit(RunError("internal", str(outcome)))
        finally:
            # Uninterruptible: a signal now is remembered (Interrupt) and honoured after it.
            _, cancels = await to_the_end(finish_run(ctx, outcome, emit, keep, started))
        if cancels and interrupt.signum is not None and not isinstance(outcome, Interrupted) and console is not None:
            console.on_event(Note(f"{signal.Signals(interrupt.signum).name} came while the run was finishing: its "
                                  f"outputs and cleanup were completed first (result: {result.status})"))
    if console is not None:
        console.finish(result)
    return result


async def _phases(ctx: RunContext, emit: EmitFn) -> None:
    """Start, agent, patch, verify. The wall clock covers all but the patch, which is the work
    itself: it is taken even when the clock ran out (with its own time limit)."""
    limits = ctx.task.spec.limits
    deadline = asyncio.get_running_loop().time() + limits.timeout
    timeout = LimitExceeded(f"timeout reached: the run's wall clock limit is {limits.timeout:g}s",
                            limit="timeout", value=limits.timeout)
    agent_stop: LimitExceeded | None = None
    try:
        async with asyncio.timeout_at(deadline):
            await _start(ctx, emit)
            assert ctx.agent is not None
            try:
                async for event in ctx.agent.run():
                    emit(event)
                    if (lost := trajectory_failure(ctx)) is not None:  # a full disk: stop spending
                        raise OutputError(lost)
            except LimitExceeded as exc:
                agent_stop = exc
    except TimeoutError:
        raise timeout from None
    await write_patch(ctx, emit)
    assert ctx.sandbox is not None and ctx.workspace is not None
    try:
        async with asyncio.timeout_at(deadline):
            ctx.result.verify = await run_checks(ctx.task.spec, ctx.sandbox, ctx.workspace.path, emit)
    except TimeoutError:
        raise timeout from None
    if agent_stop is not None:
        raise agent_stop


async def _start(ctx: RunContext, emit: EmitFn) -> None:
    """Everything before the first model call: workspace, model, sandbox, tools, agent."""
    env = _sandbox_env(ctx, emit)
    await _make_workspace(ctx, emit)
    spec = ctx.task.spec
    info, options, ctx.context = model_setup(ctx.task)
    if not _scripted(ctx):
        known = "" if info.known else " (not in runner/models/models.json: its defaults apply)"
        emit(Note(f"model {info.id}{known}: context window {info.context_window} tokens, output limit "
                  f"{options.max_tokens}, request options {options.params() or 'the model defaults'}; long history: "
                  f"{ctx.context.mechanism} at {ctx.context.trigger} tokens"))
    if info.retired:
        emit(Note(f"model {info.id} is retired (runner/models/models.json of {model_info_date()}); "
                  "the API may refuse it", level="warning"))
    ctx.model = make_model(spec.model or "", ctx.task.base_dir, provider=spec.provider or "anthropic",
                           prices=ctx.prices, on_secret=ctx.redactor.add)
    if hasattr(ctx.model, "options"):  # an API model: the task's checked model_options
        ctx.model.options = options
    if _scripted(ctx):
        emit(Note(f"the model is scripted ({spec.model}): it replays a fixed list of turns and calls no API"))
    if (target := getattr(ctx.model, "target", None)) is not None and target.provider != "anthropic":
        emit(Note(f"model {target.model} on {target.provider}: {target.wire_id} ({target.platform})"))
    if ctx.budget is not None:  # a batch's --max-cost-usd, held before every model call
        ctx.model = BudgetedModel(ctx.model, ctx.budget, ctx.prices.total_bound)
    await _start_sandbox(ctx, emit, env)
    assert ctx.sandbox is not None
    tools = ToolRegistry.builtin()
    if spec.mcp_servers:
        from runner.mcp import McpServers

        ctx.mcp = await McpServers.start(spec.mcp_servers, sandbox=ctx.sandbox, emit=emit, redactor=ctx.redactor)
        for tool in ctx.mcp.tools():
            tools.add(tool)
    ctx.agent = agent = await _make_agent(ctx, tools)
    if ctx.resumed is not None:
        ctx.resumed.restore(agent, ctx.model)
    emit(AgentReady(agent.system, [dataclasses.asdict(t) for t in tools.specs()],
                    spec.model_options.model_dump(mode="json"), agent.max_tokens, agent.task_message))


def _scripted(ctx: RunContext) -> bool:
    return (ctx.task.spec.model or "").startswith(SCRIPTED_PREFIX)


def _sandbox_env(ctx: RunContext, emit: EmitFn) -> dict[str, str]:
    """sandbox.env with `${NAME}` taken from the host; those values are redacted from now on."""
    preflight.check(ctx.task, check_git=False)  # the workspace does the git checks next, once
    env, host_values = expand_host_vars(dict(ctx.task.spec.sandbox.env), "sandbox.env")
    if too_short := ctx.redactor.add(host_values):
        emit(Note(f"{len(too_short)} host value(s) in sandbox.env are shorter than {MIN_SECRET_LEN} characters "
                  "and cannot be redacted from the outputs", level="warning"))
    return env


def _disk_cap(ctx: RunContext) -> tuple[int | None, str | None]:
    """(the size of the worktree's own file system, or None; why it has none) - runner/diskcap.py."""
    spec, mode = ctx.task.spec, ctx.settings.disk_cap
    problem = "ASTRA_DISK_CAP=poll" if mode == "poll" else kernel_cap_problem(spec.sandbox.backend)
    if problem is None:
        return size_bytes(spec.sandbox.disk), None
    if mode == "kernel":
        raise SandboxError(f"ASTRA_DISK_CAP=kernel, but the worktree cannot have its own file system: {problem}")
    return None, problem


def _disk_note(ctx: RunContext, emit: EmitFn, problem: str | None) -> None:
    """Say once how sandbox.disk is enforced (result.json `disk_cap`; a note when not by the kernel)."""
    assert ctx.workspace is not None
    if ctx.workspace.loop is not None:
        ctx.result.disk_cap = "kernel"
        return
    ctx.result.disk_cap = "poll"
    emit(Note(f"sandbox.disk ({ctx.task.spec.sandbox.disk}) is measured every {DISK_POLL_S:g} s, not held by the "
              f"kernel ({problem}): between two measurements a command can write past it", level="warning"))


async def _make_workspace(ctx: RunContext, emit: EmitFn) -> None:
    task, spec = ctx.task, ctx.task.spec
    if ctx.resumed is not None:  # the worktree as the stopped part left it
        ctx.workspace = workspace = ctx.resumed.workspace()
        ctx.result.base_commit = workspace.base_commit
        disk_bytes, disk_problem = await asyncio.to_thread(_disk_cap, ctx)
        if disk_bytes is not None:  # the stopped part's files, back on a file system of their own
            try:
                size = disk_bytes
                await blocking(lambda: workspace.attach_disk(size), limit_s=None, what="attach-disk")
            except SandboxError as exc:
                if ctx.settings.disk_cap == "kernel":
                    raise SandboxError(f"ASTRA_DISK_CAP=kernel, but {exc}") from None
                disk_problem = str(exc)
        _disk_note(ctx, emit, disk_problem)
        emit(RunResumed(ctx.resumed.part, ctx.resumed.stopped, spec.limits.model_dump(),
                        int(ctx.resumed.state["turns"]), ctx.resumed.state.get("cost_usd")))
        emit(Note(f"resuming run {ctx.run_id} (it stopped: {ctx.resumed.stopped})"))
        return
    disk_bytes, disk_problem = await asyncio.to_thread(_disk_cap, ctx)  # asks the Docker socket
    creating = asyncio.ensure_future(asyncio.to_thread(
        lambda: Workspace.create(task.repo, spec.ref, ctx.run_dir, ctx.settings.cache, disk_bytes=disk_bytes,
                                 disk_required=ctx.settings.disk_cap == "kernel")))
    try:
        ctx.workspace = await asyncio.shield(creating)
    except asyncio.CancelledError:
        # The thread goes on (a thread cannot be cancelled): wait for it, so that the worktree it
        # registers in the user's repository is removed by the cleanup, then stop.
        with contextlib.suppress(Exception):
            ctx.workspace, _ = await to_the_end(creating)
        raise
    except ConfigError as exc:  # "ref: ..." / "repo: ...": say where in the task file
        field, _, problem = str(exc).partition(": ")
        raise ConfigError(f"{task.where(field)}: {problem}" if field in ("ref", "repo") else str(exc)) from None
    ctx.result.base_commit = ctx.workspace.base_commit
    _disk_note(ctx, emit, disk_problem or ctx.workspace.disk_problem)
    if not is_git_url(task.repo) and (dirty := await asyncio.to_thread(preflight.uncommitted_changes, Path(task.repo))):
        emit(Note(f"{task.repo} has {dirty} uncommitted change(s); the run starts from "
                  f"{spec.ref or 'HEAD'} ({ctx.workspace.base_commit[:12]}) and does not see them: "
                  "commit them first if the agent should", level="warning"))
    emit(RunStarted(ctx.run_id, spec.name, spec.model or "", ctx.workspace.base_commit, spec.sandbox.backend,
                    spec.limits.model_dump()))


async def _start_sandbox(ctx: RunContext, emit: EmitFn, env: dict[str, str]) -> None:
    spec, workspace = ctx.task.spec, ctx.workspace
    assert workspace is not None
    if spec.sandbox.backend == "local":
        from runner.sandbox.local import LOCAL_WARNING

        emit(Note(LOCAL_WARNING, level="warning"))
    # Git inside a container sees only what the base commit reaches, not the user's other refs.
    # A first run on this commit writes that store while the container starts (objectstore.py).
    objects: Path | None = None
    objects_ready: Callable[[], Awaitable[None]] | None = None
    if spec.sandbox.backend == "docker":
        # In a thread nobody waits for past a cancellation (the wall clock, a signal): runner/deadline.py.
        objects = (await blocking(workspace.open_objects, limit_s=None, what="open-objects")).objects
        writing = asyncio.ensure_future(asyncio.to_thread(workspace.finish_objects))
        # Its error is the start's (awaited there); a start that failed first leaves it unread.
        writing.add_done_callback(lambda t: t.cancelled() or t.exception())

        async def objects_ready() -> None:
            await asyncio.shield(writing)  # a cancelled start must not abandon the writer midway
    ctx.sandbox = make_sandbox(
        spec.sandbox.backend,
        SandboxConfig(
            run_id=ctx.run_id, worktree=workspace.path, env=env, setup=tuple(spec.sandbox.setup),
            deadline_s=spec.limits.timeout, image=spec.sandbox.image, network=spec.sandbox.network,
            cpus=spec.sandbox.cpus, memory=spec.sandbox.memory, pids=spec.sandbox.pids,
            git_dir=workspace.git_dir, base_commit=workspace.base_commit, git_objects=objects,
            setup_timeout_s=spec.sandbox.setup_timeout,
            git_objects_ready=objects_ready,
            disk=spec.sandbox.disk,
            disk_fsid=workspace.loop.fsid if workspace.loop is not None else None,
        ),
    )
    emit(Note(f"starting the {spec.sandbox.backend} sandbox"))
    started = time.monotonic()
    try:
        await ctx.sandbox.start()
    finally:  # each setup command's output and time, also when one failed
        for step in ctx.sandbox.setup_log:
            emit(SetupFinished(step.command, step.exit_code, step.duration_s, step.output_tail, step.timed_out))
    ctx.sandbox_started = True
    emit(SandboxReady(spec.sandbox.backend, round(time.monotonic() - started, 3), ctx.result.disk_cap))
    if spec.sandbox.backend == "docker":  # git inside is set up beside the first model call
        sandbox = ctx.sandbox
        git = asyncio.ensure_future(sandbox.git_ready())

        def git_done(task: asyncio.Future[None]) -> None:
            if ctx.sandbox is sandbox and not task.cancelled() and task.exception() is None:
                emit(Note(f"git inside the sandbox is ready ({time.monotonic() - started:.3f}s after the sandbox's "
                          "start)", level="debug"))  # the trajectory's; the console's with -v

        git.add_done_callback(git_done)


async def _make_agent(ctx: RunContext, tools: ToolRegistry) -> Agent:
    spec, workspace = ctx.task.spec, ctx.workspace
    assert workspace is not None and ctx.model is not None and ctx.sandbox is not None
    instructions = await blocking(lambda: workspace.read_first_base_file(("AGENTS.md", "CLAUDE.md"),
                                                                          ctx.instructions_commit),
                                  limit_s=None, what="read-instructions")
    policy = Policy.from_spec(spec.policy)

    def may_access(tool: str, path: str) -> bool:
        return isinstance(policy.check(tool, {"path": path, "pattern": "."}), Allow)

    return Agent(
        model=ctx.model,
        tools=tools,
        policy=policy,
        tool_context=ToolContext(ctx.sandbox, spec.limits.tool_timeout, may_access=may_access),
        guards=Guards(spec.limits.max_turns, spec.limits.max_cost_usd, spec.limits.circuit_breaker),
        system=build_system_prompt(workspace.base_commit, instructions,
                                   [n for n in tools.names() if n.startswith("mcp__")]),
        task_message=build_task_message(spec.name, ctx.task.prompt),
        cost_of=ctx.prices.total,
        cost_bound_of=ctx.prices.total_bound,
        turn_cost_of=ctx.prices.turn_cost,
        context=ctx.context,
        model_retry_backoff_s=0.0 if _scripted(ctx) else 1.0,
    )
