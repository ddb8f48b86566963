"""astra-run against a Docker daemon that shares nothing with it but the cache (issue 15, item 1).

The setup of a Kubernetes pod with a docker:dind sidecar, or GitLab CI's docker:dind service:

- a dockerd in its own privileged container (tests/dind/Dockerfile: Debian's docker.io on our
  Debian base), its storage on a volume of its own, reached over TCP on a private network;
- the runner image (sandbox-images/runner.Dockerfile, built by `build.sh runner`) running
  `astra-run batch` with DOCKER_HOST pointing at it;
- one volume shared by the two, mounted at /cache in both: ASTRA_CACHE. Nothing else: the
  runner's site-packages, its /tmp and the repository (in the runner's /work) are invisible to
  the daemon, so any bind mount from outside the cache fails the sandbox's creation.

A batch of real tasks (scripted model, real sandboxes inside that daemon, one with setup
commands, which mounts the CA bundle and uses the network) must succeed, with git working inside.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import IMAGE, make_repo, sh_git

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RUNNER_IMAGE = "astra-runner:latest"
DIND_IMAGE = "astra-dind-test:latest"

# When the machine running the tests is itself a container whose bounding set lacks some
# capability, `--privileged` cannot be granted (runc: "unable to apply caps"); then the daemon
# gets everything privileged would give but that one capability.
PRIVILEGED = ["--privileged"]
NEARLY_PRIVILEGED = ["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
                     "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
                     "--device-cgroup-rule", "a *:* rwm", "-v", "/sys/fs/cgroup:/sys/fs/cgroup"]


def docker(*args: str, input: bytes | None = None, timeout: float = 300, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], input=input, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    return proc.stdout.decode(errors="replace")


def build_images() -> None:
    subprocess.run(["bash", str(ROOT / "sandbox-images" / "build.sh"), "runner"], check=True, timeout=900,
                   stdin=subprocess.DEVNULL)
    base = subprocess.run(["bash", str(ROOT / "sandbox-images" / "build.sh"), "--print-base"], check=True,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL).stdout.strip()
    docker("build", "-q", "--pull=false", "--build-arg", f"BASE={base}", "-t", DIND_IMAGE, str(HERE), timeout=900)


@dataclass
class Dind:
    name: str
    network: str
    cache_volume: str


@pytest.fixture
def dind() -> Iterator[Dind]:
    build_images()
    tag = uuid.uuid4().hex[:8]
    d = Dind(name=f"astra-dind-{tag}", network=f"astra-dind-net-{tag}", cache_volume=f"astra-dind-cache-{tag}")
    storage = f"astra-dind-lib-{tag}"
    docker("network", "create", d.network)
    try:
        for flags in (PRIVILEGED, NEARLY_PRIVILEGED):
            run = subprocess.run(["docker", "run", "-d", "--name", d.name, "--network", d.network, *flags,
                                  "-v", f"{storage}:/var/lib/docker", "-v", f"{d.cache_volume}:/cache", DIND_IMAGE,
                                  "--cgroup-parent=/astra-dind"], capture_output=True, text=True, timeout=120)
            if run.returncode == 0:
                break
            docker("rm", "-f", d.name, check=False)
            if "apply caps" not in run.stderr:
                raise AssertionError(f"cannot start the daemon's container: {run.stderr}")
        else:
            raise AssertionError(f"cannot start the daemon's container: {run.stderr}")
        deadline = time.monotonic() + 60
        while docker("exec", d.name, "docker", "info", "--format", "{{.ServerVersion}}", check=False).strip() == "":
            assert time.monotonic() < deadline, docker("logs", "--tail", "30", d.name, check=False)
            time.sleep(0.5)
        # No registry: the sandbox image comes in as a tarball, like `docker load` on an air-gapped node.
        saved = subprocess.run(["docker", "save", IMAGE], capture_output=True, check=True, timeout=300).stdout
        docker("exec", "-i", d.name, "docker", "load", "-q", input=saved)
        yield d
    finally:
        docker("rm", "-f", "-v", d.name, check=False)
        docker("volume", "rm", storage, d.cache_volume, check=False)
        docker("network", "rm", d.network, check=False)


TURNS_FIX = [
    {"tool_calls": [{"name": "bash", "input": {"command": "git log --format=%s && git status --porcelain"}}]},
    {"tool_calls": [{"name": "edit", "input": {"path": "calc.py", "old_string": "    return sum",
                                                 "new_string": "    if not xs:\n        return 0\n    return sum"}}]},
    {"text": "Fixed mean([])."},
]


def project(tmp: Path) -> Path:
    """The runner's /work: a repository, three tasks (one with setup commands) and a scripted model."""
    work = tmp / "work"
    repo = make_repo(work / "repo", {"calc.py": "def mean(xs):\n    return sum(xs) / len(xs)\n"})
    (repo / "README.md").write_text("calc\n")
    sh_git(repo, "add", "-A")
    sh_git(repo, "commit", "-qm", "second")
    (work / "model.yaml").write_text(yaml.safe_dump(TURNS_FIX))
    verify = [{"name": "fixed", "run": "python3 -c 'from calc import mean; assert mean([]) == 0'"},
              # git inside: the base history, and the agent's change as a diff
              {"name": "git", "run": "test \"$(git log --format=%s | tr '\\n' ' ')\" = 'second base ' "
                                     "&& git diff --stat | grep -q calc.py"}]
    (work / "tasks").mkdir()
    for i in range(3):
        task: dict[str, object] = {"name": f"fix-{i}", "repo": "../repo", "prompt": "make mean([]) return 0",
                                   "verify": verify}
        if i == 0:
            task["sandbox"] = {"setup": ["test -s \"$SSL_CERT_FILE\" && python3 --version"]}
        (work / "tasks" / f"fix-{i}.yaml").write_text(yaml.safe_dump(task))
    (work / "manifest.yaml").write_text(yaml.safe_dump({
        "defaults": {"model": "scripted:../model.yaml", "sandbox": {"backend": "docker"},
                     "policy": {"default": "allow"}, "limits": {"max_turns": 10, "timeout": "5m"}},
        "tasks": ["tasks/*.yaml"]}))
    return work


def test_a_batch_runs_through_a_daemon_that_shares_only_the_cache(dind: Dind, tmp_path: Path) -> None:
    work = project(tmp_path)
    runner = f"astra-runner-{uuid.uuid4().hex[:8]}"
    docker("create", "--name", runner, "--network", dind.network, "-v", f"{dind.cache_volume}:/cache",
           "-e", f"DOCKER_HOST=tcp://{dind.name}:2375", "-e", "ASTRA_CACHE=/cache", "-w", "/work", RUNNER_IMAGE,
           "astra-run", "batch", "manifest.yaml", "--out", "/out", "-j", "3")
    try:
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.add(work, arcname="work")
        docker("cp", "-", f"{runner}:/", input=archive.getvalue())
        started = time.monotonic()
        proc = subprocess.run(["docker", "start", "-a", runner], capture_output=True, text=True, timeout=600)
        took = time.monotonic() - started
        out = tmp_path / "out"
        with tarfile.open(fileobj=io.BytesIO(subprocess.run(["docker", "cp", f"{runner}:/out", "-"],
                                                            capture_output=True, check=True).stdout)) as tar:
            tar.extractall(tmp_path, filter="data")
        results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert proc.returncode == 0, (f"exit {proc.returncode} after {took:.0f}s\n{proc.stdout[-3000:]}\n"
                                      f"{proc.stderr[-3000:]}\n{[r['verify'] for r in results]}")
        assert [(r["task"], r["status"]) for r in results] == [(f"fix-{i}", "success") for i in range(3)], results
        for r in results:
            assert [v["passed"] for v in r["verify"]] == [True, True], r["verify"]
            assert "+    if not xs:" in (out / r["task"] / "patch.diff").read_text()
            assert r["disk_cap"] == "poll"  # a daemon elsewhere cannot see a mount of ours (runner/diskcap.py)
        seen = (out / "fix-1" / "trajectory.jsonl").read_text()
        assert "second\\nbase" in seen  # git log inside, through the daemon's sandbox
        # Nothing of the runs is left in the daemon, and the object store was made once.
        assert docker("exec", dind.name, "docker", "ps", "-aq").strip() == ""
        stores = docker("run", "--rm", "-v", f"{dind.cache_volume}:/cache", IMAGE, "ls", "/cache/objects")
        assert len([s for s in stores.split() if "." not in s]) == 1, stores  # besides its .lock and .build
    finally:
        docker("rm", "-f", runner, check=False)
