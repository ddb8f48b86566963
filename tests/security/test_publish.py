"""Issue 12.8: symlinks are judged by where they resolve in the published tree.

`ci -> ../widgets/.github/workflows` leaves the repository and, in a checkout named like the
repository (as on Actions: /home/runner/work/widgets/widgets), lands in its own .github; a link
may also reach .github through another link of the tree. Neither is ever published.
"""

from __future__ import annotations

import subprocess

import pytest

from runner.github import gitops
from tests.conftest import sh_git
from tests.github.conftest import World
from tests.github.test_flow import FIX_EDIT_, comment_event

TASK = ("sandbox: {backend: local}\npolicy: {default: allow}\n"
        "verify: [{name: base-tests, run: 'python -m pytest -q -p no:cacheprovider'}]\n")


def _base(world: World, *, link: tuple[str, str] | None = None) -> None:
    work = world.tmp / "base-work"
    subprocess.run(["git", "clone", "-q", str(world.origin), str(work)], check=True)
    (work / ".astra").mkdir(exist_ok=True)
    (work / ".astra" / "task.yaml").write_text(TASK)
    if link is not None:
        (work / link[0]).symlink_to(link[1])
    sh_git(work, "add", "-A")
    sh_git(work, "commit", "-qm", "base")
    sh_git(work, "push", "-q", "origin", "HEAD:main")


@pytest.mark.parametrize(("command", "link"), [
    ("ln -s ../widgets/.github/workflows ci", None),  # out of the repository and back into it
    ("ln -s ../../etc/passwd leak", None),  # out of the repository
    ("ln -s gh/workflows wf", ("gh", ".github")),  # through a link the base already has
    ("ln -s d/x wf && mkdir d && ln -s ../.GitHub d/x", None),  # a chain in the same commit
])
def test_links_that_resolve_into_github_or_out_are_never_published(
        world: World, command: str, link: tuple[str, str] | None) -> None:
    world.script([{"tool_calls": [FIX_EDIT_, {"name": "bash", "input": {"command": command}}]}, {"text": "done"}])
    _base(world, link=link)
    world.monkeypatch.setenv("ASTRA_ALLOW_WORKFLOW_CHANGES", "true")  # not even then
    world.event("issue_comment", comment_event("/astra fix"))
    assert world.run("pr") == 0
    assert [b for b in world.branches() if b.startswith("astra/")] == [] and not world.gh.created_pulls
    final = world.gh.comments[1][0]["body"]
    assert "Not published" in final, final


@pytest.mark.parametrize(("path", "target", "tree", "risky"), [
    ("ci", "../widgets/.github/workflows", (), True),
    ("ci", "/home/runner/work/widgets/widgets/.github", (), True),
    ("wf", "gh/workflows", (("gh", ".github"),), True),
    ("wf", "gh/workflows", (("gh", "docs"),), False),
    ("a", "b", (("b", "a"),), True),  # a loop
    ("docs/link", "../README.md", (), False),
    ("src/x", "../lib/./y", (), False),
    ("x", "C:/Windows", (), True),
])
def test_resolution_in_the_tree(path: str, target: str, tree: tuple[tuple[str, str], ...], risky: bool) -> None:
    commit = gitops.Commit("0" * 40, (path,), ((path, target),), tree)
    assert bool(gitops.risky_symlinks(commit)) is risky
