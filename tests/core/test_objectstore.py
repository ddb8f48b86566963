"""The per-commit object store: made once, reused, never changed while held, pruned when free."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runner import objectstore
from runner.workspace import SAFE_CONFIG, Workspace, git_env
from tests.conftest import make_repo, sh_git

GIT = ["git", *SAFE_CONFIG]


def acquire(cache: Path, repo: Path, commit: str) -> objectstore.ObjectStore:
    return objectstore.acquire(cache, repo / ".git", commit, git_argv=GIT, env=git_env(), timeout=60)


def objects_in(objects: Path) -> set[str]:
    """Every object id the store holds (read by git with the store as its only object dir)."""
    reader = objects.parents[2] / f"reader-{objects.parent.name}.git"  # beside the cache dir of stores
    if not reader.exists():
        subprocess.run(["git", "init", "-q", "--bare", str(reader)], check=True, env=git_env())
    proc = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch-check=%(objectname)"],
                          env={**git_env(), "GIT_OBJECT_DIRECTORY": str(objects), "GIT_DIR": str(reader)},
                          capture_output=True, text=True, check=True)
    return set(proc.stdout.split())


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", {"a.py": "a = 1\n"})
    (repo / "b.py").write_text("b = 2\n")
    sh_git(repo, "add", "-A")
    sh_git(repo, "commit", "-qm", "second")
    return repo


def test_a_store_holds_the_base_history_only_and_is_made_once(tmp_path: Path, repo: Path) -> None:
    base = sh_git(repo, "rev-parse", "HEAD")
    sh_git(repo, "checkout", "-qb", "private")
    (repo / "secret.txt").write_text("PRIVATE\n")
    sh_git(repo, "add", "-A")
    sh_git(repo, "commit", "-qm", "private")
    private = {sh_git(repo, "rev-parse", "HEAD"), sh_git(repo, "rev-parse", "HEAD:secret.txt")}
    reachable = set(sh_git(repo, "rev-list", "--objects", base).split()) - {"a.py", "b.py"}

    first = acquire(tmp_path / "cache", repo, base)
    assert first.built
    assert objects_in(first.objects) == reachable and not objects_in(first.objects) & private
    packs = sorted(p.name for p in (first.objects / "pack").iterdir())
    assert [p.rsplit(".", 1)[1] for p in packs] == ["idx", "pack"]  # one pass wrote both
    stamp = {p.name: p.stat().st_mtime_ns for p in (first.objects / "pack").iterdir()}

    second = acquire(tmp_path / "cache", repo, base)
    assert not second.built and second.objects == first.objects
    assert {p.name: p.stat().st_mtime_ns for p in (second.objects / "pack").iterdir()} == stamp
    first.release()
    second.release()


def test_concurrent_runs_on_one_commit_build_it_once(tmp_path: Path, repo: Path) -> None:
    base = sh_git(repo, "rev-parse", "HEAD")
    with ThreadPoolExecutor(8) as pool:
        stores = list(pool.map(lambda _: acquire(tmp_path / "cache", repo, base), range(8)))
    assert sum(s.built for s in stores) == 1
    assert len({s.objects for s in stores}) == 1
    for s in stores:
        s.release()


def test_a_held_store_is_never_pruned_and_a_free_one_is(tmp_path: Path, repo: Path) -> None:
    cache = tmp_path / "cache"
    base = sh_git(repo, "rev-parse", "HEAD")
    older = sh_git(repo, "rev-parse", "HEAD~1")
    held, free = acquire(cache, repo, base), acquire(cache, repo, older)
    free.release()
    # Held in another process, as a concurrent run would: a flock is per open file.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_SH); "
        "print('held', flush=True); time.sleep(60)"), str(cache / "objects" / f"{base}.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        held.release()
        assert objectstore.prune(cache) == [older]
        assert (held.objects / "pack").is_dir() and not free.objects.exists()
        assert objects_in(held.objects)
    finally:
        holder.kill()
        holder.wait()
    assert objectstore.prune(cache) == [base]
    assert list((cache / "objects").iterdir()) == []


def test_pruning_by_age_spares_recently_used_stores(tmp_path: Path, repo: Path) -> None:
    cache = tmp_path / "cache"
    old, new = sh_git(repo, "rev-parse", "HEAD~1"), sh_git(repo, "rev-parse", "HEAD")
    acquire(cache, repo, old).release()
    a_week_ago = time.time() - 7 * 24 * 3600
    os.utime(cache / "objects" / old / objectstore.COMPLETE, (a_week_ago, a_week_ago))
    acquire(cache, repo, new).release()  # making a store prunes the stale ones
    assert not (cache / "objects" / old).exists() and (cache / "objects" / new).exists()


def test_a_crashed_build_is_made_again(tmp_path: Path, repo: Path) -> None:
    cache = tmp_path / "cache"
    base = sh_git(repo, "rev-parse", "HEAD")
    half = cache / "objects" / base / "objects" / "pack"
    half.mkdir(parents=True)
    (half / "tmp_pack_XXXX").write_bytes(b"half a pack")
    store = acquire(cache, repo, base)
    assert store.built and not (half / "tmp_pack_XXXX").exists()
    store.release()


def test_workspaces_on_one_commit_share_the_store_and_cleanup_prunes_it(tmp_path: Path, repo: Path) -> None:
    cache = tmp_path / "cache"
    one = Workspace.create(str(repo), None, cache / "runs" / "one", cache)
    two = Workspace.create(str(repo), None, cache / "runs" / "two", cache)
    assert one.export_objects() == two.export_objects()
    assert one.store is not None and one.store.built and two.store is not None and not two.store.built
    one.remove()
    assert objectstore.prune(cache) == []  # two still holds it
    two.remove()
    # No engine: this test must not reap other processes' containers (the reaping has its own tests).
    env = {**os.environ, "ASTRA_CACHE": str(cache), "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    proc = subprocess.run([sys.executable, "-m", "runner", "cleanup"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert "1 object store" in proc.stdout, proc.stdout + proc.stderr
    assert list((cache / "objects").iterdir()) == []


def test_a_repository_on_another_filesystem_than_the_cache(tmp_path: Path, repo: Path) -> None:
    """pack-objects renames its temporary files into place: they must be made on the cache's filesystem."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    cache = Path(tempfile.mkdtemp(dir=shm, prefix="astra-test-cache-"))
    try:
        base = sh_git(repo, "rev-parse", "HEAD")
        store = acquire(cache, repo, base)
        assert objects_in(store.objects) == set(sh_git(repo, "rev-list", "--objects", base).split()) - {"a.py", "b.py"}
        assert not list((repo / ".git" / "objects").rglob("tmp_*")), "nothing written into the user's repository"
        store.release()
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_the_directory_exists_before_the_store_is_written_and_others_wait_for_it(tmp_path: Path, repo: Path) -> None:
    """The container mounts the store while pack-objects writes it; a second run waits, then reuses it."""
    cache = tmp_path / "cache"
    base = sh_git(repo, "rev-parse", "HEAD")
    first = objectstore.open_store(cache, repo / ".git", base, git_argv=GIT, env=git_env(), timeout=60)
    assert first.objects.is_dir() and not first.complete
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(acquire, cache, repo, base)
        time.sleep(0.3)
        assert not waiting.done(), "a second run must wait for the first one's store"
        first.finish()
        second = waiting.result(timeout=30)
    assert first.built and first.complete and not second.built and second.objects == first.objects
    first.release()
    second.release()


def test_a_store_released_while_being_written_is_made_again_by_the_next_run(tmp_path: Path, repo: Path) -> None:
    cache = tmp_path / "cache"
    base = sh_git(repo, "rev-parse", "HEAD")
    abandoned = objectstore.open_store(cache, repo / ".git", base, git_argv=GIT, env=git_env(), timeout=60)
    abandoned.release()  # a run that failed before its store was written
    abandoned.finish()  # a late writer does nothing once released
    assert not abandoned.complete
    again = acquire(cache, repo, base)
    assert again.built and again.complete and objects_in(again.objects)
    again.release()


def test_a_store_made_under_umask_0_can_still_be_mounted(tmp_path: Path, repo: Path) -> None:
    """GitLab's runner builds with umask 0000: the store must not become writable by everyone."""
    from runner.sandbox.docker_files import check_mount_source

    old = os.umask(0)
    try:
        store = acquire(tmp_path / "cache", repo, sh_git(repo, "rev-parse", "HEAD"))
    finally:
        os.umask(old)
    assert (store.objects.stat().st_mode & 0o777) == 0o755
    assert ((tmp_path / "cache" / "objects").stat().st_mode & 0o777) == 0o700
    check_mount_source(store.objects, strict_below=store.objects.parent.parent)
    store.release()


def commit_file(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    sh_git(repo, "add", "-A")
    sh_git(repo, "commit", "-qm", name)
    return sh_git(repo, "rev-parse", "HEAD")


def reachable(repo: Path, commit: str) -> set[str]:
    return {line.split()[0] for line in sh_git(repo, "rev-list", "--objects", commit).splitlines()}


def packs(objects: Path) -> list[Path]:
    return sorted((objects / "pack").glob("pack-*.pack"))


def test_a_new_commit_links_its_ancestors_packs_and_packs_only_what_it_adds(tmp_path: Path, repo: Path) -> None:
    """Tonight's main on last night's: the history is not packed again, and the store still holds
    exactly what the new commit reaches (an ancestor's objects are all reachable from it)."""
    cache = tmp_path / "cache"
    old = sh_git(repo, "rev-parse", "HEAD")
    sh_git(repo, "checkout", "-qb", "private")
    private = commit_file(repo, "secret.txt", "PRIVATE\n")
    acquire(cache, repo, private).release()  # a store of a commit that is not an ancestor
    sh_git(repo, "checkout", "-q", "main")
    acquire(cache, repo, old).release()
    new = commit_file(repo, "c.py", "c = 3\n")

    store = acquire(cache, repo, new)
    assert store.built
    assert objects_in(store.objects) == reachable(repo, new)
    assert not objects_in(store.objects) & (reachable(repo, private) - reachable(repo, old))
    old_pack, = packs(cache / "objects" / old / "objects")
    assert len(packs(store.objects)) == 2
    linked = store.objects / "pack" / old_pack.name
    assert linked.stat().st_ino == old_pack.stat().st_ino, "the ancestor's pack is linked, not copied"
    added = next(p for p in packs(store.objects) if p.name != old_pack.name)
    count = subprocess.run(["git", "verify-pack", "-v", str(added.with_suffix(".idx"))], capture_output=True,
                           text=True, check=True, env=git_env()).stdout
    assert sum(1 for line in count.splitlines() if line[:1].isalnum() and len(line.split()[0]) == 40) == 3, count

    # The ancestor's store pruned (the new one is held): the new one keeps every object, and git
    # reads its whole history from it.
    assert sorted(objectstore.prune(cache)) == sorted([old, private])
    assert objects_in(store.objects) == reachable(repo, new)
    reader = tmp_path / "reader.git"
    subprocess.run(["git", "init", "-q", "--bare", str(reader)], check=True, env=git_env())
    log = subprocess.run(["git", "log", "--format=%s", new], capture_output=True, text=True, check=True,
                         env={**git_env(), "GIT_DIR": str(reader), "GIT_OBJECT_DIRECTORY": str(store.objects)})
    assert log.stdout.split() == [line.split()[0] for line in sh_git(repo, "log", "--format=%s", new).splitlines()]
    store.release()


def test_a_long_chain_of_packs_is_packed_whole_again(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objectstore, "MAX_PACKS", 2)
    cache = tmp_path / "cache"
    counts = []
    for i in range(4):
        commit = commit_file(repo, f"n{i}.py", f"n = {i}\n")
        store = acquire(cache, repo, commit)
        counts.append(len(packs(store.objects)))
        assert objects_in(store.objects) == reachable(repo, commit)
        store.release()
    assert counts == [1, 2, 1, 2]  # the first has no ancestor's store; the third would have had 3


def test_no_link_is_kept_when_links_cannot_be_made(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    acquire(cache, repo, sh_git(repo, "rev-parse", "HEAD")).release()
    new = commit_file(repo, "c.py", "c = 3\n")
    calls = []

    def refuse(src: Path, dst: Path) -> None:
        calls.append(dst)
        if len(calls) > 1:  # the first link is made, the second refused: the first is undone
            raise OSError(18, "Invalid cross-device link")
        os_link(src, dst)

    os_link = os.link
    monkeypatch.setattr(os, "link", refuse)
    store = acquire(cache, repo, new)
    assert len(calls) == 2 and len(packs(store.objects)) == 1
    assert len({f.stem for f in (store.objects / "pack").iterdir()}) == 1, "the one link made was undone"
    assert objects_in(store.objects) == reachable(repo, new)
    store.release()


@pytest.mark.docker
def test_git_inside_reads_a_linked_store_through_the_cli(tmp_path: Path, repo: Path) -> None:
    """Two runs in the docker sandbox, on a commit and then on its child: the child's store links
    the first one's pack, and git inside still shows the whole history, clean."""
    import json

    import yaml

    look = "git log --format=%s | tr '\\n' ' '; echo; git status --porcelain | wc -l; git show --stat HEAD~1 | head -1"
    (tmp_path / "model.yaml").write_text(yaml.safe_dump([
        {"tool_calls": [{"name": "bash", "input": {"command": look}}]}, {"text": "looked"}]))
    (tmp_path / "task.yaml").write_text(yaml.safe_dump({
        "name": "chain", "repo": "repo", "prompt": "look", "model": "scripted:model.yaml", "expect_changes": False,
        "sandbox": {"backend": "docker"}, "policy": {"allow": ["bash"]}, "outputs": {"dir": str(tmp_path / "out")}}))
    env = {**os.environ, "ASTRA_CACHE": str(tmp_path / "cache")}
    outputs = []
    for run in range(2):
        if run == 1:
            commit_file(repo, "later.py", "later = 1\n")  # the child commit: its store links the first one's
        proc = subprocess.run([sys.executable, "-m", "runner", "run", str(tmp_path / "task.yaml")], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        trajectory = [json.loads(line) for line in (tmp_path / "out" / "trajectory.jsonl").read_text().splitlines()]
        outputs.append(next(e["output"] for e in trajectory if e["type"] == "tool_result"))
    head = sh_git(repo, "rev-parse", "HEAD")
    subjects = sh_git(repo, "log", "--format=%s", head).split()
    assert outputs[1].split("\n")[0].split() == subjects, outputs[1]
    assert outputs[1].split("\n")[1].strip() == "0", outputs[1]
    assert outputs[1].split("\n")[2].startswith("commit "), outputs[1]
    assert len(packs(tmp_path / "cache" / "objects" / head / "objects")) == 2
