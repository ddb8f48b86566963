"""report.html in a real headless Chromium: it renders, loads nothing, and hostile content stays text.

The run is real (CLI, scripted model, local sandbox, real git); every place the page shows holds
hostile HTML: the model's text, a tool's output, a file in the patch, a verify check's output and
the final message. A secret from sandbox.env shows up in a tool's output and must be redacted.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from runner.batch.aggregate import Entry, write_aggregates
from runner.reports.html import render_report
from tests.core.test_run_e2e import astra, scenario
from tests.reports import browser

SECRET = "s3cr3t-value-for-the-report-0123456789"
HOSTILE_TEXT = "</script><script>document.title='pwned'</script><img src='http://evil.example/text.png'> & </pre>"
HOSTILE_OUTPUT = "<iframe src=\"http://evil.example/frame\"></iframe><link rel=stylesheet href=http://evil.example/x.css>"
HOSTILE_FILE = "<img src=http://evil.example/patch.png><script src=http://evil.example/p.js></script>\n"
HOSTILE_FINAL = "Done. </div></details><img src=http://evil.example/final.png> <!-- ]]> <style>*{}</style>"
TURNS = [
    {"text": HOSTILE_TEXT, "tool_calls": [
        {"name": "bash", "input": {"command": f"printf '%s\\n' '{HOSTILE_OUTPUT}'; echo \"key=$SECRET_VALUE\""}},
        {"name": "write", "input": {"path": "page.html", "content": HOSTILE_FILE}}]},
    {"text": HOSTILE_FINAL},
]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("hostile")
    task, _, out = scenario(
        tmp, TURNS, policy={"default": "allow"},
        sandbox={"backend": "local", "env": {"SECRET_VALUE": "${HOST_SECRET}"}},
        verify=[{"name": "html-check", "run": "echo '<img src=http://evil.example/verify.png>'; exit 1"}])
    proc = astra("run", str(task), cwd=tmp, env={"HOST_SECRET": SECRET})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return out


def test_the_page_holds_everything_escaped_and_redacted(hostile_run: Path) -> None:
    text = (hostile_run / "report.html").read_text()
    assert SECRET not in text and "key=[REDACTED" in text
    # no markup but ours: not one tag from the model, the tools, the repository or a check
    assert not re.search(r"<(?:script|img|iframe|link)\b", text, re.I)
    assert len(re.findall(r"<style\b", text)) == 1
    for hostile in (HOSTILE_TEXT, HOSTILE_OUTPUT, HOSTILE_FINAL):
        assert html.escape(hostile)[:60] in text
    assert "&lt;img src=http://evil.example/patch.png&gt;" in text  # the patch
    assert "&lt;img src=http://evil.example/verify.png&gt;" in text  # the check's output tail
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_chromium_renders_it_without_any_request(hostile_run: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    requests = browser.screenshot(hostile_run / "report.html", png)
    assert requests == []
    width, height = browser.png_size(png)
    assert (width, height) == (1200, 1800) and png.stat().st_size > 30_000  # something was drawn
    dom, requests = browser.dom(hostile_run / "report.html")
    assert requests == []
    # the DOM Chromium built: no element from the hostile content, the content itself as text
    assert not re.search(r"<(?:script|img|iframe|link)\b", dom, re.I)
    assert "&lt;/script&gt;&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom
    assert "<title>astra-run: e2e (failed)</title>" in dom  # no script ran (nor could one)
    assert "Turn 1" in dom and "Final message" in dom and "html-check" in dom


def test_the_harness_sees_a_page_that_loads_something(tmp_path: Path) -> None:
    """The positive control: without it, "no requests" could mean the proxy catches nothing."""
    page = browser.blank_page(tmp_path, "<img src='http://evil.example/pixel.png'>")
    _, requests = browser.dom(page)
    assert any("evil.example/pixel.png" in r for r in requests), requests


def test_the_report_shows_the_conversation_turn_by_turn(hostile_run: Path) -> None:
    text = (hostile_run / "report.html").read_text()
    assert text.index("Turn 1") < text.index("Turn 2")
    assert "<details" in text and "bash: printf" in text and "allowed by" in text
    assert "cost $0.0000" in text and "Cost per turn" in text
    assert "stopped by a limit" not in text and "failed" in text


def test_batch_index_links_each_task(tmp_path: Path) -> None:
    for name, status in (("a-task", "success"), ("b-task", "failed")):
        (tmp_path / name).mkdir()
        result = {"status": status, "reason": f"<b>{name}</b>", "task": name, "turns": 2, "cost_usd": 0.5,
                  "duration_s": 3.0, "verify": [], "patch": {}}
        (tmp_path / name / "result.json").write_text(json.dumps(result))
        (tmp_path / name / "report.html").write_text(render_report(result, [], ""))
    entries = [Entry(n, json.loads((tmp_path / n / "result.json").read_text()), tmp_path / n)
               for n in ("a-task", "b-task")]
    write_aggregates(tmp_path, entries, title="batch <x>", exit_code=1)
    page = (tmp_path / "report.html").read_text()
    assert 'href="./a-task/report.html"' in page and 'href="./b-task/report.html"' in page
    assert "&lt;b&gt;a-task&lt;/b&gt;" in page and "batch &lt;x&gt;" in page
    dom, requests = browser.dom(tmp_path / "report.html")
    assert requests == [] and dom.count("/report.html\"") == 2
