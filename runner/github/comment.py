"""The tracking comment: "working" first, then updated in place with the outcome.

It is found again (a re-run of the same job updates it rather than adding another) by its hidden
marker `<!-- astra-run:tracking run=<GITHUB_RUN_ID> trigger=<comment id or event> -->`. The marker
also keeps the comment from ever triggering a run itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from runner.github.text import TRACKING_MARKER
from runner.result import RunResult

MAX_COMMENT = 60_000
"""GitHub's limit is 65536 characters; leave room for the frame."""
PATCH_INLINE_LINES = 40
"""Longer patches are collapsed in <details>."""
MAX_FILES = 30


def marker(run_id: str, trigger: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", trigger)[:60]
    return f"{TRACKING_MARKER} run={re.sub(r'[^0-9]', '', run_id) or '0'} trigger={safe} -->"


def working_body(mark: str, run_url: str, what: str) -> str:
    return f"{mark}\n**astra-run** is working on {what}… ([job log]({run_url}))\n"


@dataclass
class Outcome:
    """What the comment reports besides the run result: how publishing went."""

    published: list[str] = field(default_factory=list)
    """Lines like 'Pushed branch `astra/...`', 'Opened draft pull request URL'."""
    not_published: str | None = None
    """Why the changes were not pushed (when a push was asked for)."""


def _code(text: str) -> str:
    clean = " ".join(text.split()).replace("`", "'")
    return f"`{clean}`"


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _one_line(text: str, limit: int = 600) -> str:
    line = " ".join(text.split())
    line = line.replace("@", "@\u200b")  # no mentions from run text
    return line if len(line) <= limit else line[: limit - 1] + "…"


def progress_body(mark: str, run_url: str, what: str, checklist: str) -> str:
    """The comment while the run goes: the headline and the live checklist of turns and tool calls."""
    return f"{mark}\n**astra-run** is working on {what}… ([job log]({run_url}))\n\n{checklist}\n"


def result_body(mark: str, run_url: str, result: RunResult, patch: str, outcome: Outcome,
                title: str = "astra-run", steps: str = "") -> str:
    from runner.reports.summary import format_cost, format_duration, quote_md, status_word, verify_tails_md

    lines = [mark, f"### {title}: {status_word(result)}", "", f"**Reason:** {_one_line(result.reason)}", ""]
    verify = ", ".join(f"{_code(v.name)} {'passed' if v.passed else 'FAILED'}" for v in result.verify) or "none"
    lines += [
        "| | |", "|---|---|",
        f"| Duration | {format_duration(result.duration_s)} |",
        f"| Cost | {format_cost(result.cost_usd)} |",
        f"| Turns | {result.turns} ({result.tool_calls} tool calls) |",
        f"| Verify | {verify} |",
        "",
    ]
    if result.final_message.strip():
        lines += ["**Final message:**", "", quote_md(result.final_message), ""]
    lines += verify_tails_md(result.verify)
    stats = result.patch
    if stats.files_changed:
        lines.append(f"**Changed files** ({stats.files_changed}, +{stats.insertions} −{stats.deletions}):")
        for f in stats.files[:MAX_FILES]:
            change = "binary" if f.binary else f"+{f.insertions} −{f.deletions}"
            lines.append(f"- {_code(f.path)} ({change})")
        if len(stats.files) > MAX_FILES:
            lines.append(f"- … and {len(stats.files) - MAX_FILES} more")
        lines.append("")
    else:
        lines += ["No files were changed.", ""]
    lines += outcome.published
    if outcome.not_published:
        lines.append(f"**Not published:** {_one_line(outcome.not_published)}")
    if outcome.published or outcome.not_published:
        lines.append("")
    if steps.strip():
        lines += ["<details><summary>Steps</summary>", "", steps.strip(), "", "</details>", ""]
    footer = f"[Job log and artifacts]({run_url})"
    if patch.strip():
        head = "\n".join(lines)
        room = MAX_COMMENT - len(head) - len(footer) - 200
        shown = patch if len(patch) <= room else patch[: max(0, room)] + "\n[... patch cut: see the artifact]\n"
        fence = _fence(shown)
        block = f"{fence}diff\n{shown.rstrip()}\n{fence}"
        n = patch.count("\n")
        if n > PATCH_INLINE_LINES or len(shown) < len(patch):
            lines += [f"<details><summary>Patch ({n} lines)</summary>", "", block, "", "</details>", ""]
        else:
            lines += ["**Patch:**", "", block, ""]
    lines.append(footer)
    return "\n".join(lines) + "\n"


def simple_body(mark: str, run_url: str, headline: str, detail: str) -> str:
    return f"{mark}\n### astra-run: {headline}\n\n{_one_line(detail, 2000)}\n\n[Job log]({run_url})\n"
