"""Only what the daemon can see, and no predictable shared path trusted (issue 15 item 1, issue 12 item 2).

Docker resolves a bind mount's source on the daemon's machine, as root, following symlinks. So
every source must live beside the worktree (in the cache a remote daemon shares), and no
directory on the way to it may be one another local user could rename or swap for a symlink.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from runner.errors import SandboxError
from runner.sandbox.docker import DockerSandbox, connect
from runner.sandbox.docker_files import check_mount_source
from tests.sandbox.conftest import Repo, sandbox_config

OTHER_UID = 4242  # "another local user": any uid but ours and root's

as_root = pytest.mark.skipif(os.getuid() != 0, reason="making files of another user needs root")


@pytest.mark.docker
async def test_every_mount_source_is_beside_the_worktree(repo: Repo) -> None:
    """Nothing from site-packages or /tmp/astra-run-<uid>: a daemon sharing only the cache works."""
    async with DockerSandbox(sandbox_config(repo, setup=("true",))) as box:
        attrs = connect().api.inspect_container(box.container_id)
        run_dir = repo.worktree.resolve().parent
        sources = {m["Destination"]: Path(m["Source"]) for m in attrs["Mounts"]}
        assert {"/workspace", "/workspace/.git", "/astra/helper.py", "/astra/ca-certificates.crt"} <= set(sources)
        outside = {d: s for d, s in sources.items() if not s.is_relative_to(run_dir)}
        assert not outside, f"mounted from outside {run_dir}: {outside}"
        assert (await box.exec("cat .git", timeout=10)).output == "gitdir: /astra/git\n"
        assert (await box.exec("git status --porcelain && git log --format=%s", timeout=20)).output.split() == [
            "second", "first"]
        files_dir = sources["/astra/helper.py"].parent
        assert files_dir.stat().st_mode & 0o777 == 0o700
    assert not files_dir.exists(), "the per-run files are removed with the container"


@as_root
@pytest.mark.docker
async def test_a_planted_gitfile_symlink_in_tmp_is_never_mounted(repo: Repo, tmp_path: Path) -> None:
    """The attack of issue 12 item 2: another user pre-creates $TMPDIR/astra-run-<uid>/ and swaps the
    gitfile for a symlink to a root-only file; the sandbox must never show that file's content."""
    secret = tmp_path / "root-only"
    secret.write_text("ROOT-ONLY-SECRET\n")
    secret.chmod(0o600)
    planted = Path(tempfile.gettempdir()) / f"astra-run-{os.getuid()}"
    planted_existed = planted.exists()
    if not planted_existed:
        planted.mkdir(mode=0o777)
        planted.chmod(0o777)
        os.chown(planted, OTHER_UID, OTHER_UID)
    link = planted / f"gitfile-{os.getuid()}"
    try:
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(secret)
            os.chown(link, OTHER_UID, OTHER_UID, follow_symlinks=False)
        async with DockerSandbox(sandbox_config(repo)) as box:
            shown = (await box.exec("cat /workspace/.git; cat /astra/helper.py | head -c 0", timeout=10)).output
            assert "ROOT-ONLY-SECRET" not in shown and shown == "gitdir: /astra/git\n"
            mounts = connect().api.inspect_container(box.container_id)["Mounts"]
            assert not [m for m in mounts if str(planted) in m["Source"]]
    finally:
        link.unlink(missing_ok=True)
        if not planted_existed:
            planted.rmdir()


@as_root
@pytest.mark.docker
@pytest.mark.parametrize("attack", ["dir-of-another-user", "world-writable-dir", "symlink-of-another-user"])
async def test_a_worktree_another_user_could_redirect_is_refused(tmp_path: Path, repo: Repo, attack: str) -> None:
    """Whoever can rename a directory on the way to a mount source can point the daemon anywhere."""
    shared = tmp_path / "shared"
    shared.mkdir()
    if attack == "dir-of-another-user":
        os.chown(shared, OTHER_UID, OTHER_UID)
    elif attack == "world-writable-dir":
        shared.chmod(0o777)
    worktree = shared / "wt"
    repo.worktree.rename(worktree)
    if attack == "symlink-of-another-user":
        link = tmp_path / "link"
        link.symlink_to(shared)
        os.chown(link, OTHER_UID, OTHER_UID, follow_symlinks=False)
        worktree = link / "wt"
    box = DockerSandbox(sandbox_config(repo, worktree=worktree))
    with pytest.raises(SandboxError, match="refusing to mount"):
        async with box:
            pass
    assert box.container_id is None


def test_mount_source_checks(tmp_path: Path) -> None:
    private = tmp_path / "a" / "b"
    private.mkdir(parents=True)
    check_mount_source(private)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp: others cannot rename what is ours in it
    (sticky / "mine").mkdir()
    check_mount_source(sticky / "mine")
    (tmp_path / "ours-link").symlink_to(private)
    check_mount_source(tmp_path / "ours-link")
    (tmp_path / "a").chmod(0o777)
    with pytest.raises(SandboxError, match="writable by every user"):
        check_mount_source(private)
    with pytest.raises(SandboxError, match="writable by every user"):
        check_mount_source(tmp_path / "ours-link")  # the link is ours, its target's path is not safe
    with pytest.raises(SandboxError, match="does not exist"):
        check_mount_source(tmp_path / "missing")


@pytest.mark.docker
async def test_a_container_whose_create_never_answered_is_still_removed(repo: Repo) -> None:
    """close() lists the run's containers only when a create call went unanswered: then it must."""
    box = DockerSandbox(sandbox_config(repo))
    real_connect = connect

    def lossy_connect() -> object:
        client = real_connect()
        create = client.api.create_container  # what containers.create calls

        made: list[object] = []

        def create_then_lose_the_answer(*args: object, **kwargs: object) -> object:
            if not made:  # the daemon makes it once; every answer is lost (retries too)
                made.append(create(*args, **kwargs))
            raise RuntimeError("the answer was lost")

        client.api.create_container = create_then_lose_the_answer
        return client

    import runner.sandbox.docker as docker_backend

    real_shared = docker_backend.shared_client
    docker_backend.shared_client = lossy_connect  # type: ignore[assignment]  # the run's client
    try:
        with pytest.raises(SandboxError, match="answer was lost"):
            async with box:
                pass
    finally:
        docker_backend.shared_client = real_shared
    left = connect().containers.list(all=True, filters={"label": f"astra-run.run-id={box.config.run_id}"})
    assert left == []


def test_a_cache_in_a_world_writable_volume_of_ours_is_accepted_and_its_dirs_are_private(tmp_path: Path) -> None:
    """A Kubernetes emptyDir is 0777: the cache may live in it; what astra-run makes there is 0700."""
    from runner.objectstore import private_dirs

    volume = tmp_path / "volume"
    volume.mkdir()
    volume.chmod(0o777)
    old = os.umask(0)  # GitLab's runner builds with umask 0000
    try:
        private_dirs(volume / "cache" / "runs" / "r1")
    finally:
        os.umask(old)
    runs = volume / "cache" / "runs"
    assert all((p.stat().st_mode & 0o777) == 0o700 for p in (volume / "cache", runs, runs / "r1"))
    (runs / "r1" / "worktree").mkdir()
    check_mount_source(runs / "r1" / "worktree", strict_below=runs)
    runs.chmod(0o777)  # but not below where astra-run's own directories start
    with pytest.raises(SandboxError, match="writable by every user"):
        check_mount_source(runs / "r1" / "worktree", strict_below=runs)


def test_leftovers_are_reaped_once_a_minute_per_process_not_once_per_task(monkeypatch: pytest.MonkeyPatch) -> None:
    import runner.sandbox.docker as docker_backend

    calls: list[object] = []
    monkeypatch.setattr(docker_backend, "reap_leftovers", calls.append)
    monkeypatch.setattr(docker_backend, "_last_reap", -docker_backend.REAP_EVERY_S)
    for _ in range(8):  # eight tasks of a batch starting their sandboxes
        docker_backend._reap_now_and_then("client")
    assert calls == ["client"]
    monkeypatch.setattr(docker_backend, "_last_reap", docker_backend._last_reap - docker_backend.REAP_EVERY_S)
    docker_backend._reap_now_and_then("client")
    assert len(calls) == 2
