"""Start-up of a docker run on a big repository, against `git worktree add` + `docker run -d`.

    .venv/bin/python bench/startup.py [--commits 12000] [--runs 3]

Generates a repository of 150k+ objects (like pytest's 163k: 12,000 commits over 480 files,
packed with deltas by `git repack`; made once with `git fast-import` and kept for the next time
in $TMPDIR/astra-bench-startup-<commits>/), then times, in one process and one sitting:

- "first run": `astra-run run` of a scripted task (one `git status`, then an answer) with a fresh
  cache (no object store for the base commit yet), from the run's start to `sandbox_ready` (the
  trajectory's clock, which starts when the run does: interpreter start and imports are not
  counted), and to git inside being ready (the note the run writes when its git dir is set up
  over the complete store). The sandbox is ready before git is: the store of a first run is
  written beside the container's start and the model's first call, and every command in the
  sandbox waits for git, so no command ever sees a store being written;
- "second run": the same with the store already made by a run before;
- "first run on a child commit": a run on 20 new commits on top of that one (tonight's main on
  last night's), whose store links the first one's pack and packs only what the 20 commits add;
- the baselines: `git worktree add --detach` of the same commit (and its removal, not timed) and
  `docker run -d` of the sandbox image (removed after, not timed).

Goals (issue 15): second run <= 1.5x (worktree add + docker run -d); first run <= 2x. Medians of
--runs each, with min and max: the machine may be shared, so read them as noisy.

Measured on the quiet machine (2 cores; 168,492 objects, 32 MB; 3 runs each, load average 0.5):

| step | seconds | x baseline |
|---|---:|---:|
| git worktree add (0.13) + docker run -d (0.21) | 0.34 | 1.0x |
| first run: sandbox ready | 0.27 | 0.78x |
| first run: git inside ready | 1.02 | 2.99x |
| second run: sandbox ready | 0.27 | 0.78x |
| second run: git inside ready | 0.29 | 0.85x |
| first run on a child commit: sandbox ready | 0.27 | 0.79x |
| first run on a child commit: git inside ready | 0.29 | 0.85x |

Before issue 15's start-up work (shared machine, load ~2.3): first run 1.39 s = 3.08x, second
0.68 s = 1.51x of a 0.45 s baseline. What a first run's git still waits for, when no ancestor
of its commit has a store, is one `git pack-objects --revs` of the whole history (~0.8-1.2 s
here: counting 168k objects, no delta search); a run on a child commit packs only what the
child adds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "astra-sandbox:latest"
GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "b",
           "GIT_AUTHOR_EMAIL": "b@example.invalid", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@example.invalid"}


def git(repo: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=GIT_ENV, **kw)  # type: ignore[call-overload,no-any-return]


def fast_import_stream(commits: int, dirs: int = 24, files_per_dir: int = 20) -> bytes:
    """A history where each commit changes 6 files in different directories (~13 new objects)."""
    out: list[bytes] = []
    mark = 0
    for c in range(commits):
        lines = [f"commit refs/heads/main\ncommitter b <b@example.invalid> {1_600_000_000 + c * 60} +0000\n"]
        msg = f"change {c}\n"
        lines.append(f"data {len(msg)}\n{msg}")
        if c == 0:
            changed = [(d, f) for d in range(dirs) for f in range(files_per_dir)]
        else:
            changed = [((c * 7 + k * 5) % dirs, (c * 3 + k) % files_per_dir) for k in range(6)]
        for d, f in changed:
            mark += 1
            body = "".join(f"def f{d}_{f}_{i}(x):\n    return x * {i} + {c if i == c % 40 else 0}\n" for i in range(40))
            data = body.encode()
            lines.append(f"M 100644 inline pkg{d}/mod{f}.py\ndata {len(data)}\n")
            out.append("".join(lines).encode())
            out.append(data + b"\n")
            lines = []
        if lines:
            out.append("".join(lines).encode())
    return b"".join(out)


def make_repo(commits: int) -> Path:
    repo = Path(tempfile.gettempdir()) / f"astra-bench-startup-{commits}"
    if (repo / ".git" / "astra-bench-ready").exists():
        return repo
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    print(f"generating a repository of {commits} commits in {repo} ...", file=sys.stderr)
    git(repo, "fast-import", "--quiet", input=fast_import_stream(commits))
    git(repo, "repack", "-adq")
    git(repo, "checkout", "-q", "-f", "main")
    (repo / ".git" / "astra-bench-ready").write_text("")
    return repo


def count_objects(repo: Path) -> tuple[int, float]:
    out = git(repo, "count-objects", "-v").stdout.decode()
    fields = dict(line.split(": ") for line in out.splitlines())
    return int(fields["in-pack"]) + int(fields["count"]), int(fields["size-pack"]) / 1024


def run_once(work: Path, cache: Path, env: dict[str, str], task: str = "task.yaml") -> tuple[float, float]:
    """Seconds from the run's start to sandbox_ready, and to git inside being ready (its objects
    written, its git dir set up: the note the run writes then), read from its trajectory."""
    out = work / f"out-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run([sys.executable, "-m", "runner", "run", str(work / task), "--out", str(out), "-q"],
                          env={**env, "ASTRA_CACHE": str(cache)}, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"astra-run exited {proc.returncode}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    ready = git_ready = None
    for line in (out / "trajectory.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "sandbox_ready":
            ready = float(event["t"])
        elif event.get("type") == "note" and str(event.get("message")).startswith("git inside the sandbox is ready"):
            git_ready = float(event["t"])
    shutil.rmtree(out, ignore_errors=True)
    if ready is None or git_ready is None:
        raise SystemExit("no sandbox_ready event or git-ready note in the trajectory")
    return ready, git_ready


def child_commit(repo: Path, work: Path, commits: int = 20) -> str:
    """`commits` new commits on top of HEAD (a day's work: 6 changed files each), kept by a ref of
    their own under refs/bench/ (the repository's branch is left as it is); their id."""
    path = work / f"child-{uuid.uuid4().hex[:6]}"
    git(repo, "worktree", "add", "-q", "--detach", str(path), "HEAD")
    for c in range(commits):
        for k in range(6):
            module = path / f"pkg{(c * 5 + k) % 24}" / f"mod{(c + k) % 20}.py"
            module.write_text(module.read_text() + f"# child {path.name} {c}\n")
        git(path, "commit", "-qam", f"child {c}")
    commit = git(path, "rev-parse", "HEAD").stdout.decode().strip()
    git(repo, "update-ref", f"refs/bench/{path.name}", commit)
    git(repo, "worktree", "remove", "--force", str(path))
    return commit


def worktree_add(repo: Path, work: Path) -> float:
    path = work / f"wt-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    git(repo, "worktree", "add", "-q", "--detach", str(path), "HEAD")
    took = time.monotonic() - started
    git(repo, "worktree", "remove", "--force", str(path))
    return took


def docker_run_d() -> float:
    started = time.monotonic()
    cid = subprocess.run(["docker", "run", "-d", "--network", "none", IMAGE, "sleep", "60"], check=True,
                         capture_output=True, text=True).stdout.strip()
    took = time.monotonic() - started
    subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    return took


def fmt(samples: list[float]) -> str:
    return f"{statistics.median(samples):.2f} ({min(samples):.2f}-{max(samples):.2f})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commits", type=int, default=12000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    repo = make_repo(args.commits)
    objects, size_mb = count_objects(repo)
    work = Path(tempfile.mkdtemp(prefix="astra-bench-startup-"))
    # One git command, so that the run waits for git inside (the note it writes then).
    (work / "model.yaml").write_text('- text: "look"\n'
                                     '  tool_calls: [{name: bash, input: {command: "git status --short"}}]\n'
                                     '- text: "done"\n')
    (work / "task.yaml").write_text(
        f"name: startup\nrepo: {repo}\nprompt: nothing\nmodel: scripted:model.yaml\n"
        "sandbox: {backend: docker}\nexpect_changes: false\noutputs: {dir: out}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for var in ("ASTRA_MODEL", "ASTRA_SANDBOX", "GITHUB_STEP_SUMMARY"):
        env.pop(var, None)
    first: list[float] = []
    second: list[float] = []
    first_git: list[float] = []
    second_git: list[float] = []
    child: list[float] = []
    child_git: list[float] = []
    adds: list[float] = []
    runs: list[float] = []
    try:
        run_once(work, work / "warm-cache", env)  # page cache and image layers warm for everyone
        for i in range(args.runs):
            cache = work / f"cache-{i}"
            ready, git_ready = run_once(work, cache, env)  # makes the store
            first.append(ready)
            first_git.append(git_ready)
            ready, git_ready = run_once(work, cache, env)  # reuses it
            second.append(ready)
            second_git.append(git_ready)
            (work / "task-child.yaml").write_text(
                (work / "task.yaml").read_text() + f"ref: {child_commit(repo, work)}\n")
            ready, git_ready = run_once(work, cache, env, "task-child.yaml")  # links the parent's store
            child.append(ready)
            child_git.append(git_ready)
            adds.append(worktree_add(repo, work))
            runs.append(docker_run_d())
    finally:
        shutil.rmtree(work, ignore_errors=True)
        git(repo, "worktree", "prune")
        refs = git(repo, "for-each-ref", "--format=%(refname)", "refs/bench/").stdout.decode().split()
        for ref in refs:
            git(repo, "update-ref", "-d", ref)
    baseline = statistics.median(adds) + statistics.median(runs)
    print(f"repository: {objects} objects, {size_mb:.0f} MB packed, {args.commits} commits; {os.cpu_count()} CPU(s); "
          f"median (min-max) of {args.runs} runs, seconds\n")
    print("| step | seconds | x (worktree add + docker run -d) | goal |")
    print("|---|---:|---:|---:|")
    print(f"| git worktree add | {fmt(adds)} | | |")
    print(f"| docker run -d | {fmt(runs)} | | |")
    print(f"| baseline: both | {baseline:.2f} | 1.0x | |")
    rows = [("first run: start to sandbox ready", first, "<= 2x"),
            ("first run: start to git inside ready", first_git, ""),
            ("second run: start to sandbox ready", second, "<= 1.5x"),
            ("second run: start to git inside ready", second_git, ""),
            ("first run on a child commit (20 commits on the first's): sandbox ready", child, ""),
            ("first run on a child commit: git inside ready", child_git, "")]
    for what, samples, goal in rows:
        print(f"| astra-run {what} | {fmt(samples)} | {statistics.median(samples) / baseline:.2f}x | {goal} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f} (1 min), {os.getloadavg()[1]:.1f} (5 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
