"""Issue 12.7: the worktree's size has a limit (sandbox.disk). The kernel holds every single file
to it (RLIMIT_FSIZE, hard, set by the helper before any command runs). Where the runner can (root,
loop devices, a Docker daemon sharing our mounts), the kernel holds the total too: the worktree is
its own ext4 file system of that size (runner/diskcap.py); elsewhere the total is measured while
each command runs and after every call (`ASTRA_DISK_CAP=poll` forces that). Over it: exit 3, a
reason naming the limit, the patch of the work so far kept, every output written, nothing left
mounted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from runner.diskcap import IMAGE_NAME, mounts_under
from runner.sandbox.base import size_bytes
from tests.conftest import make_repo
from tests.security.helpers import FILES, attack, bash, result, tool_outputs

KERNEL = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/loop-control"),
    reason="the kernel-held total needs root and loop devices (/dev/loop-control)" if os.geteuid() == 0
    else "the kernel-held total needs root (a loop-mounted file system)")
OUTPUTS = ("result.json", "patch.diff", "junit.xml", "summary.md", "trajectory.jsonl")

WRITE_NOTES = {"tool_calls": [{"name": "write", "input": {"path": "NOTES.md", "content": "kept\n"}}]}


@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_one_huge_file_is_refused_by_the_kernel(tmp_path: Path, backend: str) -> None:
    proc, out = attack(tmp_path, [bash("fallocate -l 1G big; echo fallocate=$?; ulimit -f unlimited; "
                                       "echo raise=$?; stat -c size=%s big")],
                       backend=backend, sandbox={"disk": "50m"})
    [output] = tool_outputs(out)
    assert "fallocate=153" in output and "File size limit exceeded" in output, output  # SIGXFSZ
    assert "size=0" in output, output
    if backend == "docker":  # no capability there: the hard limit cannot be lifted
        assert "raise=1" in output, output
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sizes() -> None:
    assert size_bytes("10g") == 10 * 2**30 and size_bytes("512m") == 512 * 2**20 and size_bytes("2048") == 2048
    assert size_bytes("1.5k") == 1536


@KERNEL
def test_a_remade_image_is_never_read_through_its_old_loop_device(tmp_path: Path) -> None:
    """LoopMount.create's sizing retry remakes the image and mounts it again. Under load the old
    loop device can still be attached (its autoclear waits for a last opener - held open here), and
    `mount -o loop` reuses it for the same backing file: its cache held the old file system (seen in a
    batch as EBADMSG on lost+found, or a bad superblock). Each mkfs makes a new file instead."""
    from runner.diskcap import LoopMount, _mkfs

    image, point = tmp_path / IMAGE_NAME, tmp_path / "worktree"
    point.mkdir()
    _mkfs(image, 64 * 2**20, 0, 0)
    loop = LoopMount(image, point)
    loop.mount()
    try:
        (point / "first").write_text("the old file system\n")
        device = subprocess.run(["findmnt", "-no", "SOURCE", str(point)], capture_output=True, text=True,
                                check=True).stdout.strip()
        opener = os.open(device, os.O_RDONLY)
        try:
            loop.unmount()
            _mkfs(image, 72 * 2**20, 0, 0)
            loop.mount()  # a reused device: "bad superblock", or reading the root below fails
            assert sorted(os.listdir(point)) == ["lost+found"]
            (point / "lost+found").rmdir()
        finally:
            os.close(opener)
    finally:
        loop.remove()
    assert mounts_under(tmp_path) == []


def _loops_under(root: Path) -> list[str]:
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(root) in line]


def _containers_of(run_id: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=astra-run.run-id={run_id}"],
                         capture_output=True, text=True).stdout
    return out.split()


def _nothing_left(tmp_path: Path, run_id: str | None, backend: str) -> None:
    assert mounts_under(tmp_path) == [], "a file system is still mounted"
    assert _loops_under(tmp_path) == [], "a loop device is still attached"
    assert list((tmp_path / "cache").glob(f"runs/*/{IMAGE_NAME}")) == [], "an image is left"
    if backend == "docker" and run_id:
        assert _containers_of(run_id) == []


class _Watch:
    """The most the host disk held for the worktree's image while the run ran (allocated blocks)."""

    def __init__(self, cache: Path) -> None:
        self.cache, self.most, self.mounted = cache, 0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for image in self.cache.glob(f"runs/*/{IMAGE_NAME}"):
                try:
                    self.most = max(self.most, image.stat().st_blocks * 512)
                    self.mounted = self.mounted or bool(mounts_under(image.parent / "worktree"))
                except OSError:
                    pass
            time.sleep(0.05)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@KERNEL
@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_the_kernel_holds_the_total(tmp_path: Path, backend: str) -> None:
    """fallocate and many files under the per-file cap: the file system says ENOSPC, the host never
    holds more than the cap, the run stops on the limit with the patch and every output."""
    # The log's blocks are allocated first (past its end: -n), so it can be written on a full disk;
    # it reaches patch.diff (the command itself is stopped, its output never returns).
    fill = ("fallocate -n -l 256k log.txt; exec >>log.txt 2>&1; "
            "fallocate -l 1G big; echo fa1=$?; fallocate -l 40M a; echo fa2=$?; fallocate -l 40M b; echo fa3=$?; "
            "for i in 1 2 3 4; do head -c 30M /dev/urandom > f$i; echo w$i=$?; done; df -k .; sleep 30; echo never-here")
    started = time.monotonic()
    with _Watch(tmp_path / "cache") as watch:
        proc, out = attack(tmp_path, [WRITE_NOTES, bash(fill)], backend=backend, sandbox={"disk": "64m"},
                           env={"ASTRA_DISK_CAP": "auto"})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    r = result(out)
    assert r["status"] == "limit" and r["reason"].startswith("disk:") and "sandbox.disk is 64m" in r["reason"], r
    assert r["disk_cap"] == "kernel" and "measured every" not in proc.stdout + proc.stderr
    output = (out / "patch.diff").read_text(errors="replace")
    assert "fa1=153" in output and "fa2=0" in output, output  # one huge file: SIGXFSZ (RLIMIT_FSIZE)
    assert "fa3=1" in output and "No space left on device" in output, output  # the total: ENOSPC
    assert "never-here" not in output and time.monotonic() - started < 30
    assert watch.mounted and 0 < watch.most <= size_bytes("64m") * 1.06, watch.most  # and the fs's own blocks
    assert "NOTES.md" in (out / "patch.diff").read_text()
    assert all((out / name).is_file() for name in OUTPUTS)
    events = [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()]
    assert [e["disk_cap"] for e in events if e["type"] == "sandbox_ready"] == ["kernel"]
    _nothing_left(tmp_path, r["run_id"], backend)


@pytest.mark.parametrize("cap", ["poll", pytest.param("kernel", marks=KERNEL)])
@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_filling_the_disk_is_a_limit_and_keeps_the_patch(tmp_path: Path, backend: str, cap: str) -> None:
    fill = "for i in $(seq 1 40); do head -c 8M /dev/zero > f$i; sleep 0.1; done; sleep 30; echo never-here"
    started = time.monotonic()
    proc, out = attack(tmp_path, [WRITE_NOTES, bash(fill)], backend=backend, sandbox={"disk": "60m"},
                       env={"ASTRA_DISK_CAP": cap})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    r = result(out)
    assert r["status"] == "limit" and r["reason"].startswith("disk:") and "60m" in r["reason"], r
    assert r["disk_cap"] == cap
    said = "is measured every 2 s, not held by the kernel (ASTRA_DISK_CAP=poll)"
    assert (said in proc.stdout + proc.stderr) == (cap == "poll"), proc.stdout + proc.stderr
    assert "NOTES.md" in (out / "patch.diff").read_text()
    assert time.monotonic() - started < 30  # stopped while the command ran, not after its sleep
    assert not any("never-here" in t for t in tool_outputs(out))
    assert all((out / name).is_file() for name in OUTPUTS)
    _nothing_left(tmp_path, r["run_id"], backend)


@KERNEL
def test_a_kept_worktree_leaves_nothing_mounted(tmp_path: Path) -> None:
    """--keep: the files stay, as a plain directory; no file system, no image, no loop device."""
    proc, out = attack(tmp_path, [WRITE_NOTES, bash("mkdir -p d/e && echo hi > d/e/f && ln -s d/e link")],
                       backend="local", args=("--keep",), expect_changes=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result(out)["disk_cap"] == "kernel"
    [worktree] = (tmp_path / "cache").glob("runs/*/worktree")
    assert (worktree / "NOTES.md").read_text() == "kept\n" and (worktree / "d/e/f").read_text() == "hi\n"
    assert (worktree / "link").is_symlink() and (worktree / "calc.py").read_text() == FILES["calc.py"]
    assert subprocess.run(["git", "-C", str(worktree), "status", "--short"], capture_output=True,
                          text=True, check=True).stdout.strip()
    _nothing_left(tmp_path, None, "local")


@KERNEL
@pytest.mark.docker
def test_a_crashed_run_is_reclaimed_by_cleanup(tmp_path: Path) -> None:
    """SIGKILL while the model runs: the mount, loop device and container live on until
    `astra-run cleanup`, which leaves nothing of them."""
    make_repo(tmp_path / "repo", dict(FILES))
    (tmp_path / "model.yaml").write_text(yaml.safe_dump([bash("head -c 5M /dev/zero > grown; sleep 120")]))
    (tmp_path / "task.yaml").write_text(yaml.safe_dump({
        "name": "crash", "repo": "repo", "prompt": "go", "model": "scripted:model.yaml",
        "sandbox": {"backend": "docker", "disk": "64m"}, "outputs": {"dir": str(tmp_path / "out")},
        "policy": {"default": "allow"}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "ASTRA_", "GITHUB_"))}
    env.update({"ASTRA_CACHE": str(tmp_path / "cache"), "ASTRA_DISK_CAP": "kernel"})
    runner = subprocess.Popen([sys.executable, "-m", "runner", "run", str(tmp_path / "task.yaml")], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "cache").glob("runs/*/worktree/grown")) and time.monotonic() < deadline:
            time.sleep(0.1)
        [run_dir] = (tmp_path / "cache").glob("runs/*")
        assert mounts_under(tmp_path) and _loops_under(tmp_path) and _containers_of(run_dir.name)
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    assert mounts_under(tmp_path), "the kill itself unmounts nothing: cleanup must"
    done = subprocess.run([sys.executable, "-m", "runner", "cleanup"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not run_dir.exists()
    _nothing_left(tmp_path, run_dir.name, "docker")


_UNSEEN_MOUNT = """
import asyncio, sys
from pathlib import Path
from runner.diskcap import LoopMount
from runner.errors import SandboxError
from runner.sandbox import SandboxConfig, make_sandbox

async def main(root: Path) -> str:
    loop = LoopMount.create(root / "worktree.img", root / "worktree", 16 * 2**20, uid=0, gid=0)
    (root / "worktree" / "calc.py").write_text("x = 1\\n")
    try:
        config = SandboxConfig(run_id="unseen-" + root.name[-6:], worktree=root / "worktree", disk="16m",
                               disk_fsid=loop.fsid)
        async with make_sandbox("docker", config) as sandbox:
            return "started: " + (await sandbox.exec("ls", timeout=10)).output
    except SandboxError as exc:
        return f"SandboxError: {exc}"
    finally:
        loop.remove()

print(asyncio.run(main(Path(sys.argv[1]))))
"""


@KERNEL
@pytest.mark.docker
def test_a_sandbox_that_does_not_see_the_worktree_is_an_error(tmp_path: Path) -> None:
    """The guard behind the namespace check: a worktree mounted where the daemon cannot see it (here
    a private mount namespace) gives a clear SandboxError, never a silently empty /workspace."""
    root = tmp_path / "runs" / "r1"
    root.mkdir(parents=True)
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", _UNSEEN_MOUNT, str(root)],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr
    assert "SandboxError: the sandbox does not see the worktree's file system" in proc.stdout, proc.stdout
    assert "ASTRA_DISK_CAP=poll" in proc.stdout and "started" not in proc.stdout
    assert mounts_under(tmp_path) == []


@KERNEL
@pytest.mark.docker
@pytest.mark.parametrize("cap", ["auto", "kernel"])
def test_a_daemon_in_another_mount_namespace_gets_the_poll(tmp_path: Path, cap: str) -> None:
    """A runner whose mounts the daemon cannot see (as with Docker-in-Docker): auto falls back to
    the poll and says why; ASTRA_DISK_CAP=kernel refuses to run (exit 4) rather than pretend."""
    make_repo(tmp_path / "repo", dict(FILES))
    (tmp_path / "model.yaml").write_text(yaml.safe_dump([WRITE_NOTES, bash("ls"), {"text": "done"}]))
    (tmp_path / "task.yaml").write_text(yaml.safe_dump({
        "name": "ns", "repo": "repo", "prompt": "go", "model": "scripted:model.yaml",
        "sandbox": {"backend": "docker", "disk": "64m"}, "outputs": {"dir": str(tmp_path / "out")},
        "policy": {"default": "allow"}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "ASTRA_", "GITHUB_"))}
    env.update({"ASTRA_CACHE": str(tmp_path / "cache"), "ASTRA_DISK_CAP": cap})
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-m", "runner", "run",
                           str(tmp_path / "task.yaml")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    said = proc.stdout + proc.stderr
    r = result(tmp_path / "out")
    if cap == "auto":
        assert proc.returncode == 0, said
        assert r["disk_cap"] == "poll" and "another mount namespace" in said, said
        assert "calc.py" in tool_outputs(tmp_path / "out")[1]  # the worktree is there, not an empty dir
    else:
        assert proc.returncode == 4, said
        assert "ASTRA_DISK_CAP=kernel, but the worktree cannot have its own file system" in r["reason"], r
        assert "another mount namespace" in r["reason"]
    _nothing_left(tmp_path, r["run_id"], "docker")


@pytest.mark.docker
def test_the_patch_total_is_capped_docker(tmp_path: Path) -> None:
    """Four 6 MB binary files, each under the per-file cap, would make a ~30 MB patch.diff: the
    files past its 20 MB total are left out, listed with the reason, and the run says so."""
    proc, out = attack(tmp_path, [WRITE_NOTES, bash("for i in 1 2 3 4; do head -c 6M /dev/urandom > r$i.bin; done")],
                       expect_changes=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = result(out)
    why = "the patch would pass its 20 MB total"
    assert r["patch_excluded"] == [f"r3.bin ({why})", f"r4.bin ({why})"], r["patch_excluded"]
    patch = (out / "patch.diff").read_bytes()
    assert len(patch) <= 20 * 2**20 and b"NOTES.md" in patch and b"r2.bin" in patch and b"r3.bin" not in patch
    assert f"left out of the patch: r3.bin ({why})" in proc.stdout + proc.stderr


def _resume(tmp_path: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "ASTRA_", "GITHUB_"))}
    env["ASTRA_CACHE"] = str(tmp_path / "cache")
    return subprocess.run([sys.executable, "-m", "runner", "run", "--resume", str(out), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


@KERNEL
def test_a_resumed_run_is_back_on_a_file_system_of_its_own(tmp_path: Path) -> None:
    """Between the parts the worktree is a plain directory (nothing stays mounted); the resumed part
    moves it onto a new file system of sandbox.disk, and its patch holds both parts."""
    proc, out = attack(tmp_path, [WRITE_NOTES, bash("head -c 20M /dev/urandom > big.bin"),
                                  bash("df -k . | tail -1; rm big.bin; echo two > PART2.md")],
                       backend="local", sandbox={"disk": "64m"}, limits={"max_turns": 2}, expect_changes=True)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    stopped = result(out)
    assert stopped["status"] == "limit" and stopped["disk_cap"] == "kernel" and stopped["resumable"], stopped
    assert mounts_under(tmp_path) == [] and _loops_under(tmp_path) == []
    worktree = tmp_path / "cache" / "runs" / stopped["run_id"] / "worktree"
    assert (worktree / "big.bin").stat().st_size == 20 * 2**20 and not (worktree.parent / IMAGE_NAME).exists()
    again = _resume(tmp_path, out, "--max-turns", "5")
    assert again.returncode == 0, again.stdout + again.stderr
    r = result(out)
    assert r["status"] == "success" and r["disk_cap"] == "kernel", r
    assert "/dev/loop" in tool_outputs(out)[-1]  # df inside the resumed part: its own file system
    patch = (out / "patch.diff").read_text()
    assert "NOTES.md" in patch and "PART2.md" in patch and "big.bin" not in patch
    _nothing_left(tmp_path, None, "local")


@KERNEL
def test_a_resumed_worktree_too_big_for_its_file_system_is_polled(tmp_path: Path) -> None:
    """A first part that left more than sandbox.disk (polled: it could overshoot; or one that filled
    its file system to the last block) cannot move onto a file system of that size: the resumed
    part says so and goes on polled."""
    fill = "for i in 1 2 3 4; do head -c 9M /dev/urandom > f$i; done; sleep 30"
    proc, out = attack(tmp_path, [WRITE_NOTES, bash(fill), bash("rm f1 f2 f3 f4; echo two > PART2.md")],
                       backend="local", sandbox={"disk": "20m"}, expect_changes=True, env={"ASTRA_DISK_CAP": "poll"})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert result(out)["disk_cap"] == "poll"
    again = _resume(tmp_path, out)
    said = again.stdout + again.stderr
    # the first check after the rm passes: the resumed part finishes, polled
    assert again.returncode == 0, said
    assert result(out)["disk_cap"] == "poll" and "does not fit on a file system of sandbox.disk" in said, said
    assert "PART2.md" in (out / "patch.diff").read_text()
    _nothing_left(tmp_path, None, "local")
