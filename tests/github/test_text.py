"""Trigger matching, sanitising and event parsing: the attacks, one by one."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from runner.github.api import Permission
from runner.github.event import GitHubEnv, Request, Skip, parse_request
from runner.github.text import bot_allowed, find_trigger, is_bot, sanitize
from tests.github.conftest import payload


@pytest.mark.parametrize("text,expected", [
    ("/astra fix it", "fix it"),
    ("Hi!\n\n/astra: fix it", ": fix it"),
    ("please (/astra) look", ") look"),
    ("/ASTRA fix", "fix"),
    ("```\ncode\n```\n/astra after the code", "after the code"),
    ("/astra fix this:\n```\nTraceback\n```", "fix this:\n```\nTraceback\n```"),
    ("/as\u200btra fix", "fix"),  # invisible characters are gone, as on screen
])
def test_trigger_found(text: str, expected: str) -> None:
    assert find_trigger(text, "/astra") == expected


@pytest.mark.parametrize("text", [
    "no trigger here",
    "see foo/astra",
    "/astral is a word",
    "/astra-run is a project",
    "\\/astra escaped",
    "https://example.org/astra",
    "`/astra fix`",
    "`` /astra fix ``",
    "```\n/astra fix\n```",
    "~~~\n/astra fix\n~~~",
    "text\n\n    /astra fix (indented code)",
    "> /astra fix (a quote)",
    "<!-- /astra fix -->",
    "<!-- unterminated /astra fix",
    "[//]: # (/astra fix)",
    '<img alt="/astra fix" src="x">',
    '<a title="/astra fix">x</a>',
    "user@/astra",
])
def test_trigger_not_found(text: str) -> None:
    assert find_trigger(text, "/astra") is None


def test_custom_phrase() -> None:
    assert find_trigger("@astra-bot do it", "@astra-bot") == "do it"
    assert find_trigger("/astra do it", "@astra-bot") is None


def test_sanitize_removes_what_a_reader_does_not_see() -> None:
    text = (
        "Visible.<!-- hidden one -->\n"
        "<!--\nhidden two\n-->\n"
        "zero\u200bwidth \u202eRLO\u202c \U000e0041tag \ufe0fvs\n"
        "![alt hidden](https://x.example/i.png) [link](https://x.example \"title hidden\")\n"
        "[ref]: https://x.example \"refdef hidden\"\n"
        "[//]: # (comment hidden)\n"
        '<img src="a.png" alt="img alt hidden" title="img title hidden">\n'
        '<span title="span title hidden">span text</span>\n'
        "<script>script hidden</script><style>style hidden</style>\n"
        "<details><summary>Logs</summary>\ndetails text\n</details>\n"
        "```\n<b>code stays</b> <!-- but comments go -->\n```"
    )
    out = sanitize(text)
    assert "hidden" not in out, out
    for kept in ("Visible.", "zerowidth", "RLO", "[image: https://x.example/i.png]", "[link](https://x.example)",
                 "[image]", "span text", "Logs", "details text", "<b>code stays</b>"):
        assert kept in out, (kept, out)
    assert all(ord(c) < 0x2000 or c in "…" for c in out), [hex(ord(c)) for c in out if ord(c) >= 0x2000]


def test_sanitize_caps_length() -> None:
    assert sanitize("x" * 50, limit=10).startswith("x" * 10 + "\n[... cut at 10")


def test_bots() -> None:
    assert is_bot({"login": "dependabot[bot]", "type": "Bot"})
    assert is_bot({"login": "sneaky[bot]", "type": "User"})
    assert not is_bot({"login": "alice", "type": "User"})
    assert is_bot(None)
    assert bot_allowed("renovate[bot]", ["renovate"]) and bot_allowed("Renovate", ["renovate[bot]"])
    assert not bot_allowed("renovate-evil[bot]", ["renovate"])


@pytest.mark.parametrize("perm,role,ok", [
    ("admin", "admin", True), ("write", "write", True), ("write", "maintain", True), ("read", "maintain", True),
    ("read", "triage", False), ("read", "read", False), ("none", "none", False), ("read", "custom-reader", False),
])
def test_permission_levels(perm: str, role: str, ok: bool) -> None:
    assert Permission("u", perm, role).can_write is ok


def env(name: str, **kw: str) -> GitHubEnv:
    environ = {"GITHUB_EVENT_NAME": name, "GITHUB_EVENT_PATH": "/dev/null", "GITHUB_REPOSITORY": "o/r", **kw}
    return GitHubEnv.from_environ(environ, "/astra")


def test_events_parse() -> None:
    r = parse_request(env("issue_comment"), payload("issue_comment.issue.json"), {})
    assert isinstance(r, Request) and r.kind == "issue" and r.number == 1 and r.actor == "Codertocat"
    assert r.instruction == "please fix this" and r.comment_id == 492700400
    r = parse_request(env("issue_comment"), payload("issue_comment.pull_request.json"), {})
    assert isinstance(r, Request) and r.kind == "pull_request" and r.number == 2
    r = parse_request(env("pull_request_review_comment"), payload("pull_request_review_comment.json"), {})
    assert isinstance(r, Request) and r.kind == "pull_request" and "calc.py" in r.review_context
    assert r.extra["pull"]["head"]["ref"] == "changes"
    r = parse_request(env("issues"), payload("issues.opened.json"), {})
    assert isinstance(r, Request) and r.instruction == "make it return 0 and add a test"
    r = parse_request(env("issues"), payload("issues.labeled.json"), {})
    assert isinstance(r, Request) and r.kind == "issue" and r.instruction == ""
    r = parse_request(env("workflow_dispatch"), payload("workflow_dispatch.json"), {})
    assert isinstance(r, Request) and r.actor is None and r.instruction == "Make mean([]) return 0."
    r = parse_request(env("schedule"), payload("schedule.json"), {"ASTRA_TASK": "t.yaml"})
    assert isinstance(r, Request) and r.actor is None and r.extra["task_file"] == "t.yaml"


def test_events_skipped() -> None:
    edited = copy.deepcopy(payload("issue_comment.issue.json"))
    edited["action"] = "edited"
    assert isinstance(parse_request(env("issue_comment"), edited, {}), Skip)
    labeled = copy.deepcopy(payload("issues.labeled.json"))
    labeled["label"]["name"] = "bug"
    assert isinstance(parse_request(env("issues"), labeled, {}), Skip)
    closed = copy.deepcopy(payload("issues.opened.json"))
    closed["action"] = "closed"
    assert isinstance(parse_request(env("issues"), closed, {}), Skip)
    assert isinstance(parse_request(env("push"), {}, {}), Skip)
    bot = copy.deepcopy(payload("issue_comment.issue.json"))
    bot["comment"]["user"] = {"login": "github-actions[bot]", "type": "Bot"}
    assert isinstance(parse_request(env("issue_comment"), bot, {}), Skip)
    assert isinstance(parse_request(env("issue_comment", ASTRA_ALLOWED_BOTS="github-actions"), bot, {}), Request)


def test_env_trigger_phrase_and_missing() -> None:
    assert env("issues", ASTRA_TRIGGER_PHRASE="@bot").trigger_phrase == "@bot"
    from runner.errors import ConfigError

    with pytest.raises(ConfigError, match="GITHUB_EVENT_PATH"):
        GitHubEnv.from_environ({"GITHUB_EVENT_NAME": "x", "GITHUB_REPOSITORY": "o/r"}, "/astra")
    with pytest.raises(ConfigError, match="OWNER/NAME"):
        env("issues", GITHUB_REPOSITORY="nope")
    assert Path("/dev/null") == env("issues").event_path
