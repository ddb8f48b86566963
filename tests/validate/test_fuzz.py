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
