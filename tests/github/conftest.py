"""A GitHub world for `astra-run github`: a fake REST API, a local bare `origin`, a checkout of it,
an event payload, and the Actions environment pointing at all of them.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.github import cmd_github
from runner.github import command as command_mod
from runner.models.base import ModelRequest
from tests.conftest import make_repo, sh_git
from tests.fakes.github_api import FakeGitHubAPI

DATA = Path(__file__).parent.parent / "data" / "github"
REPO = "Codertocat/Hello-World"
TOKEN = "ghs_0123456789abcdefghijklmnopqrstuvwxyzAB"

BUGGY = "def mean(xs):\n    return sum(xs) / len(xs)\n"
TESTS = "from calc import mean\n\ndef test_empty():\n    assert mean([]) == 0\n\ndef test_two():\n    assert mean([1, 3]) == 2\n"
FIX_EDIT = {"name": "edit", "input": {"path": "calc.py", "old_string": "    return sum",
                                      "new_string": "    if not xs:\n        return 0\n    return sum"}}
FIX: list[dict[str, Any]] = [{"text": "fixing", "tool_calls": [FIX_EDIT]}, {"text": "Fixed mean([])."}]
BASE_TASK = {
    "sandbox": {"backend": "local"},
    "verify": [{"name": "base-tests", "run": "python -m pytest -q -p no:cacheprovider"}],
    "limits": {"max_turns": 10},
}


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


@dataclass
class World:
    tmp: Path
    gh: FakeGitHubAPI
    origin: Path
    checkout: Path
    out: Path
    monkeypatch: pytest.MonkeyPatch
    requests: list[ModelRequest] = field(default_factory=list)

    def script(self, turns: list[dict[str, Any]]) -> None:
        path = self.tmp / "model.yaml"
        path.write_text(yaml.safe_dump(turns))
        self.monkeypatch.setenv("ASTRA_MODEL", f"scripted:{path}")

    def event(self, name: str, data: dict[str, Any]) -> None:
        path = self.tmp / "event.json"
        path.write_text(json.dumps(data))
        self.monkeypatch.setenv("GITHUB_EVENT_NAME", name)
        self.monkeypatch.setenv("GITHUB_EVENT_PATH", str(path))

    def run(self, publish: str = "comment") -> int:
        self.monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        return cmd_github(argparse.Namespace(publish=publish))

    def outputs(self) -> dict[str, str]:
        lines = (self.tmp / "gh_output").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def result(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "result.json").read_text())
        return data

    def branches(self) -> dict[str, str]:
        refs = sh_git(self.origin, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads")
        return dict(line.split() for line in refs.splitlines())

    def prompt_seen(self) -> str:
        """Everything the model was sent (system prompt and messages), as one string."""
        return "\n".join(r.system + "\n" + json.dumps([repr(m) for m in r.messages]) for r in self.requests)

    def make_pr(self, number: int, files: dict[str, str], branch: str = "changes") -> str:
        """A PR head commit on origin (refs/heads/<branch> and refs/pull/N/head); returns its sha."""
        work = self.tmp / f"pr-{number}-work"
        subprocess.run(["git", "clone", "-q", str(self.origin), str(work)], check=True)
        for name, text in files.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_text(text)
        sh_git(work, "add", "-A")
        sh_git(work, "commit", "-q", "-m", f"PR {number}")
        sha = sh_git(work, "rev-parse", "HEAD")
        sh_git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}", f"HEAD:refs/pull/{number}/head")
        return sha

    def pr_payload(self, number: int, head_sha: str, head_repo: str = REPO, head_ref: str = "changes") -> dict[str, Any]:
        pull = copy.deepcopy(payload("pull_request.api.json"))
        pull["number"] = number
        pull["head"]["sha"], pull["head"]["ref"] = head_sha, head_ref
        pull["head"]["repo"] = {**pull["head"]["repo"], "full_name": head_repo, "fork": head_repo != REPO}
        pull["head"]["label"] = f"{head_repo.split('/')[0]}:{head_ref}"
        pull["base"]["sha"] = sh_git(self.origin, "rev-parse", "main")
        return pull


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    seed = make_repo(tmp_path / "seed", {
        "calc.py": BUGGY, "test_calc.py": TESTS,
        ".astra/task.yaml": yaml.safe_dump(BASE_TASK),
        "AGENTS.md": "Base branch instructions: keep functions small.\n",
    })
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(origin)], check=True)
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(origin), str(checkout)], check=True)
    out = tmp_path / "out"
    with FakeGitHubAPI(repo=REPO, token=TOKEN) as gh:
        gh.permissions.update({"Codertocat": ("admin", "admin"), "maintainer": ("write", "maintain"),
                               "reader": ("read", "read"), "triager": ("read", "triage")})
        for key in [k for k in list(os.environ) if k.startswith(("GITHUB_", "ASTRA_", "GH_"))]:
            monkeypatch.delenv(key)
        monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.example")
        monkeypatch.setenv("GITHUB_RUN_ID", "4242")
        monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "gh_output"))
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "step_summary.md"))
        monkeypatch.setenv("ASTRA_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("ASTRA_OUT", str(out))
        monkeypatch.setenv("ASTRA_SANDBOX", "local")
        # the local backend is refused for real (the token could be read from /proc); tests use it
        # for speed through the private flag, which nothing in a repository or workflow can set
        monkeypatch.setattr(command_mod, "_ALLOW_LOCAL_SANDBOX", True)
        monkeypatch.chdir(checkout)
        w = World(tmp_path, gh, origin, checkout, out, monkeypatch)

        import runner.run as run_mod

        real_make_model = run_mod.make_model

        def recording_make_model(name: str, base_dir: Path, **kwargs: Any) -> Any:
            model = real_make_model(name, base_dir, **kwargs)
            real_complete = model.complete

            async def complete(request: ModelRequest) -> Any:
                w.requests.append(request)
                return await real_complete(request)

            model.complete = complete  # type: ignore[method-assign]
            return model

        monkeypatch.setattr(run_mod, "make_model", recording_make_model)
        w.script(FIX)
        yield w
