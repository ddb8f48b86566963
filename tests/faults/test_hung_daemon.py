"""A Docker daemon that stops answering mid-run: the run's wall clock still holds, the finish
phase is bounded, and duration_s is the truth. (A 60 s limit became 399 s of wall time while
duration_s said 148: each control call was 30 s x 4 tries, pause and remove outside the
deadline, and asyncio.run waited for their threads at exit.)

The daemon is hung by a proxy in front of the real one (DOCKER_HOST points at it): it forwards
until the model's first command touches HANG in the worktree, then forwards nothing, on old
connections and new ones alike - as a SIGSTOPped dockerd would look. The shared daemon itself is
never stopped."""

from __future__ import annotations

import contextlib
import glob
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import finish as finish_mod
from runner.cli import main
from tests.faults.helpers import assert_cleaned_up, make_task, result_of

pytestmark = pytest.mark.docker
REAL = "/var/run/docker.sock"


class HangingProxy:
    def __init__(self, path: Path, hang_when: str) -> None:
        self.path, self.hang_when = path, hang_when
        self.hung = threading.Event()
        self.closed = threading.Event()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        self.socks: list[socket.socket] = [self.server]
        for target in (self._accept, self._watch):
            threading.Thread(target=target, daemon=True).start()

    def _watch(self) -> None:
        while not self.closed.is_set() and not self.hung.is_set():
            if glob.glob(self.hang_when):
                self.hung.set()
            time.sleep(0.02)

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.socks.append(conn)
            if self.hung.is_set():
                continue  # accepted, never answered
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(REAL)
            self.socks.append(upstream)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.hung.is_set() and not self.closed.is_set():
                    time.sleep(0.05)
                if self.closed.is_set():
                    break
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.closed.set()
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HangingProxy]:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ASTRA_CACHE", str(cache))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    p = HangingProxy(tmp_path / "docker.sock", str(cache / "runs" / "*" / "worktree" / "HANG"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'docker.sock'}")
    try:
        yield p
    finally:
        p.close()


def _remove_containers_of(run_id: str) -> None:
    import docker

    client = docker.DockerClient(base_url=f"unix://{REAL}", timeout=30)
    for c in client.containers.list(all=True, filters={"label": f"astra-run.run-id={run_id}"}):
        with contextlib.suppress(Exception):
            c.remove(force=True)


def test_a_hung_daemon_cannot_stretch_the_wall_clock(tmp_path: Path, proxy: HangingProxy,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(finish_mod, "PAUSE_LIMIT_S", 1.0)
    monkeypatch.setattr(finish_mod, "CLEANUP_LIMIT_S", 5.0)
    turns = [{"tool_calls": [{"name": "bash", "input": {"command": "echo work > done.txt && touch HANG"}}]},
             {"sleep": 1, "tool_calls": [{"name": "bash", "input": {"command": "echo never answered"}}]},
             {"text": "unreachable"}]
    limit = 8
    task = make_task(tmp_path, turns, sandbox={"backend": "docker"},
                     limits={"timeout": limit, "tool_timeout": 60})
    started = time.monotonic()
    code = main(["run", str(task)])
    took = time.monotonic() - started
    r = result_of(tmp_path / "out")
    try:
        assert proxy.hung.is_set(), "the daemon was never hung"
        assert code == 3 and r["status"] == "limit" and "timeout" in r["reason"], r
        # the wall clock, plus bounded finish steps (pause 1 s, helper and removal 5 s) and slack
        assert took < limit + 12, f"took {took:.1f}s for a {limit}s wall clock"
        assert abs(r["duration_s"] - took) < 1.5, (r["duration_s"], took)
        assert r["patch"]["files_changed"] == 2, "the work done before the hang is kept (done.txt, HANG)"
        assert_cleaned_up(tmp_path / "repo", tmp_path / "cache")
    finally:
        proxy.close()
        _remove_containers_of(r["run_id"])
