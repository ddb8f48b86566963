"""Task files: what a user writes wrong is reported as FILE:LINE: field: problem, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import ConfigError
from runner.settings import Flags, Settings, apply_overrides
from runner.task import load_task, parse_duration
from tests.conftest import make_repo

GOOD = """\
name: fix-it
repo: .
prompt: fix the bug
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nprompt: [unclosed\n", ":3: YAML syntax error"),
        ("name: x\nprompt: p\nbogus: 1\n", ":3: bogus: unknown key"),
        ("name: x\nprompt: p\nsandbox:\n  backend: docker\n  netwrk: none\n", ":5: sandbox.netwrk: unknown key"),
        ("name: x\nprompt: p\nlimits:\n  max_turns: many\n", ":4: limits.max_turns: Input should be a valid integer"),
        ("name: x\nprompt: p\nlimits:\n  timeout: 5 minutes\n", ":4: limits.timeout: '5 minutes' is not a duration"),
        ("name: x\nprompt: p\nlimits:\n  tool_timeout: -3\n", ":4: limits.tool_timeout: a duration must be greater"),
        ("name: x\nprompt: p\nprompt_file: p.md\n", ":1: (top level): give exactly one of `prompt` or `prompt_file` (both given)"),
        ("name: x\n", ":1: (top level): give exactly one of `prompt` or `prompt_file` (neither given)"),
        ("prompt: p\n", ":1: name: required field is missing"),
        ("name: bad name!\nprompt: p\n", ":1: name: 'bad name!' may hold only"),
        ("name: x\nprompt: p\nrepo: ./nowhere\n", ":3: repo:"),
        ("name: x\nprompt: p\nsandbox:\n  backend: podman\n", ":4: sandbox.backend: Input should be 'docker' or 'local'"),
        ("name: x\nprompt: p\nverify:\n  - name: t\n    run: true\n  - nam: u\n", ":6: verify[1].nam: unknown key"),
        ("name: x\nprompt: p\nsandbox:\n  memory: lots\n", ":4: sandbox.memory: 'lots' is not a memory size"),
        ("- just\n- a list\n", ":1: (top level): expected a mapping"),
        ("", ":1: (top level): the task file is empty"),
        ("name: x\nprompt_file: missing.md\n", ":2: prompt_file: cannot read"),
        ("name: x\nprompt: '   '\n", ":2: prompt: the prompt is empty"),
        ("name: x\nprompt: p\nmcp_servers:\n  s: {args: [a]}\n", ":4: mcp_servers.s: an MCP server needs exactly one"),
    ],
)
def test_bad_task_files_name_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_task(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert expected in message, message


def test_good_task_defaults(tmp_path: Path) -> None:
    task = load_task(write(tmp_path, GOOD))
    assert task.spec.name == "fix-it"
    assert task.repo == str(tmp_path.resolve())
    assert task.spec.limits.timeout == 1800
    assert task.spec.sandbox.backend == "docker"
    assert task.spec.policy is None


@pytest.mark.parametrize(("raw", "seconds"), [("90s", 90), ("30m", 1800), ("1h", 3600), (45, 45), ("2.5m", 150), ("10", 10)])
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == seconds


def test_prompt_file_is_read_relative_to_the_task(tmp_path: Path) -> None:
    (tmp_path / "p.md").write_text("do the thing")
    task = load_task(write(tmp_path, "name: x\nprompt_file: p.md\n"))
    assert task.prompt == "do the thing"


def test_precedence_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = load_task(write(tmp_path, GOOD + "model: from-file\nlimits:\n  max_turns: 7\n  timeout: 10m\n"))
    monkeypatch.setenv("ASTRA_MODEL", "from-env")
    monkeypatch.setenv("ASTRA_MAX_TURNS", "9")
    settings = Settings()
    merged = apply_overrides(task, settings, Flags())
    assert merged.spec.model == "from-env"
    assert merged.spec.limits.max_turns == 9
    assert merged.spec.limits.timeout == 600  # untouched: from the file
    merged = apply_overrides(task, settings, Flags(model="from-flag", sandbox="local", out="o"))
    assert merged.spec.model == "from-flag"
    assert merged.spec.sandbox.backend == "local"
    assert merged.spec.outputs.dir == "o"
    monkeypatch.delenv("ASTRA_MODEL")
    assert apply_overrides(load_task(write(tmp_path, GOOD)), Settings(), Flags()).spec.model == "claude-sonnet-5-5"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANTHROPIC_API_KEY": "test-key-not-used"}  # validate checks that credentials exist
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_validate_exits_2_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nprompt: p\nlimits:\n  timeout: soon\n")
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2
    assert f"{path}:4: limits.timeout:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_ok_prints_the_effective_policy(tmp_path: Path) -> None:
    make_repo(tmp_path, {"a.txt": "a\n"})
    proc = run_cli("validate", str(write(tmp_path, GOOD)))
    assert proc.returncode == 0, proc.stderr
    assert "valid task 'fix-it'" in proc.stdout
    assert "effective policy" in proc.stdout


def test_validate_says_when_the_repo_is_not_a_git_repository(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2
    assert f"{path}:2: repo: {tmp_path.resolve()} is not a git repository" in proc.stderr, proc.stderr


def test_validate_rejects_a_bad_policy_rule_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "policy:\n  allow:\n    - read\n    - \"bash(unclosed\"\n")
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2
    assert f"{path}:7: policy.allow[1]" in proc.stderr, proc.stderr
