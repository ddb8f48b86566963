"""The workspace on real git: a worktree at the base, a patch that applies, the user's repo untouched."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from runner.errors import ConfigError
from runner.patch import compute_patch
from runner.result import PatchStats
from runner.workspace import Workspace, cleanup_dead_runs, mirror_path
from tests.conftest import sh_git, tree_digest


def diff(ws: Workspace) -> tuple[bytes, PatchStats]:
    patch = asyncio.run(compute_patch(ws))
    return patch.data, patch.stats


def test_patch_has_new_deleted_modified_and_binary_files_and_applies(repo: Path, cache: Path, tmp_path: Path) -> None:
    before = tree_digest(repo)
    base = sh_git(repo, "rev-parse", "HEAD")
    ws = Workspace.create(str(repo), None, tmp_path / "run", cache)
    assert ws.base_commit == base
    (ws.path / "src/app.py").write_text("def f():\n    return 2\n")
    (ws.path / "new.txt").write_text("brand new\n")
    (ws.path / "old.txt").unlink()
    (ws.path / "logo.bin").write_bytes(b"\x89PNG\x00\xff\xfe\x00")
    (ws.path / "img.dat").write_bytes(bytes(range(256)))
    patch, stats = diff(ws)
    assert stats.files_changed == 5
    assert {f.path for f in stats.files} == {"src/app.py", "new.txt", "old.txt", "logo.bin", "img.dat"}
    assert {f.path for f in stats.files if f.binary} == {"logo.bin", "img.dat"}
    assert b"GIT binary patch" in patch
    # the patch applies on a fresh clone of the base
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    (tmp_path / "p.diff").write_bytes(patch)
    subprocess.run(["git", "-C", str(clone), "apply", str(tmp_path / "p.diff")], check=True)
    assert (clone / "logo.bin").read_bytes() == b"\x89PNG\x00\xff\xfe\x00"
    assert (clone / "img.dat").read_bytes() == bytes(range(256))
    assert not (clone / "old.txt").exists()
    ws.remove()
    assert not ws.path.exists()
    assert sh_git(repo, "worktree", "list").count("\n") == 0  # only the main worktree
    assert tree_digest(repo) == before
    assert sh_git(repo, "branch", "--list") == "* main"


def test_no_change_gives_an_empty_patch(repo: Path, cache: Path, tmp_path: Path) -> None:
    ws = Workspace.create(str(repo), None, tmp_path / "run", cache)
    patch, stats = diff(ws)
    assert patch == b"" and stats.files_changed == 0
    ws.remove()


def test_ref_resolves_and_bad_ref_is_a_config_error(repo: Path, cache: Path, tmp_path: Path) -> None:
    first = sh_git(repo, "rev-parse", "HEAD")
    (repo / "README.md").write_text("changed\n")
    sh_git(repo, "commit", "-qam", "second")
    ws = Workspace.create(str(repo), first[:10], tmp_path / "run", cache)
    assert ws.base_commit == first
    assert (ws.path / "README.md").read_text() == "# demo\n"
    ws.remove()
    with pytest.raises(ConfigError, match="does not name a commit"):
        Workspace.create(str(repo), "no-such-branch", tmp_path / "run2", cache)


def test_not_a_git_repo(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError, match="not a git repository"):
        Workspace.create(str(tmp_path / "plain"), None, tmp_path / "run", cache)


def test_git_urls_are_mirrored_once_and_fetched_on_reuse(repo: Path, cache: Path, tmp_path: Path) -> None:
    url = f"file://{repo}"
    ws = Workspace.create(url, "main", tmp_path / "run1", cache)
    mirror = mirror_path(cache, url)
    assert ws.git_dir == mirror and (mirror / "HEAD").exists()
    ws.remove()
    (repo / "README.md").write_text("v2\n")
    sh_git(repo, "commit", "-qam", "v2")
    ws2 = Workspace.create(url, "main", tmp_path / "run2", cache)
    assert ws2.base_commit == sh_git(repo, "rev-parse", "HEAD")
    assert (ws2.path / "README.md").read_text() == "v2\n"
    ws2.remove()


def test_config_planted_in_the_repo_never_runs_when_computing_the_patch(repo: Path, cache: Path, tmp_path: Path) -> None:
    """Even with a filter, fsmonitor and hook in the repo's own config (as `git config` run by a
    local sandbox could plant), computing the patch runs none of them."""
    marker = tmp_path / "PWNED"
    ws = Workspace.create(str(repo), None, tmp_path / "run", cache)
    sh_git(repo, "config", "core.fsmonitor", f"touch {marker}-fsmonitor; false")
    sh_git(repo, "config", "filter.evil.clean", f"touch {marker}-filter; cat")
    sh_git(repo, "config", "diff.evil.command", f"touch {marker}-diff")
    sh_git(repo, "config", "diff.evil.textconv", f"touch {marker}-textconv; cat")
    hooks = repo / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "post-index-change").write_text(f"#!/bin/sh\ntouch {marker}-hook\n")
    (hooks / "post-index-change").chmod(0o755)
    (ws.path / ".gitattributes").write_text("* filter=evil diff=evil\n")
    (ws.path / "src/app.py").write_text("changed\n")
    patch, stats = diff(ws)
    assert b"changed" in patch and stats.files_changed == 2
    assert list(tmp_path.glob("PWNED*")) == []
    ws.remove()


def test_cleanup_removes_worktrees_of_dead_runs(repo: Path, cache: Path) -> None:
    run_dir = cache / "runs" / "dead-run"
    ws = Workspace.create(str(repo), None, run_dir, cache)
    owner = (run_dir / "owner.json").read_text().replace(f'"pid": {__import__("os").getpid()}', '"pid": 999999999')
    (run_dir / "owner.json").write_text(owner)
    live = Workspace.create(str(repo), None, cache / "runs" / "live-run", cache)
    assert cleanup_dead_runs(cache) == ["dead-run"]
    assert not run_dir.exists() and live.path.exists()
    assert str(ws.path) not in sh_git(repo, "worktree", "list")
    live.remove()



def test_concurrent_worktrees_of_one_repo(repo: Path, cache: Path, tmp_path: Path) -> None:
    """A batch makes many worktrees of one repository at once: none may fail or leak."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> bool:
        ws = Workspace.create(str(repo), None, tmp_path / f"run{i}", cache)
        (ws.path / f"f{i}.txt").write_text(str(i))
        _, stats = diff(ws)
        ws.remove()
        return stats.files_changed == 1

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(one, range(16)))
    assert sh_git(repo, "worktree", "list").count("\n") == 0


def test_relative_cache_and_run_paths_work(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ASTRA_CACHE=.cache is a relative path; git runs in other directories, so it must not move."""
    monkeypatch.chdir(tmp_path)
    ws = Workspace.create(str(repo), None, Path("rel-cache/runs/r1"), Path("rel-cache"))
    assert ws.path == tmp_path / "rel-cache/runs/r1/worktree" and (ws.path / "README.md").exists()
    ws.remove()


def test_instructions_are_read_from_the_base_commit_in_one_git_call(repo: Path, cache: Path, tmp_path: Path) -> None:
    """AGENTS.md before CLAUDE.md, as committed at the base (or at the commit asked for), never as
    the worktree holds it; a directory of that name is not a file."""
    (repo / "CLAUDE.md").write_text("claude rules\n")
    (repo / "AGENTS.md").mkdir()
    (repo / "AGENTS.md" / "x").write_text("x\n")
    sh_git(repo, "add", "-A")
    sh_git(repo, "commit", "-q", "-m", "claude")
    first = sh_git(repo, "rev-parse", "HEAD")
    sh_git(repo, "rm", "-rq", "AGENTS.md")
    (repo / "AGENTS.md").write_text("agents rules\n\nwith a blank line\n")
    sh_git(repo, "add", "-A")
    sh_git(repo, "commit", "-q", "-m", "agents")
    ws = Workspace.create(str(repo), None, tmp_path / "run", cache)
    (ws.path / "AGENTS.md").write_text("changed in the worktree\n")
    names = ("AGENTS.md", "CLAUDE.md")
    assert ws.read_first_base_file(names) == ("AGENTS.md", "agents rules\n\nwith a blank line\n")
    assert ws.read_first_base_file(names, first) == ("CLAUDE.md", "claude rules\n")
    assert ws.read_first_base_file(("NONE.md",)) is None
    ws.remove()
    assert not ws.path.exists() and sh_git(repo, "worktree", "list").count("\n") == 0
