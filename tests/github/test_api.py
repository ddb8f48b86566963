"""The GitHub client's retries and answers (B3), and gitops' publication guard (S3) as units."""

from __future__ import annotations

import io
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from runner.github import gitops
from runner.github.api import GitHubAPI, GitHubAPIError
from tests.conftest import make_repo


class _Answer(io.BytesIO):
    def __enter__(self) -> _Answer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _client(monkeypatch: pytest.MonkeyPatch, outcomes: list[Any]) -> tuple[GitHubAPI, list[str]]:
    sent: list[str] = []

    def urlopen(req: Any, timeout: float) -> _Answer:
        sent.append(req.get_method())
        outcome = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return _Answer(outcome)

    monkeypatch.setattr("runner.github.api.urllib.request.urlopen", urlopen)
    monkeypatch.setattr("runner.github.api.time.sleep", lambda s: None)
    return GitHubAPI("https://api.example", "o/r", "tok"), sent


@pytest.mark.parametrize("error", [TimeoutError("timed out"), ConnectionResetError(104, "reset"),
                                   urllib.error.URLError("timed out")])
def test_writes_are_never_retried(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """A POST that timed out may have been done: a retry would post a second comment or PR."""
    gh, sent = _client(monkeypatch, [error])
    with pytest.raises(GitHubAPIError):
        gh.create_comment(1, "hello")
    assert sent == ["POST"]
    sent.clear()
    with pytest.raises(GitHubAPIError):
        gh.update_comment(5, "hello")
    assert sent == ["PATCH"]


def test_a_5xx_on_a_write_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    bad_gateway = urllib.error.HTTPError("https://api.example", 502, "Bad Gateway", {}, io.BytesIO(b"{}"))  # type: ignore[arg-type]
    gh, sent = _client(monkeypatch, [bad_gateway])
    with pytest.raises(GitHubAPIError, match="502"):
        gh.create_pull(title="t", head="h", base="b", body="")
    assert sent == ["POST"]


def test_reads_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    gh, sent = _client(monkeypatch, [TimeoutError("timed out"), ConnectionResetError(104, "reset"),
                                     b'{"permission": "write", "role_name": "write"}'])
    assert gh.permission("alice").can_write
    assert sent == ["GET", "GET", "GET"]


@pytest.mark.parametrize("body", [b"<html><body>502 Bad Gateway</body></html>", b'{"cut', b"\xff\xfe"])
def test_an_answer_that_is_not_json_is_an_api_error(monkeypatch: pytest.MonkeyPatch, body: bytes) -> None:
    gh, _ = _client(monkeypatch, [body])
    with pytest.raises(GitHubAPIError, match="not JSON") as exc:
        gh.pull(3)
    assert exc.value.exit_code == 4


# ------------------------------------------------------------------------------ gitops


@pytest.mark.parametrize("path,protected", [
    (".github/workflows/ci.yml", True), (".github/actions/x/action.yml", True),
    (".github/workflows", True), (".github/actions", True), (".github", True),
    (".GitHub/Workflows/x.yml", True), (".GITHUB/ACTIONS", True), (".github./workflows /x.yml", True),
    (".github/CODEOWNERS", False), (".github/workflows-docs.md", False), ("docs/.github/workflows/x", False),
    ("src/main.py", False),
])
def test_protected_paths(path: str, protected: bool) -> None:
    assert gitops.is_protected(path) is protected


@pytest.mark.parametrize("path,target,risky", [
    (".github/workflows", "../evil", True),
    (".github", "evil", True),
    ("wf", ".github/workflows", True),
    ("a/b", "../../.GitHub/actions", True),
    ("a/b", "../.github", True),  # a/../.github is the repository's
    ("a/b/c", "../.github", False),  # a/.github: not the repository's
    ("docs/link", "../README.md", False),
])
def test_risky_symlinks(path: str, target: str, risky: bool) -> None:
    assert bool(gitops.risky_symlinks(gitops.Commit("0" * 40, (path,), ((path, target),)))) is risky


def test_commit_patch_reports_symlinks(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    work = make_repo(tmp_path / "w", {"a.txt": "a\n"})
    (work / ".github").mkdir()
    (work / ".github" / "workflows").symlink_to("../evil")
    import subprocess

    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    diff = subprocess.run(["git", "-C", str(work), "diff", "--cached", "--binary"], check=True,
                          capture_output=True).stdout
    patch = tmp_path / "p.diff"
    patch.write_bytes(diff)
    git_dir = gitops.git_dir_of(repo)
    commit = gitops.commit_patch(git_dir, gitops.rev_parse(git_dir, "HEAD"), patch, "m\n")
    assert commit.files == (".github/workflows",) and commit.symlinks == ((".github/workflows", "../evil"),)
    assert gitops.risky_symlinks(commit) == [".github/workflows -> ../evil"]


@pytest.mark.parametrize("name,ok", [
    ("main", True), ("fix/ü+x@1", True), ("release+1", True), ("user@host", True), ("a.b/c_d-e", True),
    ("a..b", False), ("-x", False), ("x.lock", False), ("@{-1}", False), ("a b", False), ("a:b", False),
    ("x/", False), ("/x", False), ("@", False), ("HEAD", False), ("a~1", False), ("", False),
])
def test_branch_names(tmp_path: Path, name: str, ok: bool) -> None:
    repo = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    assert gitops.check_branch_name(gitops.git_dir_of(repo), name) is ok
