"""A small GitHub REST client (stdlib only): the few calls astra-run makes, nothing more.

The token lives in this object only (cmd_github removes it from the process environment before
anything else starts), and goes out in the Authorization header of requests to `GITHUB_API_URL`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from runner.errors import InfraError

TIMEOUT_S = 30.0
RETRIES = 2
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
IDEMPOTENT = frozenset({"GET", "HEAD"})


class GitHubAPIError(InfraError):
    """The GitHub API could not be used (exit 4)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = status


@dataclass(frozen=True)
class Permission:
    login: str
    permission: str
    """`admin`, `write`, `read` or `none` (the API's coarse value; `maintain` shows as `write`)."""
    role_name: str
    """`admin`, `maintain`, `write`, `triage`, `read` or a custom role's name."""

    @property
    def can_write(self) -> bool:
        return self.permission in WRITE_PERMISSIONS or self.role_name in WRITE_PERMISSIONS


class GitHubAPI:
    def __init__(self, api_url: str, repository: str, token: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.repository = repository
        self._token = token

    def __repr__(self) -> str:  # never show the token
        return f"GitHubAPI({self.api_url!r}, {self.repository!r})"

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.api_url + path
        if not url.startswith(("http://", "https://")):
            raise GitHubAPIError(f"GITHUB_API_URL must be an http(s) URL, got {self.api_url!r}")
        data = json.dumps(body).encode() if body is not None else None
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "astra-run",
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if data is not None:
            headers["Content-Type"] = "application/json"
        # Only a request that changes nothing is retried: a POST that timed out (or got a 502 from
        # a proxy) may well have been done, and sending it again would post a second comment or PR.
        retries = RETRIES if method in IDEMPOTENT else 0
        for attempt in range(retries + 1):
            req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
            try:
                with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:  # noqa: S310
                    raw = resp.read()
            except urllib.error.HTTPError as exc:
                detail = _error_message(exc)
                if exc.code in (502, 503, 504) and attempt < retries:
                    time.sleep(1.0 * (attempt + 1))
                    continue
                raise GitHubAPIError(f"GitHub API {method} {path}: HTTP {exc.code}: {detail}", exc.code) from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                if attempt < retries:
                    time.sleep(1.0 * (attempt + 1))
                    continue
                raise GitHubAPIError(f"GitHub API {method} {path}: {exc}") from None
            try:
                return json.loads(raw) if raw.strip() else None
            except ValueError:  # an HTML error page of a proxy, a cut-off answer
                raise GitHubAPIError(f"GitHub API {method} {path}: the answer is not JSON "
                                     f"({raw[:80].decode('utf-8', 'replace')!r})") from None
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------------------- calls

    def _repo(self, rest: str) -> str:
        return f"/repos/{self.repository}{rest}"

    def permission(self, login: str) -> Permission:
        """The user's permission on the repository; `none` when GitHub does not know them (404)."""
        quoted = urllib.parse.quote(login, safe="")
        try:
            data = self.request("GET", self._repo(f"/collaborators/{quoted}/permission"))
        except GitHubAPIError as exc:
            if exc.http_status == 404:
                return Permission(login, "none", "none")
            raise
        data = data if isinstance(data, dict) else {}
        return Permission(login, str(data.get("permission") or "none"), str(data.get("role_name") or "none"))

    def pull(self, number: int) -> dict[str, Any]:
        data = self.request("GET", self._repo(f"/pulls/{number}"))
        if not isinstance(data, dict):
            raise GitHubAPIError(f"GitHub API: pull request #{number}: unexpected answer")
        return data

    def pulls(self, state: str = "open", max_pages: int = 5) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in range(1, max_pages + 1):
            data = self.request("GET", self._repo(f"/pulls?state={urllib.parse.quote(state)}&per_page=100&page={page}"))
            if not isinstance(data, list) or not data:
                break
            out.extend(p for p in data if isinstance(p, dict))
            if len(data) < 100:
                break
        return out

    def comments(self, number: int, max_pages: int = 10) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in range(1, max_pages + 1):
            data = self.request("GET", self._repo(f"/issues/{number}/comments?per_page=100&page={page}"))
            if not isinstance(data, list) or not data:
                break
            out.extend(c for c in data if isinstance(c, dict))
            if len(data) < 100:
                break
        return out

    def create_comment(self, number: int, body: str) -> dict[str, Any]:
        data = self.request("POST", self._repo(f"/issues/{number}/comments"), {"body": body})
        return data if isinstance(data, dict) else {}

    def update_comment(self, comment_id: int, body: str) -> dict[str, Any]:
        data = self.request("PATCH", self._repo(f"/issues/comments/{comment_id}"), {"body": body})
        return data if isinstance(data, dict) else {}

    def create_pull(self, *, title: str, head: str, base: str, body: str, draft: bool = True) -> dict[str, Any]:
        data = self.request("POST", self._repo("/pulls"),
                            {"title": title, "head": head, "base": base, "body": body, "draft": draft})
        return data if isinstance(data, dict) else {}


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        return exc.reason if isinstance(exc.reason, str) else "error"
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])[:300]
    return str(exc.reason)
