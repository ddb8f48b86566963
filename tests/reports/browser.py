"""A real headless Chromium for the report.html tests, with every network request it makes caught.

Chromium is told to send all its traffic (http, https via CONNECT, websockets; loopback too) to
a proxy in the test process that answers 404 and records the request. A page that loads nothing
leaves the record empty; the positive control in the tests shows a page that does load something
is caught. Chromium needs, here: --no-sandbox (root in a container), a new empty profile, and no
background traffic of its own (component updates, sync, ...), so the record holds only the page's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
         "--hide-scrollbars")
"""(`--blink-settings=scriptEnabled=false` would be the way to turn JavaScript off, but headless
Chromium then writes neither a screenshot nor a DOM; the page has no script at all, which the
tests check, and its CSP forbids any.)"""


BROWSER_OWN = re.compile(r"^(?:CONNECT |[A-Z]+ https?://)(?:[\w.-]+\.)?(?:google\.com|googleapis\.com|gvt1\.com)[:/]")
"""Chromium's own traffic (time, component and account services), which its flags do not fully
stop: set apart, so what is left is what the page asked for. Nothing the tests' hostile content
names is on these hosts."""


def page_requests(requests: list[str]) -> list[str]:
    return [r for r in requests if not BROWSER_OWN.match(r)]


def chromium() -> str:
    """The Chromium binary, or skip (fail when ASTRA_REQUIRE_CHROMIUM=1, as scripts/test.sh sets)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = "Chromium is not installed (scripts/setup.sh installs Debian's `chromium` when run as root)"
    if os.environ.get("ASTRA_REQUIRE_CHROMIUM") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class RecordingProxy:
    """An HTTP proxy that forwards nothing: it records each request line and answers 404."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def _any(self) -> None:
                proxy.requests.append(f"{self.command} {self.path}")
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_CONNECT = do_PUT = do_OPTIONS = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def browser() -> Iterator[tuple[list[str], RecordingProxy]]:
    """(the Chromium command line up to the URL, the proxy recording its requests)."""
    binary = chromium()
    with RecordingProxy() as proxy, tempfile.TemporaryDirectory(prefix="astra-chromium-") as profile:
        yield [binary, *FLAGS, f"--user-data-dir={profile}", f"--proxy-server=http://{proxy.address}",
               "--proxy-bypass-list=<-loopback>"], proxy


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 1800) -> list[str]:
    """Render `page` to `png`; returns the requests the page made (the proxy saw, less Chromium's own)."""
    with browser() as (cmd, proxy):
        proc = run([*cmd, f"--window-size={width},{height}", f"--screenshot={png}", page.resolve().as_uri()])
        assert png.is_file(), proc.stderr[-2000:]
        return page_requests(proxy.requests)


def dom(page: Path) -> tuple[str, list[str]]:
    """The page's DOM after loading, serialized (`--dump-dom`), and the requests it made."""
    with browser() as (cmd, proxy):
        proc = run([*cmd, "--virtual-time-budget=2000", "--dump-dom", page.resolve().as_uri()])
        assert proc.returncode == 0 and "<html" in proc.stdout, proc.stderr[-2000:]
        return proc.stdout, page_requests(proxy.requests)


def png_size(png: Path) -> tuple[int, int]:
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def blank_page(tmp: Path, body: str) -> Path:
    path = Path(tmp) / "control.html"
    path.write_text(f"<!DOCTYPE html><html><body>{body}</body></html>")
    return path
