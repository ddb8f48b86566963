"""A fake GitHub REST API: real HTTP on 127.0.0.1 (random port), the few endpoints astra-run uses.

    with FakeGitHubAPI(repo="octo/hello", token="ghs_test") as gh:
        gh.permissions["alice"] = ("write", "write")
        gh.pulls[7] = {...}                    # what GET /repos/octo/hello/pulls/7 returns
        ... GITHUB_API_URL=gh.url ...
        gh.calls                               # every request: Call(method, path, body, auth)
        gh.comments[12]                        # the comments of issue/PR 12, as stored

Endpoints: GET collaborators/{user}/permission (404 for unknown users), GET pulls/{n}, GET pulls
(the open ones), GET issues/{n}, GET/POST issues/{n}/comments, PATCH issues/comments/{id},
POST pulls. What the token posts is by `identity` (the Actions token's `github-actions[bot]`, or a
GitHub App's bot with `app` set, as GitHub marks its comments with `performed_via_github_app`).
A wrong or missing token gets 401, an unknown path 404 (as GitHub does).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any
    auth: str | None


class FakeGitHubAPI:
    def __init__(self, repo: str = "octo/hello", token: str = "ghs_faketoken0123456789abcdefghijklmnopq") -> None:
        self.repo = repo
        self.token = token
        self.permissions: dict[str, tuple[str, str]] = {}
        self.pulls: dict[int, dict[str, Any]] = {}
        self.issues: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.created_pulls: list[dict[str, Any]] = []
        self.calls: list[Call] = []
        self.fail: dict[tuple[str, str], int] = {}
        """(method, path regex) -> HTTP status to answer instead."""
        self.identity: dict[str, Any] = {"login": "github-actions[bot]", "type": "Bot"}
        self.app: dict[str, Any] | None = None
        """Set (e.g. {"slug": "astra-app"}) when the token is a GitHub App's."""
        self.comment_edits: dict[int, list[str]] = {}
        """Every body a comment was PATCHed to, in order."""
        self._ids = 1000
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeGitHubAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls_to(self, method: str, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.search(pattern, c.path)]

    # ----------------------------------------------------------------------- routing

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        prefix = f"/repos/{self.repo}"
        if not path.startswith(prefix + "/"):
            return 404, {"message": "Not Found"}
        rest = path[len(prefix):]
        if m := re.fullmatch(r"/collaborators/([^/]+)/permission", rest):
            if method != "GET":
                return 405, {"message": "method"}
            login = unquote(m.group(1))
            if login not in self.permissions:
                return 404, {"message": f"{login} is not a user"}
            perm, role = self.permissions[login]
            return 200, {"permission": perm, "role_name": role, "user": {"login": login, "type": "User"}}
        if (m := re.fullmatch(r"/pulls/(\d+)", rest)) and method == "GET":
            n = int(m.group(1))
            pulls = {**{p["number"]: p for p in self.created_pulls}, **self.pulls}
            return (200, pulls[n]) if n in pulls else (404, {"message": "Not Found"})
        if rest == "/pulls" and method == "GET":  # the query is not seen here: always the open ones
            return 200, [p for p in [*self.pulls.values(), *self.created_pulls] if p.get("state", "open") == "open"]
        if (m := re.fullmatch(r"/issues/(\d+)", rest)) and method == "GET":
            n = int(m.group(1))
            return (200, self.issues[n]) if n in self.issues else (404, {"message": "Not Found"})
        if m := re.fullmatch(r"/issues/(\d+)/comments", rest):
            n = int(m.group(1))
            if method == "GET":
                return 200, list(self.comments.get(n, []))
            if method == "POST":
                if not isinstance(body, dict) or not isinstance(body.get("body"), str):
                    return 422, {"message": "body is required"}
                self._ids += 1
                comment = {"id": self._ids, "body": body["body"], "user": dict(self.identity),
                           "html_url": f"https://github.example/{self.repo}/issues/{n}#issuecomment-{self._ids}"}
                if self.app is not None:
                    comment["performed_via_github_app"] = dict(self.app)
                self.comments.setdefault(n, []).append(comment)
                return 201, comment
        if (m := re.fullmatch(r"/issues/comments/(\d+)", rest)) and method == "PATCH":
            cid = int(m.group(1))
            for comments in self.comments.values():
                for c in comments:
                    if c["id"] == cid:
                        c["body"] = body["body"]
                        self.comment_edits.setdefault(cid, []).append(body["body"])
                        return 200, c
            return 404, {"message": "Not Found"}
        if rest == "/pulls" and method == "POST":
            self._ids += 1
            pr = {"number": self._ids, "html_url": f"https://github.example/{self.repo}/pull/{self._ids}",
                  "draft": bool(body.get("draft")), "title": body.get("title"), "body": body.get("body"),
                  "state": "open", "user": dict(self.identity),
                  "head": {"ref": body.get("head"), "repo": {"full_name": self.repo}},
                  "base": {"ref": body.get("base"), "repo": {"full_name": self.repo}}}
            self.created_pulls.append(pr)
            return 201, pr
        return 404, {"message": "Not Found"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                path = urlsplit(self.path).path
                auth = self.headers.get("Authorization")
                with fake._lock:
                    fake.calls.append(Call(self.command, path, body, auth))
                    forced = next((s for (m, p), s in fake.fail.items()
                                   if m == self.command and re.search(p, path)), None)
                    if forced is not None:
                        status, answer = forced, {"message": "injected failure"}
                    elif auth != f"Bearer {fake.token}":
                        status, answer = 401, {"message": "Bad credentials"}
                    else:
                        status, answer = fake._route(self.command, path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _serve

        return Handler
