"""What only the docker backend promises: hardening, ownership, git isolation, lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from runner.errors import SandboxError
from runner.sandbox import ToolFailure
from runner.sandbox.base import HelperClient
from runner.sandbox.docker import (
    LABEL,
    LABEL_DEADLINE,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_RUN_ID,
    DockerSandbox,
    _remove_container,
    connect,
    reap_leftovers,
)
from tests.sandbox.conftest import IMAGE, Repo, sandbox_config

pytestmark = pytest.mark.docker


@pytest.fixture
async def box(repo: Repo) -> AsyncIterator[DockerSandbox]:
    sb = DockerSandbox(sandbox_config(repo))
    async with sb:
        yield sb


@pytest.fixture
async def exec_box(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DockerSandbox]:
    """A sandbox on the exec path (what a daemon over TLS or ssh, or a task with setup, gets):
    PID 1 is docker-init's bounded sleep, the agent's helper a `docker exec`."""
    import runner.sandbox.docker as backend

    monkeypatch.setattr(backend, "attachable", lambda client: False)
    sb = DockerSandbox(sandbox_config(repo))
    async with sb:
        yield sb


async def test_the_exec_path_runs_under_init_and_a_bounded_sleep(exec_box: DockerSandbox) -> None:
    pid1 = (await exec_box.exec("cat /proc/1/cmdline | tr '\\0' ' '", timeout=10)).output
    assert "init" in pid1  # docker's init reaps zombies; its child is the bounded sleep
    assert (await exec_box.exec("pgrep -x sleep", timeout=10)).ok
    assert (await exec_box.exec("git status --short && git log --oneline | wc -l", timeout=10)).ok
    assert connect().api.inspect_container(exec_box.container_id)["HostConfig"]["Init"] is True


def _run_labelled(client: object, run_id: str) -> list[object]:
    return client.containers.list(all=True, filters={"label": f"{LABEL_RUN_ID}={run_id}"})  # type: ignore[attr-defined,no-any-return]


async def test_agent_phase_is_hardened(box: DockerSandbox) -> None:
    r = await box.exec(
        "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)\"", timeout=20
    )
    assert not r.ok and ("unreachable" in r.output.lower() or "Errno" in r.output)
    assert (await box.exec("ls /sys/class/net", timeout=10)).output.split() == ["lo"]
    # No network at all (the daemon made no network sandbox): loopback still works, and
    # `localhost` resolves (our /etc/hosts - the daemon writes none then), as under `none`.
    local = await box.exec(
        "python3 -c \"import socket; s = socket.create_server(('localhost', 0)); "
        "c = socket.create_connection(('localhost', s.getsockname()[1]), timeout=3); print('loopback ok')\"",
        timeout=20)
    assert local.output.strip() == "loopback ok", local.output
    assert "localhost" in (await box.exec("getent hosts localhost", timeout=10)).output.split()
    assert not (await box.exec("getent hosts example.com", timeout=10)).ok
    status = (await box.exec("cat /proc/self/status", timeout=10)).output
    caps = {line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines() if line.startswith("Cap")}
    assert caps["CapEff"] == 0 and caps["CapPrm"] == 0 and caps["CapAmb"] == 0
    assert "NoNewPrivs:\t1" in status
    ids = (await box.exec("id -u; id -g", timeout=10)).output.split()
    assert ids == [str(os.getuid()), str(os.getgid())]
    assert (await box.exec("echo $HOME", timeout=10)).output.strip() == "/tmp"
    assert not (await box.exec("test -e /var/run/docker.sock || test -e /run/docker.sock", timeout=10)).ok
    # No setup: PID 1 is the helper itself (attached), bounded by --deadline-s; no docker-init
    # (dumpable, it would hold the channel's fds) and no sleep.
    pid1 = (await box.exec("cat /proc/1/cmdline | tr '\\0' ' '", timeout=10)).output
    assert "/astra/helper.py" in pid1 and "--deadline-s" in pid1, pid1
    assert not (await box.exec("pgrep -x sleep", timeout=10)).ok
    assert f"Uid:\t{os.getuid()}" in (await box.exec("cat /proc/1/status", timeout=10)).output
    attrs = connect().api.inspect_container(box.container_id)
    host = attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == 256 and host["Memory"] == 1 << 30 and host["NanoCpus"] == 10**9
    assert not host["Init"] and attrs["Config"]["OpenStdin"] and attrs["Config"]["StdinOnce"]
    assert attrs["Config"]["NetworkDisabled"] is True and host["NetworkMode"] == "none"
    sources = {m["Destination"]: m for m in attrs["Mounts"]}
    assert set(sources) == {"/workspace", "/workspace/.git", "/astra/helper.py", "/astra/lib", "/astra/objects",
                            "/etc/hosts"}
    # The helper is imported from its compiled form when the image's python3 is the runner's version.
    tag = (await box.exec("python3 -I -S -c 'import sys; print(sys.implementation.cache_tag)'", timeout=10)).output
    loaded = (await box.exec("python3 -I -S -v -c \"import sys; sys.path[:0] = ['/astra/lib']; import helper\" 2>&1 "
                             "| grep 'code object from.*astra/lib'", timeout=20)).output
    if tag.strip() == sys.implementation.cache_tag:
        assert f"/astra/lib/__pycache__/helper.{tag.strip()}.pyc" in loaded, loaded
    else:  # another python3: it compiles the source, as it always did
        assert "/astra/lib/helper.py" in loaded, loaded
    assert not (await box.exec("touch /astra/lib/__pycache__/planted.pyc", timeout=10)).ok
    assert [d for d, m in sources.items() if m["RW"]] == ["/workspace"]


async def test_files_made_inside_belong_to_the_host_user(box: DockerSandbox) -> None:
    await box.exec("mkdir -p made/by && touch made/by/exec", timeout=10)
    await box.file_op("write", path="made/by/tool.txt", content="x")
    for p in ("made", "made/by", "made/by/exec", "made/by/tool.txt"):
        st = (box.config.worktree / p).stat()
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), p


async def test_setup_runs_as_root_with_network_then_the_network_is_cut(repo: Repo) -> None:
    uid = 1000 if os.getuid() == 0 else os.getuid()  # as root we can also try a CI-like non-root uid
    if os.getuid() == 0:
        subprocess.run(["chown", "-R", f"{uid}:{uid}", str(repo.worktree)], check=True)  # noqa: ASYNC221
    setup = [
        "id -u > /tmp/setup-uid; ls /sys/class/net > /tmp/setup-net; grep CapEff /proc/self/status > /tmp/setup-caps",
        'test -z "$SSL_CERT_FILE" || test -r "$SSL_CERT_FILE"',
        "mkdir -p /workspace/build/lib && touch /workspace/build/lib/made-by-setup",
    ]
    cfg = sandbox_config(repo, setup=setup, uid=uid, gid=uid)
    async with DockerSandbox(cfg) as sb:
        assert (await sb.exec("cat /tmp/setup-uid", timeout=10)).output.strip() == "0"
        assert "eth0" in (await sb.exec("cat /tmp/setup-net", timeout=10)).output
        assert (await sb.exec("cat /tmp/setup-caps", timeout=10)).output.split()[1] != "0" * 16
        assert (await sb.exec("ls /sys/class/net", timeout=10)).output.split() == ["lo"]
        assert (await sb.exec("id -u", timeout=10)).output.strip() == str(uid)
        status = (await sb.exec("grep -E 'CapEff|CapPrm' /proc/self/status", timeout=10)).output.split()
        assert status == ["CapPrm:", "0" * 16, "CapEff:", "0" * 16]
        proc = await sb.spawn(["grep", "CapEff", "/proc/self/status"])
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert out.split() == [b"CapEff:", b"0" * 16]
        for p in ("build", "build/lib", "build/lib/made-by-setup"):
            assert (repo.worktree / p).stat().st_uid == uid, p
        assert (await sb.exec("git status --porcelain", timeout=10)).output.strip() == "?? build/"


async def test_setup_failure_is_an_infrastructure_error(repo: Repo) -> None:
    cfg = sandbox_config(repo, setup=["echo boom; exit 7"])
    with pytest.raises(SandboxError, match=r"exit 7[\s\S]*boom"):
        async with DockerSandbox(cfg):
            pass
    assert _run_labelled(connect(), cfg.run_id) == []


async def test_network_bridge_keeps_the_network(repo: Repo) -> None:
    async with DockerSandbox(sandbox_config(repo, network="bridge")) as sb:
        assert "eth0" in (await sb.exec("ls /sys/class/net", timeout=10)).output
        attrs = connect().api.inspect_container(sb.container_id)
        assert not attrs["Config"].get("NetworkDisabled") and attrs["HostConfig"]["NetworkMode"] == "bridge"
        assert "/etc/hosts" not in {m["Destination"] for m in attrs["Mounts"]}  # the daemon's, with its address


async def test_git_works_inside_and_nothing_written_inside_runs_on_the_host(
    box: DockerSandbox, repo: Repo, tmp_path: Path
) -> None:
    assert (await box.exec("git status --porcelain", timeout=20)).output == ""
    log = (await box.exec("git log --format=%s", timeout=10)).output.split()
    assert log == ["second", "first"]
    await box.file_op("edit", path="hello.py", old_string="hello", new_string="bye")
    assert "+print('bye')" in (await box.exec("git diff", timeout=10)).output

    markers = [tmp_path / f"pwned-{i}" for i in range(6)]
    plant = f"""
        git config core.fsmonitor 'touch {markers[0]}; false'
        git config filter.evil.clean 'touch {markers[1]}; cat'
        git config filter.evil.smudge 'touch {markers[1]}; cat'
        git config filter.evil.process 'touch {markers[1]}'
        git config diff.evil.textconv 'touch {markers[2]}; cat'
        git config diff.external 'touch {markers[3]}'
        git config core.pager 'touch {markers[3]}; cat'
        mkdir -p /astra/git/hooks && for h in pre-commit post-checkout post-index-change reference-transaction; do
            printf '#!/bin/sh\\ntouch {markers[4]}\\n' > /astra/git/hooks/$h; chmod +x /astra/git/hooks/$h; done
        printf '* filter=evil diff=evil\\n' > .gitattributes
        git add -A && git commit -qm inside
        echo 'gitdir: /workspace/evil' > .git 2>/dev/null && echo WROTE-DOTGIT
        rm -f .git 2>/dev/null && echo REMOVED-DOTGIT
        touch /astra/objects/planted 2>/dev/null && echo WROTE-OBJECTS
        mkdir -p evil/hooks && printf '[core]\\n\\tfsmonitor = touch {markers[5]}\\n' > evil/config
        echo planted
    """
    trusted_config = (repo.git_dir.parent.parent / "config").read_bytes()
    trusted_files = sorted(p.relative_to(repo.root / ".git") for p in (repo.root / ".git").rglob("*"))
    r = await box.exec(plant, timeout=60)
    assert "planted" in r.output, r.output
    assert "WROTE-DOTGIT" not in r.output and "REMOVED-DOTGIT" not in r.output
    assert "WROTE-OBJECTS" not in r.output
    assert (repo.worktree / ".git").read_text().startswith("gitdir: " + str(repo.root))

    # What the runner's workspace module does afterwards, with trusted git on the host.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null"}
    base = ["git", "-c", "core.hooksPath=/dev/null", f"--git-dir={repo.git_dir}", f"--work-tree={repo.worktree}"]
    for args in (["status"], ["diff"], ["diff", "--binary", repo.base], ["add", "-A"], ["diff", "--cached", "--binary"]):
        out = subprocess.run([*base, *args], env=env, capture_output=True, text=True, check=True).stdout  # noqa: ASYNC221
        if args == ["diff"]:
            assert "+print('bye')" in out  # the host sees the change...
    assert [m.name for m in markers if m.exists()] == []  # ...and ran nothing the sandbox planted
    assert (repo.git_dir.parent.parent / "config").read_bytes() == trusted_config
    now = sorted(p.relative_to(repo.root / ".git") for p in (repo.root / ".git").rglob("*"))
    assert not [p for p in now if p not in trusted_files and "hooks" in str(p)]
    assert hashlib.sha256(trusted_config).hexdigest()  # unchanged, checked above


async def test_docker_kill_mid_call_is_an_infrastructure_error(box: DockerSandbox) -> None:
    call = asyncio.create_task(box.exec("sleep 60", timeout=120))
    await asyncio.sleep(0.5)
    start = time.monotonic()
    await asyncio.to_thread(connect().api.kill, box.container_id)
    with pytest.raises(SandboxError, match=r"stopped|gone"):
        await asyncio.wait_for(call, 20)
    assert time.monotonic() - start < 5
    with pytest.raises(SandboxError):
        await box.exec("true", timeout=5)


async def test_close_removes_the_container(repo: Repo) -> None:
    cfg = sandbox_config(repo)
    sb = DockerSandbox(cfg)
    await sb.start()
    client = connect()
    assert len(_run_labelled(client, cfg.run_id)) == 1
    await sb.close()
    await sb.close()  # twice is fine
    assert _run_labelled(client, cfg.run_id) == []


async def test_missing_image_names_the_build_command(repo: Repo) -> None:
    cfg = sandbox_config(repo, image="astra-sandbox:no-such-tag")
    with pytest.raises(SandboxError, match=r"sandbox-images/build\.sh"):
        async with DockerSandbox(cfg):
            pass
    assert _run_labelled(connect(), cfg.run_id) == []


async def test_a_missing_custom_image_is_not_sent_to_our_build_script(repo: Repo) -> None:
    cfg = sandbox_config(repo, image="my-team/python-tools:none")
    with pytest.raises(SandboxError, match="never pulls") as info:
        async with DockerSandbox(cfg):
            pass
    assert "build.sh" not in str(info.value)


def test_leftovers_of_dead_runs_are_reaped() -> None:
    client = connect()
    done = subprocess.run(["true"], check=True)  # noqa: F841 - only its pid matters
    dead_pid = _a_dead_pid()
    host = socket.gethostname()
    future, past = str(int(time.time()) + 3600), str(int(time.time()) - 1)

    def make(name: str, pid: int, deadline: str) -> object:
        return client.containers.run(
            IMAGE, ["sleep", "300"], name=name, detach=True, network_mode="none", init=True,
            labels={LABEL: "1", LABEL_RUN_ID: name, LABEL_OWNER_PID: str(pid), LABEL_OWNER_HOST: host,
                    LABEL_DEADLINE: deadline},
        )

    suffix = os.urandom(3).hex()
    dead = make(f"astra-test-dead-owner-{suffix}", dead_pid, future)
    late = make(f"astra-test-past-deadline-{suffix}", os.getpid(), past)
    alive = make(f"astra-test-alive-{suffix}", os.getpid(), future)
    try:
        reaped = reap_leftovers(client)
        assert dead.name in reaped and late.name in reaped  # type: ignore[attr-defined]
        assert alive.name not in reaped  # type: ignore[attr-defined]
        names = {c.name for c in client.containers.list(all=True, filters={"label": f"{LABEL}=1"})}
        assert alive.name in names and dead.name not in names  # type: ignore[attr-defined]
    finally:
        for c in (dead, late, alive):
            with contextlib.suppress(Exception):
                c.remove(force=True)  # type: ignore[attr-defined]


def _a_dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid




async def test_a_nested_repository_planted_inside_runs_nothing_on_host_git_with_safe_flags(
    box: DockerSandbox, repo: Repo, tmp_path: Path
) -> None:
    """A repo the sandbox makes inside the worktree becomes a gitlink after `git add -A`; plain host
    `git status`/`git diff` then look into it and run ITS core.fsmonitor (measured with git 2.39).
    The host must pass --ignore-submodules=all / diff.ignoreSubmodules=all: these are the flags
    the workspace module needs on top of hooksPath and no system/global config."""
    marker = tmp_path / "pwned-nested"
    r = await box.exec(
        f"mkdir nested && cd nested && git init -q && git config core.fsmonitor 'touch {marker}; false' "
        "&& echo x > f && git -c core.fsmonitor=false add f && git -c core.fsmonitor=false -c user.name=a -c user.email=a@b commit -qm x && echo ok",
        timeout=20,
    )
    assert "ok" in r.output
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null"}
    base = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "diff.ignoreSubmodules=all",
            "-c", "submodule.recurse=false", f"--git-dir={repo.git_dir}", f"--work-tree={repo.worktree}"]
    for args in (["status", "--ignore-submodules=all"], ["add", "-A"], ["status", "--ignore-submodules=all"],
                 ["diff", "--binary", "--cached", repo.base], ["diff", repo.base]):
        subprocess.run([*base, *args], env=env, capture_output=True, check=True)  # noqa: ASYNC221
    assert not marker.exists()


async def test_spawn_env_never_configures_the_host_docker_cli(box: DockerSandbox, tmp_path: Path) -> None:
    """A repository's `.mcp.json` env reaches `spawn`: as the CLI's environment it would point
    DOCKER_HOST at ssh:// and PATH at a fake `ssh` - code execution on the host."""
    bin_dir, marker = tmp_path / "evil-bin", tmp_path / "pwned-ssh"
    bin_dir.mkdir()
    fake = bin_dir / "ssh"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    fake.chmod(0o755)
    secret = "s3cret-value-not-on-a-command-line"
    env = {"DOCKER_HOST": "ssh://u@h", "PATH": f"{bin_dir}:/usr/bin:/bin", "DOCKER_CONFIG": str(tmp_path),
           "GODEBUG": "x509ignoreCN=0", "MCP_TOKEN": secret, "SPACED": " a=b "}
    proc = await box.spawn(["sh", "-c", 'printf "%s|%s|%s|[%s]\\n" "$DOCKER_HOST" "$PATH" "$MCP_TOKEN" "$SPACED"'],
                           env=env)
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert not marker.exists(), err
    assert out.decode().strip() == f"ssh://u@h|{bin_dir}:/usr/bin:/bin|{secret}|[ a=b ]", err
    assert secret.encode() not in cmdline and b"ssh://" not in cmdline
    with pytest.raises(ToolFailure, match="one line"):
        await box.spawn(["true"], env={"X": "a\nY=injected"})
    env_dir = box._env_dir
    assert env_dir is not None and (env_dir.stat().st_mode & 0o777) == 0o700
    await asyncio.sleep(1)  # the process exited: its env file is gone
    assert list(env_dir.iterdir()) == []
    await box.close()
    assert not env_dir.exists()


async def test_setup_leftovers_die_before_the_agent_phase(repo: Repo) -> None:
    """A process started by setup with `setsid ... &` outlived the root setup helper: root, with
    the setup capabilities, for the whole agent phase - and could leave a setuid-root binary or
    unreadable root files in the worktree on the host."""
    uid = 1000
    subprocess.run(["chown", "-R", f"{uid}:{uid}", str(repo.worktree)], check=True)  # noqa: ASYNC221
    attack = ("setsid sh -c 'sleep 3; cp /bin/dash /workspace/sh; chmod 4755 /workspace/sh; "
              "echo x > /workspace/rootfile; chmod 600 /workspace/rootfile' & sleep 0.2")
    early = "cp /bin/dash /workspace/early-sh; chmod 6755 /workspace/early-sh; mkdir -m 2775 /workspace/sgid-dir"
    cfg = sandbox_config(repo, setup=[early, attack], uid=uid, gid=uid)
    async with DockerSandbox(cfg) as sb:
        ps = (await sb.exec("ps -eo pid=,uid=,args=", timeout=10)).output.splitlines()
        root = [line.split(None, 2) for line in ps if line.split()[1] == "0"]
        assert [r[0] for r in root][:1] == ["1"] and len(root) == 2, ps
        assert root[1][2].startswith("sleep "), ps
        await asyncio.sleep(4)
        assert not (repo.worktree / "sh").exists()
        assert not (repo.worktree / "rootfile").exists()
        for name in ("early-sh", "sgid-dir"):  # made by setup itself: no set-id bit, the user's
            st = (repo.worktree / name).stat()
            assert st.st_mode & 0o6000 == 0 and st.st_uid == uid, name


async def test_pause_freezes_every_process_until_resume(box: DockerSandbox) -> None:
    counter = box.config.worktree / "counter"
    loop = asyncio.create_task(box.exec(
        "i=0; while [ $i -lt 1000 ]; do i=$((i+1)); echo $i > counter.tmp; mv counter.tmp counter; sleep 0.05; done",
        timeout=120))
    try:
        for _ in range(100):
            if counter.exists():
                break
            await asyncio.sleep(0.05)
        await box.pause()
        await box.pause()  # twice is fine
        frozen = counter.read_text()
        await asyncio.sleep(1)
        assert counter.read_text() == frozen
        await box.resume()
        await asyncio.sleep(0.5)
        assert int(counter.read_text()) > int(frozen)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def test_close_of_a_paused_sandbox_removes_it(repo: Repo) -> None:
    cfg = sandbox_config(repo)
    sb = DockerSandbox(cfg)
    await sb.start()
    await sb.pause()
    start = time.monotonic()
    await sb.close()
    assert time.monotonic() - start < 10
    assert _run_labelled(connect(), cfg.run_id) == []


def test_removal_is_idempotent(repo: Repo) -> None:
    client = connect()
    c = client.containers.run(IMAGE, ["sleep", "60"], detach=True, network_mode="none", init=True,
                              labels={LABEL: "1", LABEL_OWNER_PID: str(os.getpid())})
    _remove_container(client, str(c.id))
    _remove_container(client, str(c.id))  # 404: already done
    _remove_container(client, "0" * 64)


def _api_error(status: int) -> Exception:
    import docker
    import requests

    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} from the daemon", response=response)


def test_control_calls_retry_transient_failures_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import docker
    import requests

    from runner.sandbox import docker_engine as backend  # where _control and its time.sleep live

    sleeps: list[float] = []
    monkeypatch.setattr(backend.time, "sleep", sleeps.append)

    def flaky(*errors: Exception) -> Callable[[], str]:
        queue = list(errors)

        def call() -> str:
            if queue:
                raise queue.pop(0)
            return "ok"
        return call

    transient = [_api_error(500), requests.exceptions.ConnectionError("reset"), requests.exceptions.ReadTimeout("slow")]
    assert backend._control(flaky(*transient), "test") == "ok"
    assert len(sleeps) == 3 and all(0.2 <= s <= 8 * 1.5 for s in sleeps)
    assert sleeps[2] > sleeps[0] / 3  # backoff grows (jitter aside)
    sleeps.clear()
    for status in (400, 404, 409):
        call = flaky(_api_error(status))
        with pytest.raises(docker.errors.APIError):
            backend._control(call, "test")
        assert sleeps == []
    with pytest.raises(docker.errors.APIError):  # gives up after CONTROL_ATTEMPTS
        backend._control(flaky(*[_api_error(503)] * 10), "test")
    assert len(sleeps) == backend.CONTROL_ATTEMPTS - 1


async def test_quiesce_kills_all_but_init_and_its_sleep(exec_box: DockerSandbox) -> None:
    """The setup helper's `quiesce`, against a process outside its own tree (which its per-call
    sweep cannot see); then the daemon-side check that nothing but init and sleep is left."""
    assert exec_box.container_id is not None
    cid = exec_box.container_id
    arg = f"555.{os.getpid()}"
    subprocess.run(["docker", "exec", "-d", cid, "sh", "-c", f"setsid sleep {arg} & sleep {arg}"], check=True)  # noqa: ASYNC221
    await asyncio.sleep(0.5)
    with pytest.raises(SandboxError, match="still running"):
        await asyncio.to_thread(exec_box._check_only_init_left)
    proc = await asyncio.create_subprocess_exec(
        "docker", "exec", "-i", "-u", "0:0", cid, "python3", "-I", "/astra/helper.py", "--root", "/workspace",
        "--setup-phase", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    root_helper = HelperClient(proc, "test")
    try:
        r = await root_helper.request("quiesce", timeout=30)
        assert r["left"] == [] and r["killed"] >= 3  # the two sleeps and their shell, the agent helper
        assert (await root_helper.request("ping", timeout=10))["uid"] == 0
        ps = (await root_helper.request("exec", timeout=10, command="ps -eo pid=,args=", timeout_s=10))["output"]
        assert arg not in ps and " 1 /sbin/docker-init" in " " + ps.strip(), ps
    finally:
        await root_helper.close()
    await asyncio.to_thread(exec_box._check_only_init_left)  # only init and the sleep


def _paused(cid: str) -> bool:
    return bool(connect().api.inspect_container(cid)["State"]["Paused"])


async def test_pause_freezes_only_when_something_besides_the_helper_runs(box: DockerSandbox) -> None:
    """The attached helper is PID 1: alone, there is nothing to freeze (no runc pause/resume per
    patch); any other process - here one the helper did not start - and the cgroup is frozen."""
    assert box.container_id is not None
    cid = box.container_id
    await box.git_ready()  # its git setup is a call of the helper's
    await box.pause()
    assert not _paused(cid)
    await box.resume()
    assert (await box.exec("echo still-here", timeout=10)).output.strip() == "still-here"
    subprocess.run(["docker", "exec", "-d", cid, "sleep", "30"], check=True)  # noqa: ASYNC221
    await asyncio.sleep(0.3)
    await box.pause()
    assert _paused(cid)
    await box.resume()
    assert not _paused(cid)


async def test_the_attached_helper_ends_its_container_at_the_deadline(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What PID 1's bounded sleep does on the exec path: a runner that never closes the
    sandbox (a hung process) leaves it for the run's wall clock plus the margin at most."""
    import runner.sandbox.docker_spec as docker_spec

    monkeypatch.setattr(docker_spec, "DEADLINE_MARGIN_S", 0)
    cfg = sandbox_config(repo, deadline_s=2)
    sb = DockerSandbox(cfg)
    await sb.start()
    try:
        assert (await sb.exec("echo up", timeout=5)).ok
        client = connect()
        for _ in range(80):
            if not _run_labelled(client, cfg.run_id):
                break
            await asyncio.sleep(0.1)
        assert _run_labelled(client, cfg.run_id) == []
    finally:
        await sb.close()


async def test_the_sandbox_is_ready_before_its_git_objects_and_commands_wait_for_them(repo: Repo) -> None:
    """A first run's store is written beside the start: `start` returns without it, file tools
    work at once, and the first command runs only once git inside is set up over the whole store."""
    written = asyncio.Event()

    async def objects_ready() -> None:
        await written.wait()

    sb = DockerSandbox(sandbox_config(repo, git_objects_ready=objects_ready))
    try:
        await asyncio.wait_for(sb.start(), 20)  # without the store
        assert (await sb.file_op("ls", path="."))  # no git needed
        command = asyncio.ensure_future(sb.exec("git log --oneline | wc -l; git status --short | wc -l", timeout=30))
        await asyncio.sleep(1.0)
        assert not command.done()  # waits for the store
        written.set()
        r = await asyncio.wait_for(command, 30)
        assert r.ok and r.output.split() == ["2", "0"], r.output
        await sb.git_ready()
    finally:
        written.set()
        await sb.close()
