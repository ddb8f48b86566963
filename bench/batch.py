"""Batch throughput: 32 tasks against the fake Messages API (300 ms per model call) at -j 1, 4, 8.

    .venv/bin/python bench/batch.py [--tasks 32] [--turns 4] [--latency-ms 300] [--jobs 1,4,8]
                                    [--sandbox local|docker|both]

Each task is a real `astra-run batch` task with a real model id (claude-sonnet-5-5) talking through
the anthropic SDK to tests/fakes/messages_api.py (run in its own process, so it does not share the
runner's CPU): `turns - 1` turns that each call `ls`, then a final answer. Every -j level is one
`python -m runner batch` process; its wall time and peak RSS (from wait4) are measured; "without
process start" takes the one-off start of the interpreter and imports (measured apart) off both
sides of the ratio. "ideal" is
the model latency alone: tasks x turns x latency / j. "RSS per extra task" is the growth of the
runner's peak RSS per additional concurrent task, relative to -j 1. "CPU s per task" is the
runner's (with its children: git) and the local Docker engine's (dockerd, containerd, containers'
processes; the daemon's other clients too), per task; "machine busy cores" is the whole machine's
use over the level (every user's: on a shared machine it says how much CPU the batch could get).
Figures: docs/batch.md, "Throughput".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = textwrap.dedent("""
    import sys, threading, signal
    from tests.fakes.messages_api import FakeMessagesAPI
    turns, latency = int(sys.argv[1]), float(sys.argv[2])

    def answer(body):
        done = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if done < turns - 1:
            return {"text": "Looking around.", "tool_calls": [{"name": "ls", "input": {}}],
                    "usage": {"input_tokens": 2000, "output_tokens": 50}}
        return {"text": "Done.", "usage": {"input_tokens": 2000, "output_tokens": 20}}

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FakeMessagesAPI(hook=answer, latency_ms=latency) as api:
        print(api.base_url, flush=True)
        stop.wait()
""")


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "b",
           "GIT_AUTHOR_EMAIL": "b@example.invalid", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@example.invalid"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def make_batch(work: Path, tasks: int, sandbox: str) -> Path:
    repo = work / "repo"
    (repo / "src").mkdir(parents=True)
    for i in range(20):
        (repo / "src" / f"mod{i}.py").write_text(f"def f{i}():\n    return {i}\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    (work / "tasks").mkdir()
    for i in range(tasks):
        (work / "tasks" / f"t{i:02d}.yaml").write_text(f"name: t{i:02d}\nrepo: ../repo\nprompt: look around\n"
                                                       "expect_changes: false\n")  # it only looks
    manifest = work / f"manifest-{sandbox}.yaml"
    manifest.write_text(
        "defaults:\n  model: claude-sonnet-5-5\n"
        f"  sandbox: {{backend: {sandbox}}}\n"
        "  policy: {allow: [ls, read, glob, grep]}\n"
        "  limits: {max_turns: 20}\n"
        'tasks: ["tasks/*.yaml"]\n'
    )
    return manifest


def run_batch(manifest: Path, out: Path, jobs: int, env: dict[str, str]) -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS in MB, exit code, CPU seconds of the runner and its children) of
    one `astra-run batch` process."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "runner", "batch", str(manifest), "--out", str(out),
                             "-j", str(jobs)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        print(f"  (-j {jobs}: exit {proc.returncode}) {err[-500:]}", file=sys.stderr)
    if proc.stderr:
        proc.stderr.close()
    return wall, usage.ru_maxrss / 1024, proc.returncode, usage.ru_utime + usage.ru_stime


def _ticks(path: str, fields: slice) -> float:
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return 0.0
    return sum(int(x) for x in text[text.rfind(")") + 2:].split()[fields]) / os.sysconf("SC_CLK_TCK")


def engine_cpu() -> float:
    """CPU seconds used so far by the local Docker engine (dockerd and containerd with their reaped
    children) and by the processes of its containers (cgroup v1 cpuacct `docker/`, or v2
    `system.slice`); 0 where they cannot be read. Containerd's per-container shims are not counted."""
    total = 0.0
    for pidfile in ("/var/run/docker.pid", "/var/run/docker/containerd/containerd.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(Path(pidfile).read_text().strip())
            total += _ticks(f"/proc/{pid}/stat", slice(11, 15))  # utime stime cutime cstime
    with contextlib.suppress(OSError, ValueError):
        total += int(Path("/sys/fs/cgroup/cpuacct/docker/cpuacct.usage").read_text()) / 1e9
    return total


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (everyone's: the machine may be shared)."""
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    return (sum(cpu) - cpu[3] - cpu[4]) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=32)
    p.add_argument("--turns", type=int, default=4, help="model calls per task (all but the last call ls)")
    p.add_argument("--latency-ms", type=float, default=300)
    p.add_argument("--jobs", default="1,4,8")
    p.add_argument("--sandbox", choices=["local", "docker", "both"], default="both",
                   help="both: local, and docker when the astra-sandbox image is there")
    args = p.parse_args()
    jobs = [int(j) for j in args.jobs.split(",")]
    sandboxes = ["local", "docker"] if args.sandbox == "both" else [args.sandbox]
    if "docker" in sandboxes and args.sandbox == "both" and not _docker_ready():
        print("docker: no astra-sandbox image or no engine; local only")
        sandboxes.remove("docker")

    work = Path(tempfile.mkdtemp(prefix="astra-bench-batch-"))
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.turns), str(args.latency_ms)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        env = {**os.environ, "ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": "test", "CI": "true",
               "ASTRA_CACHE": str(work / "cache"), "PYTHONPATH": str(ROOT)}
        for var in ("GITHUB_STEP_SUMMARY", "ASTRA_SHARD", "JOB_COMPLETION_INDEX", "ASTRA_MODEL", "ASTRA_SANDBOX"):
            env.pop(var, None)
        print(f"{args.tasks} tasks x {args.turns} model calls ({args.turns - 1} with an `ls`), "
              f"{args.latency_ms:.0f} ms per model call; {os.cpu_count()} CPU(s)\n")
        fixed = _process_start(env)
        print(f"process start (interpreter + runner + anthropic imports), paid once per batch: {fixed:.1f}s\n")
        print("| sandbox | -j | wall s | speedup vs -j 1 | speedup without process start | ideal s (model latency only)"
              " | peak RSS MB | RSS per extra task MB | start to sandbox ready s (median, p90) | after the answer s"
              " | CPU s per task: runner, engine | machine busy cores (all users) | load avg |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for sandbox in sandboxes:
            manifest = make_batch(work / sandbox, args.tasks, sandbox)
            base: tuple[float, float] | None = None
            for j in jobs:
                engine0, busy0 = engine_cpu(), machine_busy()
                wall, rss, code, cpu = run_batch(manifest, work / sandbox / f"out-j{j}", j, env)
                engine, busy = engine_cpu() - engine0, machine_busy() - busy0
                base = base or (wall, rss)
                ideal = args.tasks * args.turns * args.latency_ms / 1000 / j
                per_task = f"{(rss - base[1]) / (j - 1):.1f}" if j > 1 else "-"
                flag = "" if code == 0 else f" (exit {code})"
                steady = (base[0] - fixed) / max(0.001, wall - fixed)
                ready, tail = startup_per_task(work / sandbox / f"out-j{j}")
                print(f"| {sandbox} | {j} | {wall:.1f}{flag} | {base[0] / wall:.1f}x | {steady:.1f}x | {ideal:.1f}"
                      f" | {rss:.0f} | {per_task} | {ready} | {tail}"
                      f" | {cpu / args.tasks:.2f}, {engine / args.tasks:.2f}"
                      f" | {busy / wall:.2f} | {os.getloadavg()[0]:.1f} |", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def startup_per_task(out: Path) -> tuple[str, str]:
    """From each task's trajectory: its start to `sandbox_ready`, and its last answer to `run_finished`.

    The first is the start-up work per task (worktree, object store, container, helper, git
    inside); the second the work after the model is done (patch, reports).
    """
    ready: list[float] = []
    tail: list[float] = []
    for trajectory in out.glob("*/trajectory.jsonl"):
        events = [json.loads(line) for line in trajectory.read_text().splitlines()]
        times = {e["type"]: e["t"] for e in events}
        turns = [e["t"] for e in events if e["type"] == "model_turn"]
        if "sandbox_ready" in times:
            ready.append(times["sandbox_ready"])
        if turns and "run_finished" in times:
            tail.append(times["run_finished"] - turns[-1])

    def fmt(xs: list[float]) -> str:
        if not xs:
            return "-"
        xs = sorted(xs)
        return f"{statistics.median(xs):.2f}, {xs[min(len(xs) - 1, int(len(xs) * 0.9))]:.2f}"

    return fmt(ready), fmt(tail)


def _process_start(env: dict[str, str]) -> float:
    """Wall time of starting the runner with everything a batch imports (best of 3)."""
    best = float("inf")
    for _ in range(3):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "import runner.cli, runner.batch, runner.models.anthropic"], env=env,
                       check=True)
        best = min(best, time.monotonic() - started)
    return best


def _docker_ready() -> bool:
    try:
        out = subprocess.run(["docker", "images", "-q", "astra-sandbox:latest"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


if __name__ == "__main__":
    sys.exit(main())
