"""The Actions environment and the triggering event, turned into a request (or a reason to skip).

Which events start a run (docs/github.md):
- `issue_comment` (created; on an issue or a pull request) and `pull_request_review_comment`
  (created): the comment holds the trigger phrase outside code, quotes and hidden markup;
- `issues`: `opened` with the trigger phrase in the body, or `labeled` with a label named like
  the trigger phrase without its slash (`astra` for `/astra`) or exactly like it;
- `workflow_dispatch` and `schedule`: always (only people with write access can dispatch, and a
  schedule runs the default branch's workflow); the task comes from ASTRA_TASK (a task file),
  the dispatch input `prompt` or ASTRA_PROMPT.
Comments by bots (any account of type Bot or named `*[bot]`) and astra-run's own tracking
comments never trigger, unless the bot is listed in ASTRA_ALLOWED_BOTS (comma-separated logins;
the permission check still applies to them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runner.errors import ConfigError
from runner.github.text import (
    MAX_INSTRUCTION,
    bot_allowed,
    code_block,
    find_trigger,
    is_bot,
    is_tracking_comment,
    sanitize,
    strip_invisible_chars,
)

SUPPORTED = ("issue_comment", "pull_request_review_comment", "issues", "workflow_dispatch", "schedule")


@dataclass(frozen=True)
class GitHubEnv:
    event_name: str
    event_path: Path
    repository: str
    token: str = field(repr=False)
    """Never in a repr or a log line (cmd_github sets it with dataclasses.replace)."""
    api_url: str
    server_url: str
    run_id: str
    step_summary: str | None
    output_file: str | None
    ref_name: str | None
    trigger_phrase: str
    allowed_bots: list[str]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], trigger_phrase: str) -> GitHubEnv:
        missing = [n for n in ("GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_REPOSITORY") if not environ.get(n)]
        if missing:
            raise ConfigError(f"astra-run github runs inside a GitHub Actions job: {', '.join(missing)} not set")
        repository = environ["GITHUB_REPOSITORY"]
        if repository.count("/") != 1 or not all(repository.split("/")):
            raise ConfigError(f"GITHUB_REPOSITORY: {repository!r} is not OWNER/NAME")
        return cls(
            event_name=environ["GITHUB_EVENT_NAME"],
            event_path=Path(environ["GITHUB_EVENT_PATH"]),
            repository=repository,
            token=environ.get("GITHUB_TOKEN", ""),
            api_url=environ.get("GITHUB_API_URL") or "https://api.github.com",
            server_url=(environ.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/"),
            run_id=environ.get("GITHUB_RUN_ID", "0"),
            step_summary=environ.get("GITHUB_STEP_SUMMARY") or None,
            output_file=environ.get("GITHUB_OUTPUT") or None,
            ref_name=environ.get("GITHUB_REF_NAME") or None,
            trigger_phrase=(environ.get("ASTRA_TRIGGER_PHRASE") or trigger_phrase).strip() or "/astra",
            allowed_bots=[b.strip() for b in environ.get("ASTRA_ALLOWED_BOTS", "").split(",") if b.strip()],
        )

    @property
    def run_url(self) -> str:
        return f"{self.server_url}/{self.repository}/actions/runs/{self.run_id}"


def load_event(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"GITHUB_EVENT_PATH: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"GITHUB_EVENT_PATH: {path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"GITHUB_EVENT_PATH: {path}: expected a JSON object")
    return data


@dataclass(frozen=True)
class Request:
    """What the event asks for: who asked, on what, and the (sanitised) words."""

    event: str
    actor: str | None
    """Whose repository permission must be write or better; None for trusted events."""
    instruction: str
    kind: Literal["issue", "pull_request", "none"]
    number: int | None
    comment_id: int | None = None
    title: str = ""
    body: str = ""
    author: str = ""
    """Who wrote the issue / pull request (its text is context, not instructions)."""
    review_context: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skip:
    reason: str


def _user(obj: Any) -> dict[str, Any]:
    return obj if isinstance(obj, dict) else {}


def _login(user: Any) -> str:
    return str(_user(user).get("login") or "")


def _comment_request(env: GitHubEnv, event: dict[str, Any]) -> Request | Skip:
    action = event.get("action")
    if action != "created":
        return Skip(f"{env.event_name}: action {action!r} is not 'created' (edits never trigger)")
    comment = _user(event.get("comment"))
    body = comment.get("body")
    if is_tracking_comment(body if isinstance(body, str) else None):
        return Skip("the comment is astra-run's own tracking comment")
    user = comment.get("user")
    login = _login(user)
    if is_bot(user) and not bot_allowed(login, env.allowed_bots):
        return Skip(f"the comment is by a bot ({login or 'unknown'}) not listed in ASTRA_ALLOWED_BOTS")
    instruction = find_trigger(body if isinstance(body, str) else None, env.trigger_phrase)
    if instruction is None:
        return Skip(f"no {env.trigger_phrase} trigger in the comment (outside code, quotes and hidden text)")
    comment_id = comment.get("id") if isinstance(comment.get("id"), int) else None
    if env.event_name == "pull_request_review_comment":
        pr = _user(event.get("pull_request"))
        where = ""
        if comment.get("path"):
            line = comment.get("line") or comment.get("original_line") or comment.get("position")
            path = " ".join(strip_invisible_chars(str(comment["path"]))[:300].split()).replace("`", "'")
            where = f"Review comment on `{path}`" + (f" line {line}" if isinstance(line, int) else "")
            if isinstance(comment.get("diff_hunk"), str):
                # code, shown verbatim on GitHub: only invisible characters go (sanitize() would eat `<div>`)
                where += "\n" + code_block(comment["diff_hunk"], "diff", 4000)
        return Request(
            event=env.event_name, actor=login, instruction=instruction, kind="pull_request",
            number=_number(pr.get("number")), comment_id=comment_id, title=sanitize(pr.get("title"), 500),
            body=sanitize(pr.get("body")), author=_login(pr.get("user")), review_context=where, extra={"pull": pr},
        )
    issue = _user(event.get("issue"))
    return Request(
        event=env.event_name, actor=login, instruction=instruction,
        kind="pull_request" if issue.get("pull_request") else "issue",
        number=_number(issue.get("number")), comment_id=comment_id, title=sanitize(issue.get("title"), 500),
        body=sanitize(issue.get("body")), author=_login(issue.get("user")),
    )


def _number(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ConfigError(f"GITHUB_EVENT_PATH: the event has no issue or pull request number ({value!r})")


def _issues_request(env: GitHubEnv, event: dict[str, Any]) -> Request | Skip:
    action = event.get("action")
    issue = _user(event.get("issue"))
    sender = event.get("sender")
    login = _login(sender)
    if is_bot(sender) and not bot_allowed(login, env.allowed_bots):
        return Skip(f"the event was caused by a bot ({login or 'unknown'}) not listed in ASTRA_ALLOWED_BOTS")
    if action == "opened":
        body = issue.get("body")
        instruction = find_trigger(body if isinstance(body, str) else None, env.trigger_phrase)
        if instruction is None:
            return Skip(f"the new issue's body has no {env.trigger_phrase} trigger")
    elif action == "labeled":
        label = str(_user(event.get("label")).get("name") or "")
        names = {env.trigger_phrase.lower(), env.trigger_phrase.lstrip("/").lower()}
        if label.lower() not in names:
            return Skip(f"label {label!r} is not the trigger label {env.trigger_phrase.lstrip('/')!r}")
        instruction = ""
    else:
        return Skip(f"issues: action {action!r} does not trigger (opened and labeled do)")
    return Request(
        event=env.event_name, actor=login, instruction=instruction, kind="issue",
        number=_number(issue.get("number")), title=sanitize(issue.get("title"), 500),
        body=sanitize(issue.get("body")), author=_login(issue.get("user")),
    )


def _trusted_request(env: GitHubEnv, event: dict[str, Any], environ: Mapping[str, str]) -> Request:
    inputs = _user(event.get("inputs"))
    prompt = inputs.get("prompt") if isinstance(inputs.get("prompt"), str) and inputs.get("prompt") else None
    prompt = prompt or environ.get("ASTRA_PROMPT") or ""
    return Request(event=env.event_name, actor=None, instruction=prompt[:MAX_INSTRUCTION * 4], kind="none",
                   number=None, extra={"task_file": environ.get("ASTRA_TASK") or ""})


def parse_request(env: GitHubEnv, event: dict[str, Any], environ: Mapping[str, str]) -> Request | Skip:
    if env.event_name in ("issue_comment", "pull_request_review_comment"):
        return _comment_request(env, event)
    if env.event_name == "issues":
        return _issues_request(env, event)
    if env.event_name in ("workflow_dispatch", "schedule"):
        return _trusted_request(env, event, environ)
    return Skip(f"event {env.event_name!r} is not handled (handled: {', '.join(SUPPORTED)})")
