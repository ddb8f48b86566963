"""What a run produced, as typed values: the single source for result.json and every report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from runner.errors import Status
from runner.models.base import Message, TextBlock, Usage

OUTPUT_TAIL_CHARS = 4000
"""How much of a verify check's output result.json, summary.md and the comment carry (its end:
where a test runner prints the failures and the totals)."""
FINAL_MESSAGE_CHARS = 20_000
"""The agent's last words are kept up to this length (a summary, not a transcript)."""


def output_tail(output: str, limit: int = OUTPUT_TAIL_CHARS) -> str:
    """The end of a check's output, cut at a line start, saying what was left out."""
    if len(output) <= limit:
        return output
    tail = output[-limit:]
    newline = tail.find("\n")
    if 0 <= newline < limit // 4:
        tail = tail[newline + 1:]
    return f"[... {len(output) - len(tail)} earlier characters cut]\n{tail}"


def last_words(messages: list[Message]) -> str:
    """The agent's final message: the text of the last assistant message that has any.

    When the agent finished, that is its closing summary; when a limit stopped it, the last
    thing it said, which is still the best account of where it got to.
    """
    for message in reversed(messages):
        if message.role != "assistant":
            continue
        text = "".join(b.text for b in message.content if isinstance(b, TextBlock))
        if text.strip():
            text = text.strip()
            return text if len(text) <= FINAL_MESSAGE_CHARS else text[:FINAL_MESSAGE_CHARS] + "\n[... cut]"
    return ""


@dataclass(frozen=True)
class VerifyResult:
    name: str
    passed: bool
    exit_code: int | None
    """None when the check was killed at its timeout or could not run."""
    output: str = ""
    """The check's output, already capped (head and tail)."""
    duration_s: float = 0.0
    timed_out: bool = False
    junit_xml: str | None = None
    """What the check wrote to $ASTRA_JUNIT, if anything."""
    ran: bool = True
    """False for a check the run never got to (wall clock, interrupt, infrastructure error)."""


@dataclass(frozen=True)
class FileChange:
    path: str
    insertions: int
    deletions: int
    binary: bool = False


@dataclass(frozen=True)
class PatchStats:
    files_changed: int = 0
    insertions: int = 0
    deletions: int = 0
    files: tuple[FileChange, ...] = ()


@dataclass(frozen=True)
class PermissionDenial:
    tool: str
    input: dict[str, Any]
    rule: str | None
    """The deny rule that matched; None when the policy default denied it."""


@dataclass
class RunResult:
    """Everything known about a run when it ends (or so far, when it was stopped early)."""

    run_id: str
    task: str
    model: str
    status: Status = "error"
    reason: str = ""
    exit_code: int = 4
    turns: int = 0
    tool_calls: int = 0
    duration_s: float = 0.0
    started_at: str = ""
    verify: list[VerifyResult] = field(default_factory=list)
    patch: PatchStats = field(default_factory=PatchStats)
    permission_denials: list[PermissionDenial] = field(default_factory=list)
    usage: dict[str, Usage] = field(default_factory=dict)
    """Token usage per model name, summed over the run."""
    cost_usd: float | None = 0.0
    """None when some model's price is unknown."""
    base_commit: str | None = None
    patch_excluded: list[str] = field(default_factory=list)
    disk_cap: str | None = None
    """How sandbox.disk was enforced: `kernel` (the worktree's own file system) or `poll` (du)."""
    """Changed files left out of patch.diff, each with why (special, huge, unreadable, holds a secret)."""
    error_kind: str | None = None
    """For status error: which lane (sandbox, model_api, git, mcp, patch, output, internal)."""
    task_digest: str | None = None
    """What the run was asked to do, as a digest (runner/digest.py): `batch --resume` reuses a
    result only for the same digest."""
    compactions: int = 0
    """Times the conversation was made smaller to stay inside the context window."""
    cost_by_model: dict[str, float | None] = field(default_factory=dict)
    """USD per model priced turn by turn (empty: price the summed usage)."""
    final_message: str = ""
    """The agent's last words to the user (SPEC §4): its closing summary."""
    resumable: bool = False
    """The run stopped early and its conversation is kept: `astra-run run --resume OUT_DIR`."""
    resumed: int = 0
    """How many times this run was resumed (its outputs describe all its parts)."""

    def to_json(self) -> dict[str, Any]:
        """result.json (SPEC §4)."""
        return {
            "status": self.status,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "run_id": self.run_id,
            "task": self.task,
            "model": self.model,
            "turns": self.turns,
            "tool_calls": self.tool_calls,
            "duration_s": round(self.duration_s, 3),
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
            "final_message": self.final_message,
            "verify": [
                {"name": v.name, "passed": v.passed, "exit_code": v.exit_code, "output_tail": output_tail(v.output),
                 **({} if v.ran else {"ran": False})}
                for v in self.verify
            ],
            "patch": {
                "files_changed": self.patch.files_changed,
                "insertions": self.patch.insertions,
                "deletions": self.patch.deletions,
            },
            "permission_denials": [asdict(d) for d in self.permission_denials],
            "started_at": self.started_at,
            "base_commit": self.base_commit,
            "error_kind": self.error_kind,
            "task_digest": self.task_digest,
            "patch_excluded": self.patch_excluded,
            "disk_cap": self.disk_cap,
            "usage": {m: u.as_dict() for m, u in self.usage.items()},
            "compactions": self.compactions,
            "resumable": self.resumable,
            "resumed": self.resumed,
        }
