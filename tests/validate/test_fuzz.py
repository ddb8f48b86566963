"""A seeded, time-bounded fuzz of generated task files and manifests: no traceback, no hang.

The generator (fuzz_driver.py) writes near-miss and broken task files and manifests (wrong
types, out-of-range values, duplicate keys, YAML 1.1 surprises, deep nesting, alias bombs, bad
encodings, FIFOs and devices as paths) and validates each in one process; any exception that
escapes the CLI, any exit code but 0 or 2, any case slower than its limit fails the test.
ASTRA_FUZZ_SEED and ASTRA_FUZZ_SECONDS change the seed and the time spent (default 20 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SEED = int(os.environ.get("ASTRA_FUZZ_SEED", "20261201"))
SECONDS = float(os.environ.get("ASTRA_FUZZ_SECONDS", "20"))
ROOT = Path(__file__).resolve().parents[2]


def test_generated_task_files_and_manifests_never_crash_or_hang(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.validate.fuzz_driver", str(SEED), str(SECONDS), str(tmp_path / "fuzz")],
        capture_output=True, text=True, cwd=ROOT, timeout=SECONDS + 120,
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr[-5000:]
    assert summary.startswith(f"fuzz: seed {SEED}: ") and " 0 failure(s)" in summary, proc.stdout[-5000:]
    cases = int(summary.split(": ")[2].split()[0])
    assert cases >= 20, summary  # it really ran


def test_generated_json_files_never_crash(tmp_path: Path) -> None:
    """The price file and a repo's .mcp.json go through the JSON reader: random and broken JSON
    (cut, with characters changed, deep, duplicated keys, NaN) is a positioned error or a result,
    never another exception."""
    import json
    import random

    from runner.errors import ConfigError
    from runner.mcp.config import RepoConfigError, plans_from_repo
    from runner.models.pricing import load_prices
    from runner.task import McpServerSpec
    from runner.yamlio import load_json

    rng = random.Random(SEED)
    atoms: list[object] = [0, -1, 1.5, True, False, None, "", "x", "${HOME}", "\u202e", [], {}]

    def value(depth: int) -> object:
        if depth > 3 or rng.random() < 0.4:
            return rng.choice(atoms)
        if rng.random() < 0.5:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        keys = ["mcpServers", "command", "args", "env", "type", "url", "models", "input", "date", "a"]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randint(0, 4))}

    spec = McpServerSpec(from_repo=True)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(1500):
        text = json.dumps(value(0), indent=rng.choice([None, 1]))
        roll = rng.random()
        if roll < 0.2 and text:
            cut = rng.randrange(len(text))
            text = text[:cut] + rng.choice(["", ",", "}", "]", '"', "NaN", "\n", "\\"]) + text[cut + 1:]
        elif roll < 0.3:
            text = "[" * rng.randint(30, 3000) + "]" * rng.randint(0, 3000)
        elif roll < 0.4:
            text = text.replace("{", '{"a": 1, "a": 2, ', 1)
        try:
            _, _, problems = load_json(text, "f.json")
            outcomes["error" if problems else "ok"] += 1
        except ConfigError as exc:
            assert str(exc).startswith("f.json:"), str(exc)
            outcomes["error"] += 1
        try:
            plans_from_repo("repo", spec, text)
        except RepoConfigError as exc:
            assert str(exc).startswith(".mcp.json:"), str(exc)
        prices = tmp_path / "prices.json"
        prices.write_text(text)
        try:
            load_prices(prices)
        except ConfigError as exc:
            assert str(exc).startswith(str(prices) + ":"), str(exc)
    assert outcomes["ok"] > 100 and outcomes["error"] > 100, outcomes
