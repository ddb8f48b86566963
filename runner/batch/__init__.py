"""Batch runs (SPEC §5): many tasks from a manifest, N at a time, shardable across machines.

    manifest.py   the manifest, its validation, sharding
    scheduler.py  running tasks concurrently, isolated, with cost cap, fail-fast and signals
    aggregate.py  OUT/junit.xml, cost.json, summary.md, results.jsonl
    progress.py   the live table (terminal) or plain lines (CI)
    commands.py   `astra-run batch` and `astra-run merge`
"""

from runner.batch.commands import cmd_batch, cmd_merge

__all__ = ["cmd_batch", "cmd_merge"]
