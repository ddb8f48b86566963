"""The texts astra-run publishes besides the tracking comment: the commit message and the pull
request's title and body. The agent's final message goes into both: as plain text in the commit
(`git commit-tree -F` keeps it verbatim), as escaped markdown in the pull request.
"""

from __future__ import annotations

import re

from runner.github.event import Request
from runner.github.text import TRACKING_MARKER
from runner.reports.summary import quote_md

PR_MARKER = TRACKING_MARKER.replace("tracking", "pr") + " -->"
"""Opens the body of every pull request astra-run opens (how a follow-up recognises one)."""
COMMIT_BODY_CHARS = 4000


def commit_text(text: str, limit: int = COMMIT_BODY_CHARS) -> str:
    """Model text fit for a commit message body: no control characters (a terminal showing
    `git log` would obey them), capped."""
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", "", text.replace("\r\n", "\n")).strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " [... cut]"


def title(req: Request, event_name: str, run_id: str) -> str:
    if req.kind == "none":
        return f"astra-run: {event_name} run {run_id}"
    words = " ".join(req.title.split())[:120]
    return f"astra-run: {words} (#{req.number})" if words else f"astra-run: #{req.number}"


def commit_message(headline: str, final_message: str, run_url: str, actor: str | None) -> str:
    """Title, the agent's final message as the body, then the trailers."""
    lines = [headline, ""]
    words = commit_text(final_message)
    if words:
        lines += [words, ""]
    lines.append(f"Made by astra-run in {run_url}")
    if actor:
        lines.append(f"Requested-by: {actor}")
    return "\n".join(lines) + "\n"


def pr_body(req: Request, run_url: str, final_message: str) -> str:
    link = (f"Resolves #{req.number}." if req.kind == "issue"
            else f"Follow-up to #{req.number}." if req.kind == "pull_request" else "")
    asked = f" requested by @{req.actor}" if req.actor else ""
    body = (f"{PR_MARKER}\n"
            f"Draft changes made by astra-run{asked}. {link}\n\nReview them before merging: "
            f"[job log and artifacts]({run_url}).\n")
    if final_message.strip():
        body += "\n**What the agent says it did:**\n\n" + quote_md(final_message) + "\n"
    return body
