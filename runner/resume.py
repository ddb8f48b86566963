"""Resume (SPEC §1 `astra-run run --resume OUT_DIR`): continue a run that stopped early.

A run that stopped on a limit, an interrupt or an infrastructure error, after its agent started,
keeps what it needs to go on, privately in its cache directory (`<cache>/runs/<run_id>/`, never in
the outputs, which are for sharing):
- `resume.json` (mode 0600): the conversation exactly as the API saw it (not redacted: it is sent
  back verbatim, thinking signatures included), the system prompt, the task as it ran, the
  counters (turns, tool calls, usage, cost, denials, time) and where the worktree is;
- the worktree itself, as the agent left it (not removed at the end of such a run).

`--resume OUT_DIR` reads OUT_DIR/result.json for the run id, loads that state, applies the new
limits (`--max-turns` and `--max-cost-usd` count the whole run; `--timeout` is the wall clock of
the new part) and runs again with the same run id, in a fresh sandbox on that worktree. The
outputs are then rewritten to describe the whole run: counters add up, trajectory.jsonl gets a
`run_resumed` event and the new part's events appended, and patch.diff holds every part's work.
`astra-run cleanup` removes a stopped run's state and worktree like any other dead run's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from runner.conversation import StateError, messages_from_state, messages_to_state
from runner.diskcap import IMAGE_NAME, LoopMount, is_mounted
from runner.errors import ConfigError
from runner.models.base import Message, ToolResult, ToolUse, Usage
from runner.result import PermissionDenial, RunResult
from runner.task import LimitsSpec, LoadedTask, TaskSpec
from runner.workspace import OWNER_FILE, Workspace

if TYPE_CHECKING:
    from runner.agent.loop import Agent
    from runner.models.base import Model
    from runner.run import RunContext

STATE_FILE = "resume.json"
STATE_VERSION = 1
RESUMABLE = frozenset({"limit", "interrupted", "error"})
NOT_COMPLETED = ("[astra-run: the run was stopped while this call was in progress, and has now been resumed. "
                 "The call may or may not have had its effect: check before you rely on it.]")


@dataclass
class Resumed:
    """A saved run, loaded: what run.py needs to continue it."""

    run_id: str
    part: int
    """The number of this part's resume (1 for the first)."""
    task: LoadedTask
    stopped: str
    state: dict[str, Any]
    instructions_commit: str | None

    @property
    def started_at(self) -> str:
        return str(self.state.get("started_at") or "")

    @property
    def duration_s(self) -> float:
        return float(self.state.get("duration_s") or 0.0)

    def workspace(self) -> Workspace:
        """The kept worktree, claimed by this process (so `astra-run cleanup` leaves it alone meanwhile)."""
        ws = self.state["workspace"]
        workspace = Workspace(git_dir=Path(ws["git_dir"]), base_commit=ws["base_commit"], path=Path(ws["path"]),
                              admin_dir=Path(ws["admin_dir"]), patch_git_dir=Path(ws["patch_git_dir"]),
                              lock=Path(ws["lock"]))
        if not workspace.path.is_dir() or not workspace.git_dir.is_dir():
            raise ConfigError(f"--resume: the run's worktree {workspace.path} is gone: nothing to resume")
        if is_mounted(workspace.path):  # its own file system, never copied off (the stopped part was killed)
            workspace.loop = LoopMount(workspace.path.parent / IMAGE_NAME, workspace.path)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "git_dir": str(workspace.git_dir)}
        (workspace.path.parent / OWNER_FILE).write_text(json.dumps(owner))
        return workspace

    def restore(self, agent: Agent, model: Model) -> None:
        """Put the saved conversation and counters back into a freshly built agent."""
        from runner.agent.loop import AgentState

        saved = self.state
        messages = _close_open_calls(messages_from_state(saved["messages"]))
        usage = {name: Usage(**u) for name, u in saved.get("usage", {}).items()}
        agent.system = saved["system"]
        agent.state = AgentState(
            messages=messages, turns=int(saved["turns"]), tool_calls=int(saved["tool_calls"]), usage=usage,
            cost_usd=saved.get("cost_usd"),
            denials=[PermissionDenial(d["tool"], d["input"], d.get("rule")) for d in saved.get("denials", [])],
            compactions=int(saved.get("compactions") or 0), cost_by_model=dict(saved.get("cost_by_model") or {}),
        )
        agent.guards.turns = agent.state.turns
        agent.guards.cost_usd = agent.state.cost_usd
        if agent.state.cost_usd is None:
            agent.guards.cost_usd, agent.guards.cost_estimated = agent.cost_bound_of(usage), True
        position = saved.get("scripted_position")
        if isinstance(position, int) and hasattr(model, "_next"):
            model._next = position  # a scripted model replays from where the last part stopped


def _close_open_calls(messages: list[Message]) -> list[Message]:
    """A run stopped during its tool calls has an assistant message whose calls got no result:
    the API refuses that, so each gets a result saying what happened."""
    if messages and messages[-1].role == "assistant":
        calls = [b for b in messages[-1].content if isinstance(b, ToolUse)]
        if calls:
            messages.append(Message("user", [ToolResult(c.id, NOT_COMPLETED, is_error=True) for c in calls]))
    return messages


# ------------------------------------------------------------------------------- saving


def save(ctx: RunContext, result: RunResult, resumed: Resumed | None) -> bool:
    """Keep what a resume needs, when this run can be resumed; returns whether it was kept."""
    if result.status not in RESUMABLE or result.exit_code == 2 or ctx.agent is None or ctx.workspace is None:
        return False
    state = ctx.agent.state
    ws = ctx.workspace
    task = ctx.task
    data = {
        "version": STATE_VERSION,
        "run_id": ctx.run_id,
        "part": resumed.part if resumed else 0,
        "stopped": f"{result.status}: {result.reason}",
        "started_at": result.started_at,
        "duration_s": result.duration_s,
        "task": {"spec": task.spec.model_dump(mode="json"), "path": str(task.path) if task.path else None,
                 "base_dir": str(task.base_dir), "prompt": task.prompt, "repo": task.repo},
        "instructions_commit": ctx.instructions_commit,
        "system": ctx.agent.system,
        "messages": messages_to_state(state.messages),
        "turns": state.turns, "tool_calls": state.tool_calls, "cost_usd": state.cost_usd,
        "usage": {m: u.as_dict() for m, u in state.usage.items()},
        "cost_by_model": dict(state.cost_by_model), "compactions": state.compactions,
        "denials": [dataclasses.asdict(d) for d in state.denials],
        "scripted_position": getattr(ctx.model, "_next", None),
        "workspace": {"git_dir": str(ws.git_dir), "base_commit": ws.base_commit, "path": str(ws.path),
                      "admin_dir": str(ws.admin_dir), "patch_git_dir": str(ws.patch_git_dir), "lock": str(ws.lock)},
    }
    path = ctx.run_dir / STATE_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, default=str)
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError) as exc:
        ctx.notes.append(f"the run cannot be resumed: its state could not be saved ({exc})")
        return False
    result.resumable = True
    return True


def discard(run_dir: Path) -> None:
    """A resumed run that finished: its saved state is no longer needed."""
    with contextlib.suppress(OSError):
        (run_dir / STATE_FILE).unlink()


# ------------------------------------------------------------------------------ loading


def load(out_dir: Path, cache: Path, limits: dict[str, Any]) -> Resumed:
    """The run whose outputs are in `out_dir`, ready to continue with `limits` (the flags given).
    Every reason there is nothing to resume is a ConfigError saying so."""
    where = f"--resume {out_dir}"
    try:
        result = json.loads((out_dir / "result.json").read_text(encoding="utf-8"))
    except OSError:
        raise ConfigError(f"{where}: there is no result.json there: nothing to resume") from None
    except ValueError:
        raise ConfigError(f"{where}: result.json is not JSON: nothing to resume") from None
    status, run_id = result.get("status"), result.get("run_id")
    if status not in RESUMABLE:
        raise ConfigError(f"{where}: the run ended with status {status!r}: nothing to resume (only runs "
                          "stopped by a limit, an interrupt or an infrastructure error can be resumed)")
    if not isinstance(run_id, str) or not run_id or "/" in run_id or run_id.startswith("."):
        raise ConfigError(f"{where}: result.json names no run: nothing to resume")
    path = cache / "runs" / run_id / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        why = ("it stopped before the agent started" if not result.get("resumable")
               else f"its saved state {path} is gone (astra-run cleanup, or another ASTRA_CACHE)")
        raise ConfigError(f"{where}: run {run_id} cannot be resumed: {why}") from None
    if state.get("version") != STATE_VERSION or state.get("run_id") != run_id:
        raise ConfigError(f"{where}: the saved state of run {run_id} is from another astra-run version")
    try:
        messages_from_state(state["messages"])
        spec = TaskSpec.model_validate(state["task"]["spec"])
        new_limits = LimitsSpec.model_validate({**spec.limits.model_dump(), **limits})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{where}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    except (StateError, KeyError, TypeError) as exc:
        raise ConfigError(f"{where}: the saved state of run {run_id} cannot be read: {exc}") from None
    _check_limits(where, state, new_limits)
    spec = spec.model_copy(update={"limits": new_limits,
                                   "outputs": spec.outputs.model_copy(update={"dir": str(out_dir)})})
    t = state["task"]
    task = LoadedTask(spec=spec, path=Path(t["path"]) if t.get("path") else None, base_dir=Path(t["base_dir"]),
                      prompt=t["prompt"], repo=t["repo"])
    return Resumed(run_id=run_id, part=int(state.get("part") or 0) + 1, task=task, stopped=str(state["stopped"]),
                   state=state, instructions_commit=state.get("instructions_commit"))


def _check_limits(where: str, state: dict[str, Any], limits: LimitsSpec) -> None:
    """The limit that stopped the run must have room now, or the resumed part stops at once."""
    turns, cost = int(state.get("turns") or 0), state.get("cost_usd")
    if turns >= limits.max_turns:
        raise ConfigError(f"{where}: the run has used {turns} turns and max_turns is {limits.max_turns}: "
                          "give --max-turns above that")
    if isinstance(cost, int | float) and cost >= limits.max_cost_usd:
        raise ConfigError(f"{where}: the run has spent ${cost:.4f} and max_cost_usd is ${limits.max_cost_usd:g}: "
                          "give --max-cost-usd above that")


def cmd_resume(args: argparse.Namespace) -> int:
    """`astra-run run --resume OUT_DIR [--max-turns N] [--max-cost-usd X] [--timeout D]`."""
    from runner.cli import _run_with_signals
    from runner.reports.console import Console
    from runner.settings import load_settings

    if args.task or args.repo or args.prompt or args.model or args.sandbox or args.out:
        raise ConfigError("--resume continues a run as it was: give only OUT_DIR and the new limits "
                          "(--max-turns, --max-cost-usd, --timeout)")
    settings = load_settings()
    limits = {k: v for k, v in {"max_turns": args.max_turns, "max_cost_usd": args.max_cost_usd,
                                "timeout": args.timeout}.items() if v is not None}
    resumed = load(Path(args.resume).expanduser().resolve(), settings.cache, limits)
    console = None if args.json else Console(sys.stdout, verbosity=-1 if args.quiet else (1 if args.verbose else 0))
    return asyncio.run(_run_with_signals(resumed.task, settings, args.keep, console, json_out=args.json,
                                         resume=resumed, instructions_commit=resumed.instructions_commit))
