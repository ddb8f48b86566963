"""How a run ends: status, exit code and reason from what stopped it (SPEC §1, §4)."""

from __future__ import annotations

import dataclasses

from runner.agent.loop import AgentState
from runner.errors import AstraError, InfraError, Interrupted, ModelAPIError, SandboxError
from runner.redact import Redactor
from runner.reports.junit import redact_junit
from runner.result import RunResult
from runner.workspace import GitError

NOTHING_CHANGED = "the agent finished without changing anything"


def set_outcome(
    result: RunResult, state: AgentState, outcome: AstraError | None, notes: list[str], *, expect_changes: bool = True
) -> None:
    """`expect_changes` (the task's field): a run that changed nothing and has no verify checks to
    show its work is `failed`, unless the task says a run that changes nothing can succeed."""
    if isinstance(outcome, Interrupted):
        result.status, result.exit_code, result.reason = "interrupted", outcome.code, str(outcome)
    elif outcome is not None:
        result.status, result.exit_code, result.reason = outcome.status, outcome.exit_code, str(outcome)
        if isinstance(outcome, InfraError):
            result.error_kind = error_kind(outcome)
    elif not state.finished:
        result.status, result.exit_code = "failed", 1
        result.reason = (f"the model refused: {_refusal(state)}"
                         if state.stop_reason == "refusal"
                         else f"the agent ended without finishing (stop_reason: {state.stop_reason or 'none'})")
    elif failed := [v.name for v in result.verify if not v.passed]:
        result.status, result.exit_code = "failed", 1
        result.reason = f"verify failed: {', '.join(failed)}"
    elif expect_changes and not result.verify and result.patch.files_changed == 0:
        result.status, result.exit_code = "failed", 1
        result.reason = (f"{NOTHING_CHANGED} (and the task has no verify checks; set `expect_changes: false` "
                         "when a run that changes nothing is a success)")
    else:
        result.status, result.exit_code = "success", 0
        result.reason = "the agent finished" + (
            f" and all {len(result.verify)} verify checks passed" if result.verify else " (no verify checks)"
        )
    if notes:
        result.reason += " (" + "; ".join(notes) + ")"


def record_output_failures(result: RunResult, problems: list[str], kind: str = "output") -> None:
    """Outputs that could not be made (the patch, a report, the trajectory): the run is an error.

    What the run itself came to stays in the reason; an interrupted run stays interrupted (its
    exit code is the signal's) and an error keeps its own kind. Never a success (SPEC §1: exit 4).
    """
    if not problems:
        return
    text = "; ".join(problems)
    if result.status == "interrupted" or result.status == "error":
        if text not in result.reason:
            result.reason += f" ({text})"
        return
    before = f"{result.status}: {result.reason}" if result.reason else result.status
    result.status, result.exit_code, result.error_kind = "error", 4, kind
    result.reason = f"{text} (the run itself: {before})"


def _refusal(state: AgentState) -> str:
    """The refusal's words and the API's stop_details (category, explanation)."""
    said = " ".join(state.final_text.split())[:300] or "(no text)"
    details = state.stop_details or {}
    shown = ", ".join(f"{k}: {v}" for k, v in details.items() if v not in (None, "", [], {}))
    return f"{said} (stop_details: {shown})" if shown else said


def redact_result(result: RunResult, redactor: Redactor) -> RunResult:
    """A copy of the result with every free-text field redacted (reports are written from it)."""
    return dataclasses.replace(
        result,
        reason=redactor.text(result.reason),
        final_message=redactor.text(result.final_message),
        verify=[
            dataclasses.replace(v, output=redactor.text(v.output),
                                junit_xml=redact_junit(v.junit_xml, redactor.text) if v.junit_xml else None)
            for v in result.verify
        ],
        permission_denials=[
            dataclasses.replace(d, input=redactor.data(d.input)) for d in result.permission_denials
        ],
    )


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, SandboxError):
        return "sandbox"
    if isinstance(exc, ModelAPIError):
        return "model_api"
    if isinstance(exc, GitError):
        return "git"
    return type(exc).__name__.removesuffix("Error").lower() or "internal"
