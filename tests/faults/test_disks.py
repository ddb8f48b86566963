"""Full disks, for real (a small tmpfs): the output directory, and ASTRA_CACHE (where the worktree
and the patch's index live). Exit 4, the reason says what could not be written, every output
that fits is written, and the cleanup runs (or, when the patch is lost, the worktree is kept)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.walk import remove_tree
from tests.faults.helpers import assert_cleaned_up, make_task, result_of, tmpfs, worktrees


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def _write(path: str, size: int) -> dict[str, Any]:
    """A file of `size` bytes made by bash (its content never passes through the trajectory)."""
    return {"tool_calls": [{"name": "bash", "input": {"command": f"head -c {size} /dev/zero | tr '\\0' x > {path}"}}]}


def _lines_are_json(path: Path) -> int:
    lines = path.read_text().splitlines()
    for line in lines:
        json.loads(line)
    return len(lines)


def test_a_full_output_disk_for_the_trajectory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It was a traceback, exit 1, only the trajectory written, the worktree registered."""
    monkeypatch.setenv("ASTRA_CACHE", str(tmp_path / "cache"))
    turns = [{"text": "y" * 400_000, "tool_calls": [{"name": "ls", "input": {}}]}, {"text": "done"}]
    with tmpfs(tmp_path / "out", "256k") as out:
        task = make_task(tmp_path, turns, out=out)
        assert main(["run", str(task)]) == 4
        r = result_of(out)
        assert r["status"] == "error" and r["exit_code"] == 4, r
        assert "could not write trajectory.jsonl" in r["reason"] and "No space left" in r["reason"]
        assert r["turns"] == 1, "the run stopped at the first event it could not record"
        assert {"patch.diff", "junit.xml", "cost.json", "summary.md"} <= {p.name for p in out.iterdir()}
        _lines_are_json(out / "trajectory.jsonl")  # cut back to its last complete line
    assert_cleaned_up(tmp_path / "repo", tmp_path / "cache")


def test_a_patch_too_big_for_the_output_disk_keeps_the_worktree(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRA_CACHE", str(tmp_path / "cache"))
    with tmpfs(tmp_path / "out", "128k") as out:
        task = make_task(tmp_path, [_write("big.txt", 300_000), {"text": "done"}], out=out)
        assert main(["run", str(task)]) == 4
        r = result_of(out)
        assert r["status"] == "error" and r["error_kind"] == "patch", r
        assert "could not write patch.diff" in r["reason"] and "the worktree is kept at" in r["reason"]
        kept = worktrees(tmp_path / "repo")
        assert len(kept) == 1 and (Path(kept[0]) / "big.txt").stat().st_size == 300_000
        assert str(kept[0]) in r["reason"]
        assert {"junit.xml", "cost.json", "summary.md", "trajectory.jsonl"} <= {p.name for p in out.iterdir()}
    assert main(["cleanup"]) == 0
    assert len(worktrees(tmp_path / "repo")) == 1, "`astra-run cleanup` leaves a kept worktree alone"


def test_a_full_cache_makes_the_patch_an_error_not_an_empty_success(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`git read-tree`/`git add` failed on a full ASTRA_CACHE: an empty patch.diff and `success`."""
    with tmpfs(tmp_path / "cache", "1m") as cache:
        monkeypatch.setenv("ASTRA_CACHE", str(cache))
        fill = {"tool_calls": [{"name": "bash", "input": {"command": "head -c 2000000 /dev/urandom > fill.bin"}}]}
        task = make_task(tmp_path, [fill, {"text": "done"}])  # incompressible, more than fits
        assert main(["run", str(task)]) == 4
        r = result_of(tmp_path / "out")
        assert r["status"] == "error" and r["exit_code"] == 4, r
        assert "the patch could not be computed" in r["reason"] and "the worktree is kept at" in r["reason"]
        assert len(worktrees(tmp_path / "repo")) == 1
        for wt in worktrees(tmp_path / "repo"):  # the tmpfs goes away: unregister before it does
            main(["cleanup"])
            from tests.conftest import sh_git

            sh_git(tmp_path / "repo", "worktree", "remove", "--force", wt)


def test_a_full_cache_while_the_worktree_is_made_leaves_nothing_registered(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import make_repo

    repo = make_repo(tmp_path / "repo", {f"f{i}.txt": "z" * 60_000 for i in range(8)})
    with tmpfs(tmp_path / "cache", "400k") as cache:
        monkeypatch.setenv("ASTRA_CACHE", str(cache))
        task = make_task(tmp_path, [{"text": "done"}])
        assert main(["run", str(task)]) == 4
        r = result_of(tmp_path / "out")
        assert r["status"] == "error" and "unable to write" in r["reason"], r
        assert worktrees(repo) == []


def test_a_failure_after_the_worktree_is_added_unregisters_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything failing after `git worktree add` (the patch git dir on a full cache) left it registered."""
    from runner import workspace as ws_mod
    from tests.conftest import make_repo

    repo = make_repo(tmp_path / "repo", {"a": "a\n"})
    real = ws_mod.git

    def failing_init(args: list[str], **kwargs: Any) -> Any:
        if args[:2] == ["init", "--bare"]:
            raise ws_mod.GitError("git init failed: No space left on device")
        return real(args, **kwargs)

    monkeypatch.setattr(ws_mod, "git", failing_init)
    with pytest.raises(ws_mod.GitError):
        ws_mod.Workspace.create(str(repo), None, tmp_path / "cache" / "runs" / "r1", tmp_path / "cache")
    assert worktrees(repo) == []
    assert not (tmp_path / "cache" / "runs" / "r1").exists()


def test_a_tree_1100_levels_deep_in_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.walk raised RecursionError inside the finish: no result.json, the worktree registered."""
    monkeypatch.setenv("ASTRA_CACHE", str(tmp_path / "cache"))
    deep = "/".join(["d"] * 1100)
    turns = [{"tool_calls": [{"name": "bash", "input": {"command": f"mkdir -p {deep} && echo x > {deep}/f && "
                                                                     f"mkfifo {deep}/pipe"}}]},
             {"text": "done"}]
    task = make_task(tmp_path, turns)
    assert main(["run", str(task), "--keep"]) == 0
    r = result_of(tmp_path / "out")
    assert r["status"] == "success" and r["patch"]["files_changed"] == 1
    assert len(worktrees(tmp_path / "repo")) == 1  # kept, and its nested-repository scan walked it
    task = make_task(tmp_path, turns)
    assert main(["run", str(task)]) == 0
    kept = worktrees(tmp_path / "repo")
    assert len(kept) == 1  # the second one was removed, deep tree and all
    remove_tree(kept[0])  # pytest's own rmtree of old tmp dirs would recurse on it


def test_a_full_output_disk_in_a_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.batch.helpers import LS, Workdir

    monkeypatch.setenv("ASTRA_CACHE", str(tmp_path / "cache"))
    wd = Workdir(tmp_path)
    wd.task("big", [_write("big.txt", 300_000), {"text": "done"}])
    wd.task("small", LS)
    wd.manifest()
    with tmpfs(wd.out, "160k"):
        assert wd.batch("-j", "1") == 4
        results = wd.results()
        assert results["big"]["status"] == "error" and "could not write patch.diff" in results["big"]["reason"]
        assert results["small"]["status"] == "success"
        kept = worktrees(wd.repo)
        assert len(kept) == 1  # the big one's work, whose patch did not fit
        remove_tree(kept[0])
