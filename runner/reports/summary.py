"""summary.md (SPEC §4) and the console's closing lines, both from a RunResult.

Status and reason come first, as a plain word (no emoji): that is what a reader scans for.
`append_step_summary` adds the markdown to $GITHUB_STEP_SUMMARY and never fails the run.
Everything here is read by a person, and file names, reasons and check names come from the
sandbox: terminal escapes, control characters and bidi/zero-width characters are removed from
the whole text (`strip_hidden`), so nothing can reorder, hide or recolour what is shown.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from runner.redact_view import strip_hidden
from runner.result import RunResult

log = logging.getLogger(__name__)

STATUS_WORDS = {
    "success": "SUCCESS",
    "failed": "FAILED",
    "limit": "STOPPED BY A LIMIT",
    "error": "INFRASTRUCTURE ERROR",
    "interrupted": "INTERRUPTED",
}
MAX_FILES_LISTED = 50


def status_word(result: RunResult) -> str:
    if result.status == "error" and result.exit_code == 2:
        return "CONFIGURATION ERROR"
    return STATUS_WORDS.get(result.status, result.status.upper())


def format_cost(cost: float | None) -> str:
    return "unknown" if cost is None else f"${cost:.4f}"


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _md_cell(text: str) -> str:
    """Text safe inside a markdown table cell: one line, pipes and backticks escaped."""
    return " ".join(text.split()).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")


def _md_code(text: str) -> str:
    """Inline code when the text allows it (a backtick cannot be escaped inside a code span)."""
    cell = _md_cell(text)
    return cell if "`" in text else f"`{cell}`"


def _md_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def summary_md(result: RunResult) -> str:
    """The markdown summary of a run."""
    lines = [f"## astra-run: {_md_cell(result.task)}", ""]
    lines.append(f"**Status: {status_word(result)}** (exit code {result.exit_code})")
    lines.append("")
    if result.reason:
        lines += [f"Reason: {_md_line(result.reason)}", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| Turns | {result.turns} |",
        f"| Tool calls | {result.tool_calls} |",
        f"| Duration | {format_duration(result.duration_s)} |",
        f"| Cost | {format_cost(result.cost_usd)} |",
        f"| Model | {_md_code(result.model)} |",
        f"| Run | {_md_code(result.run_id)} |",
    ]
    if result.status == "error" and result.error_kind:
        lines.append(f"| Error kind | {_md_cell(result.error_kind)} |")
    if result.permission_denials:
        lines.append(f"| Permission denials | {len(result.permission_denials)} |")
    lines.append("")

    patch = result.patch
    lines.append(f"### Changed files ({patch.files_changed}: +{patch.insertions} -{patch.deletions})")
    lines.append("")
    if patch.files:
        lines += ["| File | + | - |", "|---|---:|---:|"]
        for change in patch.files[:MAX_FILES_LISTED]:
            plus, minus = ("bin", "bin") if change.binary else (str(change.insertions), str(change.deletions))
            lines.append(f"| {_md_code(change.path)} | {plus} | {minus} |")
        if len(patch.files) > MAX_FILES_LISTED:
            lines.append(f"| ... and {len(patch.files) - MAX_FILES_LISTED} more | | |")
    else:
        lines.append("No files changed.")
    lines.append("")

    lines += ["### Verify", ""]
    if result.verify:
        lines += ["| Check | Result | Exit code | Time |", "|---|---|---:|---:|"]
        for check in result.verify:
            verdict = ("not run" if not check.ran else "passed" if check.passed
                       else "timed out" if check.timed_out else "FAILED")
            code = "-" if check.exit_code is None else str(check.exit_code)
            lines.append(
                f"| {_md_cell(check.name)} | {verdict} | {code} | {format_duration(check.duration_s)} |"
            )
    else:
        lines.append("No checks ran.")
    lines.append("")
    return strip_hidden("\n".join(lines))


def compact_summary(result: RunResult) -> str:
    """A few plain lines for the end of the console output."""
    reason = _md_line(result.reason, 300) if result.reason else ""
    head = f"astra-run {result.task}: {status_word(result)} (exit {result.exit_code})"
    lines = [head + (f": {reason}" if reason else "")]
    lines.append(
        f"  turns {result.turns}, tool calls {result.tool_calls}, {format_duration(result.duration_s)},"
        f" cost {format_cost(result.cost_usd)}"
    )
    patch = result.patch
    lines.append(f"  changed {patch.files_changed} file(s), +{patch.insertions} -{patch.deletions}")
    if result.verify:
        passed = sum(1 for v in result.verify if v.passed)
        failed = [v.name for v in result.verify if not v.passed]
        line = f"  verify {passed}/{len(result.verify)} passed"
        if failed:
            line += "; failed: " + ", ".join(_md_line(n, 60) for n in failed[:5])
            if len(failed) > 5:
                line += f" and {len(failed) - 5} more"
        lines.append(line)
    return strip_hidden("\n".join(lines))


def append_step_summary(md: str) -> bool:
    """Append `md` to $GITHUB_STEP_SUMMARY when it is set. Returns whether it was written;
    a failure is logged, never raised."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    md = strip_hidden(md)
    try:
        with Path(target).open("a", encoding="utf-8") as fh:
            fh.write(md if md.endswith("\n") else md + "\n")
            fh.write("\n")
    except (OSError, ValueError) as exc:
        log.warning("could not append to GITHUB_STEP_SUMMARY (%s): %s", target, exc)
        return False
    return True
