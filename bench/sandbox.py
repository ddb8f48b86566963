"""Benchmark of the docker sandbox against raw docker, measured in one run on this machine.

    .venv/bin/python bench/sandbox.py [--calls 300] [--starts 5]

Prints a table: start-to-first-command vs `docker run -d`; per-call cost of the helper (trivial
exec, a file_op stat, a bare ping) vs a fresh `docker exec` through the CLI and the SDK's
`exec_run`; reading a 1 MB file. Targets (issue): helper median <= 5 ms and >= 10x below
`docker exec`; start <= 1.5x `docker run -d`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.sandbox.base import SandboxConfig
from runner.sandbox.docker import DockerSandbox, connect

IMAGE = "astra-sandbox:latest"


def stats(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s) * 1000, s[min(len(s) - 1, int(len(s) * 0.95))] * 1000


async def timed(n: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t)
    return out


def timed_sync(n: int, call: Callable[[], object]) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
    return out


def make_worktree(tmp: Path) -> tuple[Path, Path]:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    repo, wt = tmp / "repo", tmp / "wt"

    def git(*a: str, cwd: Path = repo) -> str:
        return subprocess.run(["git", *a], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout

    repo.mkdir()
    git("init", "-q")
    (repo / "big.txt").write_text(("x" * 499 + "\n") * 2000)  # 1 MB, 2000 lines
    git("add", ".")
    git("-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench")
    git("worktree", "add", "-q", "--detach", str(wt), "HEAD")
    return wt, Path(git("rev-parse", "--absolute-git-dir", cwd=wt).strip())


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--raw-calls", type=int, default=60)
    ap.add_argument("--starts", type=int, default=5)
    args = ap.parse_args()
    client = connect()
    rows: list[tuple[str, float, float, str]] = []

    with tempfile.TemporaryDirectory() as d:
        wt, git_dir = make_worktree(Path(d))

        def cfg() -> SandboxConfig:
            return SandboxConfig(run_id=f"bench-{uuid.uuid4().hex[:8]}", worktree=wt, git_dir=git_dir)

        # -- start to first command vs docker run -d
        starts, runs = [], []
        for _ in range(args.starts):
            t = time.perf_counter()
            sb = DockerSandbox(cfg())
            await sb.start()
            await sb.exec("true", timeout=10)
            starts.append(time.perf_counter() - t)
            await sb.close()
            t = time.perf_counter()
            run_d = ["docker", "run", "-d", "--init", "--network", "none", IMAGE, "sleep", "60"]
            cid = subprocess.run(run_d, check=True, capture_output=True, text=True).stdout.strip()  # noqa: ASYNC221
            runs.append(time.perf_counter() - t)
            subprocess.run(["docker", "rm", "-f", cid], check=True, capture_output=True)  # noqa: ASYNC221
        s_med, s_p95 = stats(starts)
        r_med, r_p95 = stats(runs)
        rows.append(("start -> first command (DockerSandbox, incl. git setup)", s_med, s_p95,
                     f"{s_med / r_med:.2f}x docker run -d"))
        rows.append(("docker run -d (CLI, same image)", r_med, r_p95, "baseline"))

        async with DockerSandbox(cfg()) as sb:
            assert sb.container_id is not None
            cid = sb.container_id
            exec_s = await timed(args.calls, lambda: sb.exec("true", timeout=10))
            stat_s = await timed(args.calls, lambda: sb.file_op("stat", path="big.txt"))
            ping_s = await timed(args.calls, lambda: sb.helper.request("ping", timeout=10))
            read_s = await timed(30, lambda: sb.file_op("read", path="big.txt"))
            cat_s = await timed(30, lambda: sb.exec("cat big.txt", timeout=10, output_limit=2 << 20))
            cli_s = timed_sync(args.raw_calls, lambda: subprocess.run(
                ["docker", "exec", cid, "true"], check=True, capture_output=True))
            container = client.containers.get(cid)
            sdk_s = timed_sync(args.raw_calls, lambda: container.exec_run(["true"]))
            cli_cat = timed_sync(30, lambda: subprocess.run(
                ["docker", "exec", "-w", "/workspace", cid, "cat", "big.txt"], check=True, capture_output=True))

        e_med, e_p95 = stats(exec_s)
        c_med, c_p95 = stats(cli_s)
        k_med, k_p95 = stats(sdk_s)
        rows.append(("helper: exec `true` (one request)", e_med, e_p95,
                     f"{c_med / e_med:.0f}x below docker exec CLI, {k_med / e_med:.0f}x below exec_run"))
        m, p = stats(stat_s)
        rows.append(("helper: file_op stat", m, p, f"{c_med / m:.0f}x below docker exec CLI"))
        m, p = stats(ping_s)
        rows.append(("helper: ping (transport only)", m, p, ""))
        rows.append(("fresh `docker exec CID true` (CLI)", c_med, c_p95, "baseline"))
        rows.append(("SDK container.exec_run(['true'])", k_med, k_p95, "baseline"))
        m, p = stats(read_s)
        rows.append(("helper: read 1 MB file (file_op read, numbered)", m, p, ""))
        m, p = stats(cat_s)
        rows.append(("helper: exec `cat` of 1 MB file (2 MB cap)", m, p, ""))
        m, p = stats(cli_cat)
        rows.append(("fresh `docker exec cat` of 1 MB file (CLI)", m, p, "baseline"))

    print(f"samples: {args.calls} helper calls, {args.raw_calls} raw docker exec, {args.starts} starts; "
          f"{os.cpu_count()} cores")
    print(f"| {'what':58} | {'median ms':>9} | {'p95 ms':>8} | note")
    print(f"|{'-' * 60}|{'-' * 11}|{'-' * 10}|------")
    for what, med, p95, note in rows:
        print(f"| {what:58} | {med:9.2f} | {p95:8.2f} | {note}")


if __name__ == "__main__":
    asyncio.run(main())
