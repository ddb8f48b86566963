"""Generates task files and manifests and validates each in this process; prints one line per case.

    python -m tests.validate.fuzz_driver SEED SECONDS DIR

Each case must end in exit 0 or 2 with no exception escaping `runner.cli.main` and within
CASE_LIMIT_S (SIGALRM): a traceback prints `CRASH`, a slow case `HANG`, and the driver exits 1.
Deterministic for a seed; the number of cases is what fits in SECONDS.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

CASE_LIMIT_S = 10

KEYS: dict[str, Any] = {
    "name": ["fix-it", "no", "", "a" * 250, "bad name", 1, True, None],
    "repo": [".", "./nowhere", "-x", "https://example.invalid/r.git", 3, ""],
    "ref": ["main", "nope", "--upload-pack=x", 1.10, None, "a\nb"],
    "prompt": ["fix it", "", "  ", 0, None, ["a"]],
    "prompt_file": ["p.md", "bad.md", "missing.md", "fifo", "/dev/zero", "."],
    "model": ["claude-sonnet-4-5", "claude-sonet-4-5", "scripted:m.yaml", "scripted:bad.yaml", "scripted:fifo",
              "", "x y", 5],
    "provider": ["anthropic", "bedrock", "vertex", "openai", None],
    "expect_changes": [True, False, "no", 2],
    "outputs": [{"dir": "out"}, {"dir": "taken"}, {"dir": ""}, "x", None],
}
SANDBOX: dict[str, Any] = {
    "backend": ["local", "local", "local", "podman", None],
    "image": ["astra-sandbox:latest", "Bad Image!", "a" * 300, "x@sha256:" + "0" * 64, 1],
    "setup": [["true"], "true", [1, 2], None],
    "setup_timeout": ["10m", ".nan", -1, "1e400", "forever", 10**30],
    "network": ["none", "bridge", "host"],
    "env": [{"A": "1"}, {"bad-name": "x"}, {"A": 1}, {"A": "${UNSET_VAR_XYZ}"}, [], {"A": "\x00"}],
    "cpus": [2, 1000, 1e-9, float("nan"), "two", -1, 10**20],
    "memory": ["4g", "1b", "0", 0, "lots", "1e9g", 2**70],
    "pids": [512, 0, 10**20, -5, "many"],
    "disk": ["10g", "0", "1t", "x"],
}
LIMITS: dict[str, Any] = {
    "max_turns": [10, 0, -1, 10**20, "many", 1.5],
    "max_cost_usd": [1.0, float("inf"), float("nan"), 0, "cheap"],
    "timeout": ["30m", ".inf", float("nan"), 0, "1e309", "99999999h", 1e300],
    "tool_timeout": ["2m", -3, None, "x"],
    "circuit_breaker": [5, 0, 10**9],
}


def scalar(rng: random.Random) -> Any:
    return rng.choice([0, -1, 1.5, float("inf"), True, None, "", "x", "no", "yes", "~", "1e3", "0x1f", "2024-01-01",
                       "a" * rng.randint(0, 3000), "\u202e", "\U0001f600", [], {}])


VALID: dict[str, Any] = {"name": "ok", "prompt": "fix it", "model": "scripted:m.yaml", "sandbox": {"backend": "local"}}


def task_doc(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.3:  # a valid task with one field changed: the near misses people write
        doc = {**VALID, "sandbox": dict(VALID["sandbox"])}
        if rng.random() < 0.8:
            key, values = rng.choice([*KEYS.items(), *(("sandbox", {k: v}) for k, v in SANDBOX.items())])
            if isinstance(values, dict):
                sub_key, options = next(iter(values.items()))
                doc["sandbox"][sub_key] = rng.choice(options)
            else:
                doc[key] = rng.choice(values)
        return doc
    doc = {}
    for key, values in KEYS.items():
        if rng.random() < 0.7:
            doc[key] = rng.choice(values)
    if rng.random() < 0.6:
        doc["sandbox"] = {k: rng.choice(v) for k, v in SANDBOX.items() if rng.random() < 0.4}
    if rng.random() < 0.5:
        doc["limits"] = {k: rng.choice(v) for k, v in LIMITS.items() if rng.random() < 0.5}
    if rng.random() < 0.3:
        doc["policy"] = {"allow": rng.choice([["read"], ["bash(unclosed"], "read", [1], ["edit(**)"]]),
                         "default": rng.choice(["deny", "allow", "maybe"])}
    if rng.random() < 0.3:
        doc["verify"] = [{"name": rng.choice(["t", "t", "", 1]), "run": rng.choice(["true", 2, None])}
                         for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.2:
        doc["mcp_servers"] = {"s": rng.choice([{"command": "x"}, {"url": "http://127.0.0.1:9", "where": "sandbox"},
                                               {}, "x", {"command": "x", "env": {"K": "${UNSET_VAR_XYZ}"}}])}
    for _ in range(rng.randint(0, 2)):
        doc[rng.choice(["bogus", "limits", "sandbox", "x" * 50])] = scalar(rng)
    return doc


def dump(rng: random.Random, data: Any, depth: int = 0) -> str:
    """Our own YAML writer, so the text can go wrong in the ways people's files do."""
    pad = "  " * depth
    if isinstance(data, dict):
        if not data:
            return "{}"
        return "\n" + "".join(f"{pad}{k}: {dump(rng, v, depth + 1)}\n".replace(": \n", ":\n") for k, v in data.items())
    if isinstance(data, list):
        if not data:
            return "[]"
        return "[" + ", ".join(dump(rng, v, depth + 1).strip() for v in data) + "]"
    if isinstance(data, str):
        return rng.choice([repr(data), data, '"' + data.replace('"', '\\"') + '"'])
    if data is None:
        return rng.choice(["~", "null", ""])
    if isinstance(data, float):
        return {float("inf"): ".inf", float("-inf"): "-.inf"}.get(data, ".nan" if data != data else repr(data))
    return str(data).lower() if isinstance(data, bool) else str(data)


def mutate(rng: random.Random, text: str) -> str:
    ops = rng.randint(0, 3)
    for _ in range(ops):
        pos = rng.randint(0, len(text))
        choice = rng.random()
        if choice < 0.2:
            text = text[:pos] + rng.choice(["[", "{", "]", "}", ":", "- ", "\t", "&a ", "*a", "*b", "!!binary ",
                                            "!tag ", "? ", "|", ">", "%", "---\n", "...\n", "\x00", "\ufeff",
                                            "'", '"', "#", "\n  ", "<<: *a\n"]) + text[pos:]
        elif choice < 0.4:
            text = text[:pos] + text[pos + rng.randint(1, 20):]
        elif choice < 0.5:
            text = text[:pos] + "x: " + "[" * rng.randint(30, 2000) + text[pos:]
        elif choice < 0.6:
            line = rng.choice(text.splitlines() or [""])
            text = text[:pos] + "\n" + line + "\n" + text[pos:]  # a duplicate key, often
        elif choice < 0.65:
            text = "%YAML 1.1\n---\n" + text
        elif choice < 0.7:
            text = "a: &a [1,2,3,4,5,6,7,8,9]\n" + "".join(
                f"b{i}: &b{i} [{','.join(['*a' if i == 0 else f'*b{i - 1}'] * 9)}]\n" for i in range(8)) + text
    return text


def manifest_doc(rng: random.Random, tasks: list[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if rng.random() < 0.8:
        doc["tasks"] = rng.choice([tasks, ["*.yaml"], ["nope/*.yaml"], "x", [1], []])
    if rng.random() < 0.5:
        doc["defaults"] = rng.choice([{"limits": {"timeout": ".nan"}}, {"name": "x"}, {"colour": 1}, [],
                                      {"sandbox": {"backend": "local"}}, {"model": "claude-sonet-4-5"}])
    if rng.random() < 0.4:
        doc["matrix"] = {"template": rng.choice([*tasks, "missing.yaml", "fifo", "."]),
                         "repos": rng.choice([["."], [], ["nowhere"], "x", [".", "."]]),
                         "refs": rng.choice([["main"], ["main", "nope"], [], None, [1]])}
    if rng.random() < 0.2:
        doc[rng.choice(["parallel", "tasks"])] = scalar(rng)
    return doc


def setup_dir(root: Path) -> None:
    import subprocess

    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True, env=env)
    (root / "README").write_text("x\n")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True, env=env)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "base"],
                   cwd=root, check=True, env=env)
    (root / "p.md").write_text("fix it\n")
    (root / "bad.md").write_bytes(b"\xff\xfe\x00bad")
    (root / "m.yaml").write_text("- text: done\n")
    (root / "bad.yaml").write_bytes(b"- text: caf\xe9\n  [\n")
    (root / "taken").write_text("a file\n")
    if not (root / "fifo").exists():
        os.mkfifo(root / "fifo")


class Hang(Exception):
    pass


def run_case(path: Path) -> str:
    from runner.cli import main

    def alarm(signum: int, frame: object) -> None:
        raise Hang

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(CASE_LIMIT_S)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["validate", str(path)])
    except Hang:
        return "HANG"
    except SystemExit as exc:
        return "CRASH SystemExit " + str(exc.code) + " " + err.getvalue()[-500:]
    except BaseException:
        return "CRASH " + traceback.format_exc()
    finally:
        signal.alarm(0)
    text = err.getvalue()
    if code not in (0, 2):
        return f"CRASH exit {code}: {text[-500:]}"
    if "Traceback" in text:
        return "CRASH traceback printed: " + text[-1000:]
    if code == 2 and not text.startswith("astra-run: "):
        return "CRASH exit 2 without a message"
    return f"ok {code}"


def main() -> int:
    seed, seconds, root = int(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
    setup_dir(root)
    os.chdir(root)
    os.environ["ANTHROPIC_API_KEY"] = "test-key-not-used"
    for var in [v for v in os.environ if v.startswith("ASTRA_") or v == "ANTHROPIC_BASE_URL"]:
        del os.environ[var]
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    failures = 0
    n = 0
    counts = {0: 0, 2: 0}
    while time.monotonic() < deadline:
        n += 1
        names = []
        for k in range(rng.randint(1, 3)):
            text = dump(rng, task_doc(rng)).lstrip("\n")
            text = mutate(rng, text) if rng.random() < 0.6 else text
            name = f"t{n}-{k}.yaml"
            (root / name).write_text(text, encoding="utf-8", errors="surrogatepass")
            names.append(name)
        target = names[0]
        if rng.random() < 0.35:
            target = f"m{n}.yaml"
            (root / target).write_text(mutate(rng, dump(rng, manifest_doc(rng, names)).lstrip("\n")),
                                       encoding="utf-8", errors="surrogatepass")
        outcome = run_case(root / target)
        case_files = [root / name for name in [*names, target]]
        if not outcome.startswith("ok"):
            failures += 1
            print(f"{outcome}\n--- {target}:\n{(root / target).read_text(errors='replace')[:3000]}\n", flush=True)
        else:
            counts[int(outcome.split()[1])] += 1
        for path in case_files:  # the next case's globs see only its own files
            path.unlink(missing_ok=True)
    print(f"fuzz: seed {seed}: {n} cases ({counts[0]} valid, {counts[2]} exit 2), {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
