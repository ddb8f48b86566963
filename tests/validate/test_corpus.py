"""A corpus of broken task files and manifests: each file's FULL list of problems, in line order.

`astra-run validate` must say every problem at once (one round, not three), each as
`FILE:LINE: field: problem`, once, where it was written, and never with a traceback.
`{d}` in an expected line is the case's directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runner.cli import main
from tests.conftest import make_repo

LOCAL = "sandbox:\n  backend: local\n"
DUP = "YAML would keep only one of them; merge them into one"
NO_KEY = ("no credential for the Claude API: set ANTHROPIC_API_KEY, or ANTHROPIC_AUTH_TOKEN (a bearer token, "
          "e.g. for a gateway or a local server at ANTHROPIC_BASE_URL); or choose provider bedrock or vertex")


@dataclass
class Case:
    id: str
    files: dict[str, str | bytes]
    expected: list[str]
    target: str = "task.yaml"
    env: dict[str, str] = field(default_factory=lambda: {"ANTHROPIC_API_KEY": "test-key-not-used"})


CASES = [
    Case("duplicate keys, all of them, and the rest of the file still checked", {"task.yaml": (
        "name: fix\nprompt: p\n" + LOCAL + "limits:\n  max_turns: 10\nlimits:\n  timeout: 5m\n"
        "verify:\n  - {name: t, run: 'true'}\n  - {name: t, run: 'false'}\n")}, [
        f"task.yaml:7: limits: duplicate key (first at line 5): {DUP}",
        "task.yaml:11: verify[1].name: 't' is already the name of verify[0] (line 10): verify names must be unique",
    ]),
    Case("YAML 1.1's surprise types are said plainly", {"task.yaml": (
        "%YAML 1.1\n---\nname: no\nprompt: p\nref: 1.10\n" + LOCAL
        + "  env: {DEBUG: yes, NUM: 1, N: x, WHEN: 2024-05-01}\n")}, [
        'task.yaml:3: name: `no` is read as false: quote it ("no") to mean the text',
        'task.yaml:5: ref: `1.10` is read as the number 1.1: quote it ("1.10") to mean the text',
        'task.yaml:8: sandbox.env: the key `N` is read as false: quote it ("N")',
        'task.yaml:8: sandbox.env.DEBUG: `yes` is read as true: quote it ("yes") to mean the text',
        'task.yaml:8: sandbox.env.NUM: `1` is read as the number 1: quote it ("1") to mean the text',
        'task.yaml:8: sandbox.env.WHEN: `2024-05-01` is read as a date: quote it ("2024-05-01") to mean the text',
    ]),
    Case("YAML 1.2's surprise types, in every text field of a task file", {"task.yaml": (
        "name: 1.10\nprompt: p\nref: 2024-01-01\nmodel: 010\n" + LOCAL
        + "  image: 0x10\n  env: {A: null, B: ~, C: 1_000, D: .inf, 2024-01-01: x}\n  setup: [1.5, true]\n"
        "policy:\n  allow: [read, 12]\nverify:\n  - name: 3\n    run: true\n"
        "mcp_servers:\n  s: {command: srv, args: [--port, 8080], env: {X: 2024-01-01 10:00:00}}\n"
        "outputs: {dir: 7}\n")}, [
        'task.yaml:1: name: `1.10` is read as the number 1.1: quote it ("1.10") to mean the text',
        'task.yaml:3: ref: `2024-01-01` is read as a date: quote it ("2024-01-01") to mean the text',
        'task.yaml:4: model: `010` is read as the number 10: quote it ("010") to mean the text',
        'task.yaml:7: sandbox.image: `0x10` is read as the number 16: quote it ("0x10") to mean the text',
        'task.yaml:8: sandbox.env: the key `2024-01-01` is read as a date: quote it ("2024-01-01")',
        'task.yaml:8: sandbox.env.A: `null` is read as null (no value): quote it ("null") to mean the text, '
        'or write "" for empty text',
        'task.yaml:8: sandbox.env.B: `~` is read as null (no value): quote it ("~") to mean the text, '
        'or write "" for empty text',
        'task.yaml:8: sandbox.env.C: `1_000` is read as the number 1000: quote it ("1_000") to mean the text',
        'task.yaml:8: sandbox.env.D: `.inf` is read as the number inf: quote it (".inf") to mean the text',
        'task.yaml:9: sandbox.setup[0]: `1.5` is read as the number 1.5: quote it ("1.5") to mean the text',
        'task.yaml:9: sandbox.setup[1]: `true` is read as true: quote it ("true") to mean the text',
        'task.yaml:11: policy.allow[1]: `12` is read as the number 12: quote it ("12") to mean the text',
        'task.yaml:13: verify[0].name: `3` is read as the number 3: quote it ("3") to mean the text',
        'task.yaml:14: verify[0].run: `true` is read as true: quote it ("true") to mean the text',
        'task.yaml:16: mcp_servers.s.args[1]: `8080` is read as the number 8080: quote it ("8080") to mean the text',
        'task.yaml:16: mcp_servers.s.env.X: `2024-01-01 10:00:00` is read as a date and time: quote it '
        '("2024-01-01 10:00:00") to mean the text',
        'task.yaml:17: outputs.dir: `7` is read as the number 7: quote it ("7") to mean the text',
    ]),
    Case("under YAML 1.1 a word of a choice read as true/false is called out", {"task.yaml": (
        "%YAML 1.1\n---\nname: x\nprompt: p\n" + LOCAL + "  network: off\nmodel_options:\n  thinking: off\n"
        "  effort: 1\n")}, [
        "task.yaml:7: sandbox.network: Input should be 'none' or 'bridge' (`off` is read as false)",
        'task.yaml:9: model_options.thinking: `off` is read as false: quote it ("off") to mean the text',
        "task.yaml:10: model_options.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max' "
        "(`1` is read as the number 1)",
    ]),
    Case("a manifest that does not fit its schema is still checked in full, surprise types included", {
        "m.yaml": ("defaults:\n  ref: 1.0\n  sandbox: {backend: local, env: {V: 2.0}}\ntasks: [1.10, t.yaml]\n"
                   "matrix:\n  template: 5\n  repos: [.]\n"),
        "t.yaml": "name: t\nprompt: p\nlimits: {max_turns: 0}\n"}, [
        'm.yaml:2: defaults.ref: `1.0` is read as the number 1.0: quote it ("1.0") to mean the text',
        'm.yaml:3: defaults.sandbox.env.V: `2.0` is read as the number 2.0: quote it ("2.0") to mean the text',
        'm.yaml:4: tasks[0]: `1.10` is read as the number 1.1: quote it ("1.10") to mean the text',
        'm.yaml:6: matrix.template: `5` is read as the number 5: quote it ("5") to mean the text',
        "t.yaml:3: limits.max_turns: Input should be greater than 0",
    ], target="m.yaml"),
    Case("a scripted model file: every problem at its own line, under the task's model line", {
        "task.yaml": "name: x\nprompt: p\nmodel: scripted:s.yaml\n" + LOCAL,
        "s.yaml": "- text: 1.5\n  tool_calls:\n    - {name: 3, input: {}}\n- text: ok\n  bogus: 1\n"}, [
        'task.yaml:3: model: {d}/s.yaml:1: [0].text: `1.5` is read as the number 1.5: quote it ("1.5") to mean '
        'the text',
        'task.yaml:3: model: {d}/s.yaml:3: [0].tool_calls[0].name: `3` is read as the number 3: quote it ("3") '
        'to mean the text',
        "task.yaml:3: model: {d}/s.yaml:5: [1].bogus: unknown key",
    ], env={}),
    Case("a price file that cannot be used is found before anything runs", {
        "task.yaml": "name: x\nprompt: p\n" + LOCAL,
        "p.json": '{"date": "d",\n "source": "s", "models": {"m": 1}}'}, [
        "p.json:2: models.m: expected an object with input, output, cache_write, cache_read",
    ], env={"ANTHROPIC_API_KEY": "k", "ASTRA_PRICES_FILE": "p.json"}),
    Case("YAML 1.2 (the default) reads `no` as text: nothing to say", {"task.yaml": (
        "name: no\nprompt: p\n" + LOCAL)}, []),
    Case("every value is range-checked", {"task.yaml": (
        "name: " + "x" * 250 + "\nprompt: p\nlimits:\n  timeout: .nan\n  tool_timeout: .inf\n  max_turns: 0\n"
        "  max_cost_usd: .inf\nsandbox:\n  backend: local\n  cpus: 1e-9\n  memory: 1b\n  pids: 100000000000000000000\n"
        "  image: 'Bad Image!'\n  disk: '0'\n  setup_timeout: 8d\n")}, [
        "task.yaml:1: name: the name is 250 characters long; at most 100",
        "task.yaml:4: limits.timeout: nan is not a duration: use 90s, 30m, 1h or a number of seconds",
        "task.yaml:5: limits.tool_timeout: inf is not a duration: use 90s, 30m, 1h or a number of seconds",
        "task.yaml:6: limits.max_turns: Input should be greater than 0",
        "task.yaml:7: limits.max_cost_usd: Input should be a finite number",
        "task.yaml:10: sandbox.cpus: Input should be greater than or equal to 0.01",
        "task.yaml:11: sandbox.memory: '1b' is less than Docker's smallest memory limit, 6m",
        "task.yaml:12: sandbox.pids: Input should be less than or equal to 4194304",
        "task.yaml:13: sandbox.image: 'Bad Image!' is not an image reference like astra-sandbox:latest or "
        "registry.example/team/image:1.2",
        "task.yaml:14: sandbox.disk: '0' is less than the smallest disk limit, 1m",
        "task.yaml:15: sandbox.setup_timeout: '8d' is not a duration: use 90s, 30m, 1h or a number of seconds",
    ]),
    Case("memory \"0\", a week and a day, a ref git would read as an option", {"task.yaml": (
        "name: x\nprompt: p\nref: --upload-pack=evil\nlimits: {timeout: 1000000}\n" + LOCAL + "  memory: '0'\n")}, [
        "task.yaml:3: ref: '--upload-pack=evil' starts with '-' (git would read it as an option)",
        "task.yaml:4: limits.timeout: 1000000 is longer than the most allowed, 7 days (604800s)",
        "task.yaml:7: sandbox.memory: '0' is less than Docker's smallest memory limit, 6m",
    ]),
    Case("a bad key of a section leaves the rest of it checked (one pass, not two rounds)", {"task.yaml": (
        "name: x\nprompt: p\n" + LOCAL + "  memory: lots\n  env: {A: '${UNSET_XYZ_17}'}\n"
        "limits: {max_turns: 0}\noutputs: {dir: taken}\n"), "taken": "a file\n"}, [
        "task.yaml:5: sandbox.memory: 'lots' is not a memory size like 512m or 4g",
        "task.yaml:6: sandbox.env.A: host variable ${UNSET_XYZ_17} is not set",
        "task.yaml:7: limits.max_turns: Input should be greater than 0",
        "task.yaml:8: outputs.dir: {d}/taken exists and is not a directory",
    ]),
    Case("a misspelt model gets the nearest known id", {"task.yaml": (
        "name: x\nprompt: p\nmodel: claude-sonet-4-5\n" + LOCAL)}, [
        "task.yaml:3: model: 'claude-sonet-4-5' is not a known model id; did you mean 'claude-sonnet-4-5'? "
        "(known: runner/models/*.json)",
    ]),
    Case("a scripted model needs no credentials, but a readable UTF-8 script", {
        "task.yaml": "name: x\nprompt: p\nmodel: scripted:m.yaml\n" + LOCAL,
        "m.yaml": b"- text: caf\xe9\n"}, [
        "task.yaml:3: model: {d}/m.yaml:1: (top level): the scripted model is not UTF-8 text (byte 0xe9); save it as UTF-8",
    ], env={}),
    Case("a prompt file that is not UTF-8, a repo that is not there, a bad rule: all at once", {
        "task.yaml": ("name: x\nprompt_file: p.md\nrepo: ./nowhere\n" + LOCAL
                      + "policy:\n  allow: [read, 'bash(unclosed']\nbogus: 1\n"),
        "p.md": b"\xff\xfe fix it"}, [
        "task.yaml:2: prompt_file: cannot read {d}/p.md: the prompt file is not UTF-8 text (byte 0xff); save it as UTF-8",
        "task.yaml:3: repo: {d}/nowhere does not exist or is not a directory",
        "task.yaml:7: policy.allow[1]: 'bash(unclosed': unbalanced parentheses: write TOOL or TOOL(PATTERN)",
        "task.yaml:8: bogus: unknown key",
    ]),
    Case("1,500 levels of nesting", {"task.yaml": "name: x\nprompt: p\nx: " + "[" * 1500 + "]" * 1500 + "\n"}, [
        "task.yaml:3: (top level): nested more than 40 levels deep",
    ]),
    Case("aliases that expand a billion times", {"task.yaml": "name: x\nprompt: p\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10) if i else '1, 2, 3, 4, 5, 6, 7, 8, 9, 10'}]\n"
        for i in range(9))}, ["task.yaml:1: (top level): more than 20000 values (aliases that expand too far?)"]),
    Case("outputs.dir that is a file", {"task.yaml": "name: x\nprompt: p\noutputs: {dir: taken}\n" + LOCAL,
                                        "taken": "a file\n"}, [
        "task.yaml:3: outputs.dir: {d}/taken exists and is not a directory",
    ]),
    Case("a tag YAML would run elsewhere, a key that is not text", {"task.yaml": (
        "name: x\nprompt: !!python/object:os.system echo\n" + LOCAL + "? [a, b]\n: c\n")}, [
        "task.yaml:1: (top level): give exactly one of `prompt` or `prompt_file` (neither given)",
        "task.yaml:2: prompt: the YAML tag tag:yaml.org,2002:python/object:os.system is not supported here",
        "task.yaml:5: (top level): a key must be text, not ('a', 'b')",
    ]),
    Case("a manifest: a bad default is reported once, at the manifest's line", {
        "m.yaml": ("defaults:\n  limits: {timeout: .nan}\n  colour: red\n  model: claude-sonet-4-5\n"
                   "tasks: [tasks/*.yaml, missing.yaml]\n"),
        "tasks/a.yaml": "name: a\nprompt: p\n" + LOCAL,
        "tasks/b.yaml": "name: b\nprompt: p\nlimits: {max_turns: 0}\n" + LOCAL}, [
        "m.yaml:2: defaults.limits.timeout: nan is not a duration: use 90s, 30m, 1h or a number of seconds",
        "m.yaml:3: defaults.colour: unknown key",
        "m.yaml:4: defaults.model: 'claude-sonet-4-5' is not a known model id; did you mean 'claude-sonnet-4-5'? "
        "(known: runner/models/*.json)",
        "m.yaml:5: tasks[1]: 'missing.yaml' matches no file",
        "tasks/b.yaml:3: limits.max_turns: Input should be greater than 0",
    ], target="m.yaml"),
    Case("a matrix ref that names nothing fails before the batch starts, at its line", {
        "m.yaml": "matrix:\n  template: t.yaml\n  repos: [.]\n  refs: [main, nope]\n",
        "t.yaml": "name: t\nprompt: p\n" + LOCAL}, [
        "m.yaml:4: matrix.refs[1]: nope does not name a commit in {d}",
    ], target="m.yaml"),
    Case("task names that collide in OUT/ are reported at the later name's line", {
        "m.yaml": "tasks: [t/*.yaml]\n", "t/a.yaml": "name: a\nprompt: p\n" + LOCAL,
        "t/b.yaml": LOCAL + "name: A\nprompt: p\n", "t/c.yaml": "name: junit.xml\nprompt: p\n" + LOCAL}, [
        "t/b.yaml:3: name: duplicate task name 'A' (names differ only in case: 'a'): t/a.yaml:1 already has it; "
        "task names must be unique in a batch",
        "t/c.yaml:1: name: 'junit.xml' cannot be a batch task name (it would collide with OUT/ itself or an "
        "aggregate file)",
    ], target="m.yaml"),
    Case("a manifest's duplicate key", {
        "m.yaml": "tasks: [a.yaml]\ntasks: [b.yaml]\n", "a.yaml": "name: a\nprompt: p\n" + LOCAL}, [
        f"m.yaml:2: tasks: duplicate key (first at line 1): {DUP}",
    ], target="m.yaml"),
]


def _prepare(tmp_path: Path, case: Case, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_repo(tmp_path, {"README": "x\n"})
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    for var in list(os.environ):
        if var.startswith(("ASTRA_", "ANTHROPIC_")):
            monkeypatch.delenv(var)
    for var, value in case.env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_problem_of_each_file_at_once(
    tmp_path: Path, case: Case, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _prepare(tmp_path, case, monkeypatch)
    code = main(["validate", case.target])
    out, err = capsys.readouterr()
    problems = err.removeprefix("astra-run: ").splitlines()
    expected = [line.replace("{d}", str(d.resolve())) for line in case.expected]
    assert problems == expected, err
    assert code == (2 if expected else 0), out + err


def test_validate_reads_the_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Telling a task file from a manifest does not read it a second time (it could change between)."""
    import runner.yamlio

    case = Case("once", {"task.yaml": "name: x\nprompt: p\n" + LOCAL,
                         "m.yaml": "tasks: [task.yaml]\n"}, [])
    _prepare(tmp_path, case, monkeypatch)
    reads: list[str] = []
    real = runner.yamlio.read_text

    def counting(path: Path, what: str, **kw: object) -> str:
        reads.append(Path(path).name)
        return real(path, what, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(runner.yamlio, "read_text", counting)
    assert main(["validate", "task.yaml"]) == 0
    assert reads == ["task.yaml"]
    reads.clear()
    assert main(["validate", "m.yaml"]) == 0, capsys.readouterr().err
    assert reads == ["m.yaml", "task.yaml"]


def test_a_fifo_as_the_task_file_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "task.yaml"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "runner", "validate", str(fifo)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == f"astra-run: {fifo}: the file is not a regular file (a named pipe)\n"


@pytest.mark.parametrize("target", ["/dev/zero", "."])
def test_devices_and_directories_are_refused(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", target]) == 2
    assert "not a regular file" in capsys.readouterr().err or target == "."


def test_a_large_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "task.yaml"
    path.write_text("name: x\nprompt: p\n" + "# padding\n" * 200_000)
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == f"astra-run: {path}: the file is larger than 1024 KiB\n"


def test_a_valid_manifest_prints_its_task_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    case = Case("ok", {"m.yaml": "defaults:\n  limits: {max_turns: 3}\ntasks: [a.yaml, b.yaml]\n",
                       "a.yaml": "name: a\nprompt: p\n" + LOCAL, "b.yaml": "name: b\nprompt: p\n" + LOCAL}, [])
    _prepare(tmp_path, case, monkeypatch)
    assert main(["validate", "m.yaml"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "m.yaml: valid batch manifest, 2 task(s)"
    assert out[1].split() == ["task", "repo", "model", "sandbox", "limits", "verify", "from"]
    assert out[2].startswith("a ") and "3 turns" in out[2] and out[3].startswith("b ")


def test_run_checks_everything_before_anything_is_created(tmp_path: Path) -> None:
    make_repo(tmp_path, {"README": "x\n"})
    (tmp_path / "task.yaml").write_text("name: x\nprompt: p\nmodel: claude-sonet-4-5\n" + LOCAL
                                        + "outputs: {dir: out}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "ASTRA_"))}
    proc = subprocess.run([sys.executable, "-m", "runner", "run", "task.yaml"], capture_output=True, text=True,
                          cwd=tmp_path, env={**env, "ASTRA_CACHE": str(tmp_path / "cache")}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.removeprefix("astra-run: ").splitlines()
    assert [line.split(": ")[1] for line in lines] == ["model", "model"]  # the unknown id, and no credentials
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


NO_CREDS_HINT = (" (absent on purpose, as in a fork's pull request? `astra-run validate --no-credentials` skips "
                 "this check)")


def test_missing_credentials_are_a_problem_in_line_order_unless_no_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate` reports missing credentials as a problem (exit 2), in line order with the rest;
    `--no-credentials` is the way out for a job where the secrets are absent on purpose."""
    case = Case("creds", {"task.yaml": "limits: {max_turns: 0}\nname: x\nprompt: p\nprovider: anthropic\n"
                                       + LOCAL + "bogus: 1\n"}, [], env={})
    _prepare(tmp_path, case, monkeypatch)
    assert main(["validate", "task.yaml"]) == 2
    assert capsys.readouterr().err.removeprefix("astra-run: ").splitlines() == [
        "task.yaml:1: limits.max_turns: Input should be greater than 0",
        f"task.yaml:4: provider: {NO_KEY}{NO_CREDS_HINT}",
        "task.yaml:7: bogus: unknown key",
    ]
    (tmp_path / "task.yaml").write_text("name: x\nprompt: p\nprovider: anthropic\n" + LOCAL)
    assert main(["validate", "task.yaml"]) == 2
    assert capsys.readouterr().err == f"astra-run: task.yaml:3: provider: {NO_KEY}{NO_CREDS_HINT}\n"
    assert main(["validate", "--no-credentials", "task.yaml"]) == 0
    out, err = capsys.readouterr()
    assert "provider: anthropic, credentials not checked (--no-credentials)" in out and err == ""
    assert main(["run", "task.yaml"]) == 2  # run says it without the validate hint
    assert capsys.readouterr().err == f"astra-run: task.yaml:3: provider: {NO_KEY}\n"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert main(["validate", "task.yaml"]) == 0
    assert "provider: anthropic, credentials found" in capsys.readouterr().out


def test_a_manifest_reports_missing_credentials_once_per_provider_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    case = Case("creds", {
        "m.yaml": "tasks: [t/*.yaml]\ndefaults:\n  sandbox: {backend: local}\n  provider: anthropic\n",
        **{f"t/{n}.yaml": f"name: {n}\nprompt: p\n" for n in "abc"},
        "t/d.yaml": "name: d\nprompt: p\nmodel: scripted:../s.yaml\n", "s.yaml": "- text: done\n"}, [], env={})
    _prepare(tmp_path, case, monkeypatch)
    assert main(["validate", "m.yaml"]) == 2
    assert capsys.readouterr().err == (f"astra-run: m.yaml:4: defaults.provider: {NO_KEY} (needed by 3 tasks: a, b, "
                                       f"c){NO_CREDS_HINT}\n")
    assert main(["batch", "m.yaml", "--dry-run"]) == 2
    assert capsys.readouterr().err == f"astra-run: m.yaml:4: defaults.provider: {NO_KEY} (needed by 3 tasks: a, b, c)\n"
    assert main(["validate", "m.yaml", "--no-credentials"]) == 0
    assert capsys.readouterr().out.startswith("m.yaml: valid batch manifest, 4 task(s) (credentials not checked")
    (tmp_path / "m.yaml").write_text("tasks: [t/*.yaml]\ndefaults:\n  sandbox: {backend: local}\n")
    assert main(["validate", "m.yaml"]) == 2  # no provider written: at the manifest's top, still once
    assert capsys.readouterr().err.startswith(f"astra-run: m.yaml:1: (top level): {NO_KEY} (needed by 3 tasks")


def test_an_env_model_is_blamed_on_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    case = Case("env", {"task.yaml": "name: x\nprompt: p\nmodel: claude-sonnet-4-5\n" + LOCAL}, [])
    _prepare(tmp_path, case, monkeypatch)
    monkeypatch.setenv("ASTRA_MODEL", "claude-opsu-4-1")
    assert main(["validate", "task.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("astra-run: ASTRA_MODEL: model: 'claude-opsu-4-1' is not a known model id; did you mean"), err


@pytest.mark.docker
def test_a_missing_image_and_too_many_cpus_are_found_by_validate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    case = Case("docker", {"task.yaml": "name: x\nprompt: p\nsandbox:\n  image: astra-sandbox:never-built\n"
                                        "  cpus: 1000\n"}, [])
    _prepare(tmp_path, case, monkeypatch)
    assert main(["validate", "task.yaml"]) == 2
    lines = capsys.readouterr().err.removeprefix("astra-run: ").splitlines()
    assert lines[0].startswith("task.yaml:4: sandbox.image: the image astra-sandbox:never-built is not on this "
                               "Docker host; build it with `sandbox-images/build.sh`"), lines
    assert lines[1].startswith("task.yaml:5: sandbox.cpus: 1000 is more than the "), lines
    assert len(lines) == 2
    (tmp_path / "task.yaml").write_text("name: x\nprompt: p\nsandbox:\n  image: astra-sandbox:never-built\n"
                                        "  memory: lots\n")
    assert main(["validate", "task.yaml"]) == 2  # a bad memory does not hide the missing image
    lines = capsys.readouterr().err.removeprefix("astra-run: ").splitlines()
    assert [line.split(": ")[0:2] for line in lines] == [["task.yaml:4", "sandbox.image"],
                                                         ["task.yaml:5", "sandbox.memory"]], lines


def test_batch_dry_run_prints_the_task_table_and_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    case = Case("dry", {"m.yaml": "tasks: [a.yaml, b.yaml]\n", "a.yaml": "name: a\nprompt: p\n" + LOCAL,
                        "b.yaml": "name: b\nprompt: p\nmodel: scripted:turns.yaml\n" + LOCAL,
                        "turns.yaml": "- text: done\n"}, [])
    _prepare(tmp_path, case, monkeypatch)
    assert main(["batch", "m.yaml", "--dry-run", "--out", "out"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("astra-run batch: dry run: 2 task(s) would run") and "nothing was run" in out[0]
    assert out[1].split()[0] == "task" and out[2].startswith("a ") and out[3].startswith("b ")
    assert "scripted:turns.yaml" in out[3]
    assert not (tmp_path / "out").exists()
    (tmp_path / "b.yaml").write_text("name: b\nprompt: p\nref: nope\n" + LOCAL)
    assert main(["batch", "m.yaml", "--dry-run"]) == 2
    assert "b.yaml:3: ref: nope does not name a commit" in capsys.readouterr().err
