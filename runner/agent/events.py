"""Typed events of a run. The agent loop yields them; the trajectory, console and guards consume them.

Each event becomes one line of trajectory.jsonl: `{"type": <kind>, "t": <seconds since start>, ...}`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from runner.models.base import Usage


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            data[f.name] = value.as_dict() if isinstance(value, Usage) else _plain(value)
        return data


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    run_id: str
    task: str
    model: str
    base_commit: str
    sandbox: str
    limits: dict[str, Any]


@dataclass(frozen=True)
class AgentReady(Event):
    """What the model is given, once the agent is built: the trajectory folds it into its first
    event (`run_started`), so a reader can rebuild the conversation from the file alone."""

    kind: ClassVar[str] = "agent_ready"
    system: str
    tools: list[dict[str, Any]]
    model_options: dict[str, Any]
    max_tokens: int | None
    task_message: str


@dataclass(frozen=True)
class RunResumed(Event):
    """A stopped run continues (`astra-run run --resume`): the limits it now has."""

    kind: ClassVar[str] = "run_resumed"
    part: int
    """1 for the first resume, 2 for the second ..."""
    stopped: str
    """Why the previous part stopped (its status and reason)."""
    limits: dict[str, Any]
    turns: int
    cost_usd: float | None


@dataclass(frozen=True)
class Note(Event):
    """Something the runner did or saw that is not a turn: setup, warnings, phases."""

    kind: ClassVar[str] = "note"
    message: str
    level: str = "info"


@dataclass(frozen=True)
class SetupFinished(Event):
    """One setup command ran (before the agent, as root, with network)."""

    kind: ClassVar[str] = "setup"
    command: str
    exit_code: int | None
    duration_s: float
    output_tail: str
    timed_out: bool = False


@dataclass(frozen=True)
class SandboxReady(Event):
    """The sandbox is up (setup done, network cut, helper answering): the agent starts next."""

    kind: ClassVar[str] = "sandbox_ready"
    backend: str
    duration_s: float
    disk_cap: str | None = None
    """How sandbox.disk is enforced: `kernel` (the worktree's own file system) or `poll` (du)."""


@dataclass(frozen=True)
class ModelTurn(Event):
    kind: ClassVar[str] = "model_turn"
    turn: int
    model: str
    stop_reason: str
    text: str
    tool_uses: list[dict[str, Any]]
    usage: Usage
    cost_usd: float | None
    """Cost of this turn alone (None when a price is unknown): summing it over turns gives the run's."""
    duration_s: float
    retries: int = 0
    """Attempts re-sent for this turn: the SDK's own (429, 529, 5xx, connection) and ours (a stream
    that died midway)."""
    cumulative_cost_usd: float | None = None
    """Cost of the whole run so far, this turn included (`cost_usd` is this turn's alone)."""
    content: list[dict[str, Any]] = field(default_factory=list)
    """Every block of the response as the API sent it (thinking with its signature, compaction,
    unknown types), in order; redacted by the trajectory writer like everything it writes."""
    stop_details: dict[str, Any] | None = None
    billed_usage: Usage | None = None
    """Set when the API billed more than the response's own usage (compaction iterations)."""


@dataclass(frozen=True)
class ContextCompacted(Event):
    """The conversation was made smaller to stay inside the context window (SPEC §2 `context`)."""

    kind: ClassVar[str] = "context_compacted"
    turn: int
    mechanism: str
    """api_compaction, api_clearing or client_clearing (runner.agent.context)."""
    tokens_before: int
    tokens_after: int | None
    detail: str


@dataclass(frozen=True)
class ModelError(Event):
    kind: ClassVar[str] = "model_error"
    turn: int
    error: str
    consecutive: int


@dataclass(frozen=True)
class PolicyDecision(Event):
    kind: ClassVar[str] = "policy"
    tool_use_id: str
    tool: str
    allowed: bool
    rule: str | None
    message: str = ""


@dataclass(frozen=True)
class ToolCallStarted(Event):
    kind: ClassVar[str] = "tool_call"
    turn: int
    tool_use_id: str
    tool: str
    input: dict[str, Any]


@dataclass(frozen=True)
class ToolCallFinished(Event):
    kind: ClassVar[str] = "tool_result"
    turn: int
    tool_use_id: str
    tool: str
    is_error: bool
    output: str
    duration_s: float
    consecutive_failures: int = 0


@dataclass(frozen=True)
class LimitReached(Event):
    kind: ClassVar[str] = "limit"
    limit: str
    value: Any
    reason: str


@dataclass(frozen=True)
class RunError(Event):
    kind: ClassVar[str] = "error"
    error_kind: str
    message: str


@dataclass(frozen=True)
class VerifyFinished(Event):
    kind: ClassVar[str] = "verify"
    name: str
    passed: bool
    exit_code: int | None
    duration_s: float
    output_tail: str = ""


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: str
    reason: str
    exit_code: int
    turns: int
    tool_calls: int
    cost_usd: float | None
    duration_s: float
    extra: dict[str, Any] = field(default_factory=dict)
