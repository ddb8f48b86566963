"""Issue 12.6: the agent phase inherits nothing setup planted into the interpreter or PATH it
relies on, and no setuid/setgid bit of any phase survives in the worktree.

Setup runs as root with capabilities (and the repository's code). Attacks: a `python3` shim
earlier on PATH that drops `--drop-caps`; a patched stdlib module; a file that shadows the
stdlib; /etc/ld.so.preload. The agent (uid 0 here when the tests run as root) leaves a
setuid-root copy of a binary in the worktree.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runner.sandbox.docker_runtime import interpreter_argv, planted
from tests.security.helpers import attack, bash, result, tool_outputs

SHIM = ("printf '#!/bin/sh\\ntouch /tmp/shim-ran\\nfor a; do shift; [ \"$a\" = --drop-caps ] || set -- \"$@\" \"$a\"; done\\n"
        "exec /usr/bin/python3 \"$@\"\\n' > /usr/local/bin/python3 && chmod 755 /usr/local/bin/python3")


@pytest.mark.docker
def test_a_python3_shim_planted_by_setup_is_never_run(tmp_path: Path) -> None:
    probe = "grep -E '^Cap(Eff|Prm)' /proc/self/status; ls /tmp/shim-ran 2>&1; id -u"
    proc, out = attack(tmp_path, [bash(probe)], sandbox={"setup": [SHIM]})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [output] = tool_outputs(out)
    assert "CapEff:\\t0000000000000000" in output and "CapPrm:\\t0000000000000000" in output, output
    assert "No such file" in output, output  # the shim never ran


@pytest.mark.docker
@pytest.mark.parametrize(("setup", "named"), [
    ("echo 'import os' >> /usr/lib/python3.11/selectors.py", "/usr/lib/python3.11/selectors.py"),
    ("python3 -c 'import zipfile; zipfile.ZipFile(\"/usr/lib/python311.zip\", \"w\").writestr(\"json.py\", \"x=1\")'",
     "/usr/lib/python311.zip"),
    ("echo 'x = 1' > /usr/lib/python3.11/_json.py", "/usr/lib/python3.11/_json.py"),
    ("touch /etc/ld.so.preload", "/etc/ld.so.preload"),
    ("cp /usr/lib/x86_64-linux-gnu/libz.so.1 /tmp/z && ln -sf /tmp/z /usr/lib/x86_64-linux-gnu/libz.so.1",
     "/usr/lib/x86_64-linux-gnu/libz.so.1"),
])
def test_setup_that_changes_the_helpers_runtime_stops_the_run(tmp_path: Path, setup: str, named: str) -> None:
    proc, out = attack(tmp_path, [bash("echo agent-ran")], sandbox={"setup": [setup]})
    assert proc.returncode == 4, proc.stdout + proc.stderr
    r = result(out)
    assert r["status"] == "error" and "setup changed what the sandbox helper runs on" in r["reason"], r["reason"]
    assert named in r["reason"], r["reason"]
    assert not any("agent-ran" in t for t in tool_outputs(out))


@pytest.mark.docker
def test_ordinary_setup_installs_are_not_mistaken_for_tampering(tmp_path: Path) -> None:
    setup = ("mkdir -p /opt/tool && echo 'print(1)' > /usr/local/lib/python3.11/dist-packages/x.py 2>/dev/null; "
             "touch /usr/lib/x86_64-linux-gnu/libfoo.so.1 /usr/local/bin/mytool && ldconfig")
    proc, out = attack(tmp_path, [bash("echo agent-ran")], sandbox={"setup": [setup]})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any("agent-ran" in t for t in tool_outputs(out))


def test_the_tampering_rules() -> None:
    runtime = {"interpreter": "/usr/bin/python3.11", "loader": "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
               "lib_dirs": ["/usr/lib/x86_64-linux-gnu"],
               "files": ["/usr/bin/python3.11", "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13", "/usr/lib/python3.11/json/__init__.py"],
               "python_dirs": ["/usr/lib/python3.11", "/usr/lib/python3.11/json"], "absent": ["/usr/lib/python311.zip"]}
    changes = [{"Path": p, "Kind": k} for p, k in [
        ("/usr/lib", 0), ("/usr/lib/python3.11", 0), ("/usr/lib/python3.11/json/__init__.py", 0),
        ("/usr/lib/python3.11/json/evil.py", 1), ("/usr/lib/python3.11/unrelated.py", 0),
        ("/usr/lib/x86_64-linux-gnu/libz.so.1", 0), ("/usr/lib/x86_64-linux-gnu/libpq.so.5", 1),
        ("/usr/lib/python311.zip", 1), ("/etc/ld.so.preload", 1), ("/usr/local/bin/python3", 1), ("/etc/ld.so.cache", 0),
        ("/astra/helper.py", 1)]]
    assert planted(changes, runtime, before=[{"Path": "/astra/helper.py", "Kind": 1}]) == ["/etc/ld.so.preload", "/usr/lib/python3.11/json/__init__.py",
                                         "/usr/lib/python3.11/json/evil.py", "/usr/lib/python311.zip",
                                         "/usr/lib/x86_64-linux-gnu/libz.so.1"]
    assert interpreter_argv(runtime)[:4] == ["/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "--inhibit-cache",
                                             "--library-path", "/usr/lib/x86_64-linux-gnu"]
    assert interpreter_argv(None) == ["python3", "-I", "-S"]


@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_setuid_bits_the_agent_leaves_are_cleared(tmp_path: Path, backend: str) -> None:
    proc, out = attack(tmp_path, [bash("cp /bin/true suid && chmod 6755 suid && mkdir sgid && chmod 2775 sgid"
                                       " && ls -l suid")], backend=backend, args=("--keep",))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any("rwsr-sr-x" in t for t in tool_outputs(out))  # it was set, inside
    [kept] = list((tmp_path / "cache").rglob("suid"))
    for path in (kept, kept.parent / "sgid"):
        assert not os.stat(path).st_mode & (stat.S_ISUID | stat.S_ISGID), oct(os.stat(path).st_mode)
