"""report.html (SPEC §4) and the batch's index page (SPEC §5): one self-contained page each.

Built from the run's other outputs only - result.json, trajectory.jsonl, patch.diff - which are
redacted already, so the page is redacted like every output. What the page promises:
- nothing loads: no script at all, no external style sheet, font or image; a Content-Security-Policy
  meta that forbids every fetch and allows only this page's own style sheet (by its hash), so even
  markup that got in by mistake could load nothing;
- every byte that came from the model, a tool or the repository is escaped text (`_esc`), with
  characters HTML cannot carry (controls, lone surrogates) shown as U+FFFD;
- readable without JavaScript: collapsing is `<details>`, highlighting is CSS classes.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.reports.html_css import CSS
from runner.reports.summary import format_cost, format_duration
from runner.reports.trajectory import read_events

MAX_BLOCK_CHARS = 60_000
"""One text block (a tool's output, a thinking block) is cut here: the trajectory has it all."""
MAX_PATCH_CHARS = 2_000_000
_NOT_HTML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")
_EXIT_MARK = re.compile(r"\[(?:no output, )?exit code (-?\d+)\]\s*$")
"""How the bash tool ends its output (runner/tools/shell.py)."""
STATUS_WORDS = {"success": "success", "failed": "failed", "limit": "stopped by a limit",
                "error": "infrastructure error", "interrupted": "interrupted", "skipped": "skipped"}


def _esc(value: object, limit: int = MAX_BLOCK_CHARS) -> str:
    """Any value as escaped HTML text (never markup), cut at `limit` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)
    if len(text) > limit:
        text = text[:limit] + f"\n[... {len(text) - limit} more characters: see trajectory.jsonl]"
    return html.escape(_NOT_HTML.sub("\ufffd", text), quote=True)


def _status_class(status: object) -> str:
    return "s-" + (str(status) if str(status) in STATUS_WORDS else "error")


def page(title: str, body: str) -> str:
    """The frame of both pages: CSP that forbids every fetch, the style sheet allowed by hash."""
    digest = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    csp = (f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; font-src 'none'; "
           "script-src 'none'; connect-src 'none'; frame-src 'none'; form-action 'none'; base-uri 'none'")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n"
            "<meta name=\"referrer\" content=\"no-referrer\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_esc(title, 300)}</title>\n<style>{CSS}</style></head>\n"
            f"<body><main>\n{body}\n</main></body></html>\n")


# ----------------------------------------------------------------------------- the run's page


@dataclass
class _Call:
    id: str
    tool: str
    input: Any = None
    allowed: bool | None = None
    rule: str | None = None
    message: str = ""
    output: str | None = None
    is_error: bool = False
    duration_s: float | None = None


@dataclass
class _Turn:
    number: int
    event: dict[str, Any] | None = None
    calls: list[_Call] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)
    """Events during the turn that are not its tool calls (notes, errors, limits)."""


def _group(events: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], list[_Call | dict[str, Any]], list[_Turn]]:
    """(header, what came before the first turn, the turns) from a trajectory."""
    header = events[0] if events and events[0].get("type") == "run_started" else {}
    before: list[_Call | dict[str, Any]] = []
    turns: list[_Turn] = []
    calls: dict[str, _Call] = {}
    for ev in events[1:] if header else events:
        kind = ev.get("type")
        if kind == "model_turn":
            turns.append(_Turn(int(ev.get("turn") or len(turns) + 1), ev))
        elif kind in ("tool_call", "policy", "tool_result"):
            cid = str(ev.get("tool_use_id") or "")
            call = calls.get(cid)
            if call is None:
                call = calls[cid] = _Call(cid, str(ev.get("tool") or "?"))
                if turns:
                    turns[-1].calls.append(call)
                else:
                    before.append(call)
            if kind == "tool_call":
                call.input = ev.get("input")
            elif kind == "policy":
                call.allowed, call.rule = bool(ev.get("allowed")), ev.get("rule")
                call.message = str(ev.get("message") or "")
            else:
                call.output, call.is_error = str(ev.get("output") or ""), bool(ev.get("is_error"))
                call.duration_s = ev.get("duration_s") if isinstance(ev.get("duration_s"), int | float) else None
        elif kind in ("run_finished", "verify"):
            continue
        elif turns:
            turns[-1].others.append(ev)
        else:
            before.append(ev)
    return header, before, turns


def _facts(result: dict[str, Any]) -> str:
    patch = result.get("patch") or {}
    rows = [
        ("Task", result.get("task")), ("Run", result.get("run_id")), ("Model", result.get("model")),
        ("Turns", f"{result.get('turns', 0)} ({result.get('tool_calls', 0)} tool calls)"),
        ("Duration", format_duration(float(result.get("duration_s") or 0))),
        ("Cost", format_cost(result.get("cost_usd"))),
        ("Changes", f"{patch.get('files_changed', 0)} file(s), +{patch.get('insertions', 0)} "
                    f"-{patch.get('deletions', 0)}"),
        ("Base commit", result.get("base_commit")), ("Started", result.get("started_at")),
    ]
    if result.get("resumed"):
        rows.append(("Resumed", f"{result['resumed']} time(s)"))
    if result.get("permission_denials"):
        rows.append(("Permission denials", len(result["permission_denials"])))
    cells = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc('' if v is None else str(v))}</td></tr>" for k, v in rows)
    return f"<table class=\"facts\">{cells}</table>"


def _verify(result: dict[str, Any]) -> str:
    checks = result.get("verify") or []
    if not checks:
        return "<p class=\"muted\">No verify checks.</p>"
    parts = []
    for check in checks:
        ran = check.get("ran", True)
        verdict = "not run" if not ran else "passed" if check.get("passed") else "FAILED"
        cls = "tool-ok" if check.get("passed") else "tool-bad"
        code = check.get("exit_code")
        summary = (f"<span class=\"{cls}\">{_esc(verdict)}</span> <b>{_esc(str(check.get('name')))}</b>"
                   + ("" if code is None else f" <span class=\"muted\">exit {_esc(str(code))}</span>"))
        tail = str(check.get("output_tail") or "")
        opened = " open" if ran and not check.get("passed") else ""
        parts.append(f"<details{opened}><summary>{summary}</summary><div class=\"body\">"
                     f"<pre>{_esc(tail) or '(no output)'}</pre></div></details>")
    return "".join(parts)


def diff_html(patch: str) -> str:
    """The patch, each line classed (file header, hunk, added, removed) for CSS highlighting."""
    if not patch.strip():
        return "<p class=\"muted\">No changes.</p>"
    cut = ""
    if len(patch) > MAX_PATCH_CHARS:
        patch, cut = patch[:MAX_PATCH_CHARS], "\n[... the patch is cut here: see patch.diff]"
    spans = []
    for line in patch.splitlines():
        cls = ("file" if line.startswith(("diff --git", "+++ ", "--- ", "new file", "deleted file", "index ",
                                          "rename ", "similarity ", "Binary files", "GIT binary patch"))
               else "hunk" if line.startswith("@@") else "add" if line.startswith("+")
               else "del" if line.startswith("-") else "ctx")
        spans.append(f"<span class=\"{cls}\">{_esc(line, MAX_PATCH_CHARS) or ' '}</span>")
    return f"<pre class=\"diff\">{''.join(spans)}{_esc(cut)}</pre>"


def _call_html(call: _Call) -> str:
    from runner.reports.console import tool_summary

    what = tool_summary(call.tool, call.input if call.input is not None else {})
    if call.allowed is False:
        verdict = f"<span class=\"denied\">denied</span> ({_esc(call.rule or 'policy default')})"
    elif call.output is None:
        verdict = "<span class=\"muted\">no result (stopped)</span>"
    elif exit_mark := _EXIT_MARK.search(call.output[-200:]):
        code = exit_mark.group(1)
        verdict = f"<span class=\"{'tool-ok' if code == '0' else 'tool-bad'}\">exit {_esc(code)}</span>"
    else:
        verdict = "<span class=\"tool-bad\">error</span>" if call.is_error else "<span class=\"tool-ok\">ok</span>"
    took = "" if call.duration_s is None else f" · {call.duration_s:.1f}s"
    policy = ("" if call.allowed is None else
              f"<p>Policy: {'allowed' if call.allowed else 'denied'} by "
              f"{_esc(call.rule or 'the policy default')}{(' - ' + _esc(call.message)) if call.message else ''}</p>")
    return (f"<details><summary><span class=\"code\">{_esc(what)}</span> → {verdict}"
            f"<span class=\"muted\">{took}</span></summary><div class=\"body\">{policy}"
            f"<div class=\"muted\">input</div><pre>{_esc(call.input)}</pre>"
            f"<div class=\"muted\">output</div><pre>{_esc(call.output or '')}</pre></div></details>")


def _event_html(ev: dict[str, Any]) -> str:
    kind = str(ev.get("type") or "event")
    if kind == "note":
        level = str(ev.get("level") or "info")
        return f"<div class=\"event {_esc(level)}\">[{_esc(level)}] {_esc(str(ev.get('message') or ''))}</div>"
    if kind == "limit":
        return f"<div class=\"event limit\">limit: {_esc(str(ev.get('reason') or ''))}</div>"
    if kind == "error":
        return (f"<div class=\"event error\">error ({_esc(str(ev.get('error_kind') or ''))}): "
                f"{_esc(str(ev.get('message') or ''))}</div>")
    if kind == "model_error":
        return f"<div class=\"event warning\">model call failed: {_esc(str(ev.get('error') or ''))}</div>"
    if kind == "run_resumed":
        return (f"<div class=\"event\"><b>resumed</b> (part {_esc(str(ev.get('part')))}): previous part "
                f"{_esc(str(ev.get('stopped') or ''))}; new limits {_esc(ev.get('limits'), 500)}</div>")
    if kind == "sandbox_ready":
        return f"<div class=\"event\">sandbox ready ({_esc(str(ev.get('backend')))}, {ev.get('duration_s')}s)</div>"
    return f"<div class=\"event\">{_esc(kind)}</div>"


def _turn_html(turn: _Turn) -> str:
    ev = turn.event or {}
    usage = ev.get("usage") or {}
    head = (f"<h3>Turn {turn.number}</h3><span class=\"muted\">{_esc(str(ev.get('stop_reason') or ''))}</span>"
            f"<span>cost {_esc(format_cost(ev.get('cost_usd')))} "
            f"<span class=\"muted\">(so far {_esc(format_cost(ev.get('cumulative_cost_usd')))})</span></span>"
            f"<span class=\"muted\">{_esc(str(usage.get('input_tokens', 0)))} in / "
            f"{_esc(str(usage.get('output_tokens', 0)))} out tokens · {ev.get('duration_s', 0)}s"
            + (f" · {ev['retries']} retries" if ev.get("retries") else "") + "</span>")
    body: list[str] = []
    blocks = ev.get("content") or ([{"type": "text", "text": ev.get("text")}] if ev.get("text") else [])
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            body.append(f"<div class=\"text\">{_esc(str(block.get('text') or ''))}</div>")
        elif kind in ("thinking", "redacted_thinking"):
            words = (str(block.get("thinking") or block.get("summary") or block.get("text") or "")
                     if kind == "thinking" else "(redacted by the API)")
            body.append(f"<details><summary class=\"muted\">thinking</summary><div class=\"body\">"
                        f"<div class=\"text\">{_esc(words or '(empty)')}</div></div></details>")
        elif kind == "tool_use":
            continue  # shown as its call below, with the result
        elif isinstance(block, dict):
            rest = {k: v for k, v in block.items() if k != "type"}
            body.append(f"<details><summary class=\"muted\">{_esc(str(kind))} block</summary><div class=\"body\">"
                        f"<pre>{_esc(rest)}</pre></div></details>")
    body += [_call_html(c) for c in turn.calls]
    body += [_event_html(e) for e in turn.others]
    return f"<section class=\"turn\"><header>{head}</header>{''.join(body)}</section>"


def _cost_table(turns: Sequence[_Turn]) -> str:
    rows = []
    for t in turns:
        ev, usage = t.event or {}, (t.event or {}).get("usage") or {}
        rows.append(f"<tr><td class=\"num\">{t.number}</td><td class=\"num\">{_esc(format_cost(ev.get('cost_usd')))}"
                    f"</td><td class=\"num\">{_esc(format_cost(ev.get('cumulative_cost_usd')))}</td>"
                    + "".join(f"<td class=\"num\">{_esc(str(usage.get(k, 0)))}</td>"
                              for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                                        "cache_read_input_tokens")) + "</tr>")
    if not rows:
        return "<p class=\"muted\">No model turns.</p>"
    head = ("<tr><th class=\"num\">Turn</th><th class=\"num\">Cost</th><th class=\"num\">So far</th>"
            "<th class=\"num\">Input</th><th class=\"num\">Output</th><th class=\"num\">Cache write</th>"
            "<th class=\"num\">Cache read</th></tr>")
    return (f"<details><summary>Cost per turn</summary><div class=\"body\"><table>{head}{''.join(rows)}</table>"
            "</div></details>")


def _setting(header: dict[str, Any]) -> str:
    tools = header.get("tools") or []
    names = ", ".join(str(t.get("name")) for t in tools if isinstance(t, dict))
    return (f"<details><summary>What the model was given: the system prompt, {len(tools)} tools "
            f"<span class=\"muted\">({_esc(names, 500)})</span>, the task</summary><div class=\"body\">"
            f"<div class=\"muted\">system prompt</div><pre>{_esc(header.get('system') or '(not recorded)')}</pre>"
            f"<div class=\"muted\">first user message</div><pre>{_esc(header.get('task_message') or '')}</pre>"
            f"<div class=\"muted\">model options</div><pre>{_esc(header.get('model_options') or {})}</pre>"
            f"<div class=\"muted\">tools</div><pre>{_esc(tools)}</pre></div></details>")


def render_report(result: dict[str, Any], events: Sequence[dict[str, Any]], patch: str) -> str:
    """The run's page from its (redacted) result, trajectory events and patch."""
    header, before, turns = _group(events)
    status = str(result.get("status") or "error")
    parts = [
        f"<h1>astra-run: {_esc(str(result.get('task') or ''))}</h1>",
        f"<p><span class=\"badge {_status_class(status)}\">{_esc(STATUS_WORDS.get(status, status))}</span>"
        f" <span class=\"muted\">exit code {_esc(str(result.get('exit_code')))}</span></p>",
        f"<p class=\"reason\">{_esc(str(result.get('reason') or ''))}</p>",
        _facts(result),
        "<h2>Final message</h2>",
        (f"<div class=\"final text\">{_esc(result['final_message'])}</div>" if result.get("final_message")
         else "<p class=\"muted\">The agent left no final message.</p>"),
        "<h2>Verify</h2>", _verify(result),
        "<h2>Changes</h2>", diff_html(patch),
        "<h2>Conversation</h2>", _setting(header) if header else "", _cost_table(turns),
        *(_call_html(c) if isinstance(c, _Call) else _event_html(c) for c in before),
        *(_turn_html(t) for t in turns),
        "<footer class=\"muted\">Made by astra-run"
        + (f" {_esc(str(header.get('astra_run_version')))}" if header.get("astra_run_version") else "")
        + " from result.json, trajectory.jsonl and patch.diff in this directory.</footer>",
    ]
    return page(f"astra-run: {result.get('task') or ''} ({status})", "\n".join(parts))


def write_report(out_dir: Path) -> str:
    """report.html's text from the run's other outputs in `out_dir`."""
    try:
        result = json.loads((out_dir / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        result = {}
    try:
        patch = (out_dir / "patch.diff").read_bytes().decode("utf-8", "replace")
    except OSError:
        patch = ""
    return render_report(result if isinstance(result, dict) else {}, read_events(out_dir / "trajectory.jsonl"), patch)


# --------------------------------------------------------------------------- the batch's index


def render_index(title: str, rows: Iterable[tuple[str, dict[str, Any], bool]]) -> str:
    """The batch's page: one row per task (name, its result, whether it has a report.html)."""
    body = []
    for name, result, has_report in rows:
        status = str(result.get("status") or "?")
        link = (f"<a href=\"{html.escape(_href(name), quote=True)}/report.html\">{_esc(name)}</a>" if has_report
                else _esc(name))
        body.append(f"<tr><td>{link}</td><td class=\"{_status_class(status)}\">{_esc(STATUS_WORDS.get(status, status))}"
                    f"</td><td>{_esc(str(result.get('reason') or ''), 400)}</td>"
                    f"<td class=\"num\">{_esc(str(result.get('turns', 0)))}</td>"
                    f"<td class=\"num\">{_esc(format_cost(result.get('cost_usd')))}</td>"
                    f"<td class=\"num\">{_esc(format_duration(float(result.get('duration_s') or 0)))}</td></tr>")
    table = ("<table><tr><th>Task</th><th>Status</th><th>Reason</th><th class=\"num\">Turns</th>"
             f"<th class=\"num\">Cost</th><th class=\"num\">Time</th></tr>{''.join(body)}</table>")
    return page(title, f"<h1>{_esc(title)}</h1>{table}")


def _href(name: str) -> str:
    """A task directory as a relative link (task names are [A-Za-z0-9._-]+; anything else is quoted)."""
    from urllib.parse import quote

    return "./" + quote(name, safe="")
