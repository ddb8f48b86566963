"""Benchmark of the bash policy check on a corpus of agent command lines.

    .venv/bin/python bench/policy.py [--rounds 20] [--corpus bench/data/agent_commands.txt]

Times `Policy.check("bash", ...)` per command line (parse with tree-sitter-bash, walk, match the
rules) under the built-in default policy and a strict allow-list policy, and prints the median,
p95, p99 and maximum per command. Target (issue 14): median under 1 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.policy import Allow, Policy
from runner.task import PolicySpec

CORPUS = Path(__file__).resolve().parent / "data" / "agent_commands.txt"
STRICT = PolicySpec(
    default="deny",
    allow=["read", "grep", "glob", "ls", "edit(src/**)", "bash(python -m pytest*)", "bash(pytest*)",
           "bash(git status*)", "bash(git diff*)", "bash(git log*)", "bash(ls*)", "bash(cat*)", "bash(grep*)",
           "bash(sed -n*)", "bash(head*)", "bash(tail*)", "bash(echo*)", "bash(find*)", "bash(wc*)"],
    deny=["bash(git push*)", "bash(curl*)", "bash(sudo*)", "write(.github/workflows/**)"],
)


def load(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return [ln.replace("⏎", "\n") for ln in lines if ln.strip() and not ln.startswith("#")]


def percentile(sorted_samples: list[float], q: float) -> float:
    return sorted_samples[min(len(sorted_samples) - 1, int(len(sorted_samples) * q))]


def measure(policy: Policy, commands: list[str], rounds: int) -> tuple[list[float], Counter[str]]:
    for command in commands:  # warm-up: imports, the parser, caches
        policy.check("bash", {"command": command})
    per_command: list[float] = []
    verdicts: Counter[str] = Counter()
    for command in commands:
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            decision = policy.check("bash", {"command": command})
            samples.append(time.perf_counter() - start)
        per_command.append(statistics.median(samples))
        verdicts["allowed" if isinstance(decision, Allow) else "denied"] += 1
    return sorted(per_command), verdicts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20, help="timed calls per command (its median is kept)")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    args = ap.parse_args()
    commands = load(args.corpus)
    print(f"corpus: {len(commands)} command lines ({args.corpus.name}); {args.rounds} calls each, "
          "median per command kept")
    print(f"{'policy':<16} {'median':>9} {'p95':>9} {'p99':>9} {'max':>9}  verdicts")
    ok = True
    for name, policy in (("default", Policy.from_spec(None)), ("strict allow", Policy.from_spec(STRICT))):
        times, verdicts = measure(policy, commands, args.rounds)
        ms = [t * 1000 for t in times]
        median = statistics.median(ms)
        ok = ok and median < 1.0
        print(f"{name:<16} {median:>7.3f}ms {percentile(ms, 0.95):>7.3f}ms {percentile(ms, 0.99):>7.3f}ms "
              f"{ms[-1]:>7.3f}ms  {verdicts['allowed']} allowed, {verdicts['denied']} denied")
    print("target: median < 1 ms per command:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
