"""The batch's aggregates in OUT/ (SPEC §5), computed from the task directories alone.

`junit.xml` (one <testsuite> per task), `cost.json` (per task and `total_cost_usd`), `summary.md`
(a table of tasks) and `results.jsonl` (one line per task: its result.json). Everything is in the
canonical order, sorted by task name, and is a function of the task directories (plus the records
of tasks that did not run), so `astra-run merge` of shard outputs produces exactly what one
unsharded batch over the same task directories produces.

A task that did not run (the batch's cost cap, --fail-fast, an interrupt before it started) has no
directory; it is kept in the aggregates as a record with status `skipped` - a batch-only status
that never appears in a result.json - so `--resume` knows to run it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.redact_view import strip_hidden
from runner.reports.files import write_text_atomic
from runner.reports.junit import clean_text, merge_suites
from runner.reports.summary import format_cost

FINAL_STATUSES = frozenset({"success", "failed", "limit"})
"""A result.json with one of these is reused by --resume; `error` and `interrupted` run again."""
SKIPPED = "skipped"
AGGREGATE_FILES = frozenset({"junit.xml", "cost.json", "summary.md", "results.jsonl"})
"""The batch's files in OUT/ itself: no task directory may take their place."""


@dataclass(frozen=True)
class Entry:
    """One task of the batch as the aggregates see it."""

    name: str
    result: dict[str, Any]
    """Its result.json, or a record for a task that did not run (status `skipped`)."""
    dir: Path | None
    """OUT/<name> when the task wrote outputs."""


def read_result(task_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((task_dir / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def skipped_record(name: str, reason: str, exit_code: int | None) -> dict[str, Any]:
    return {
        "status": SKIPPED, "reason": reason, "exit_code": exit_code, "run_id": None, "task": name,
        "turns": 0, "tool_calls": 0, "duration_s": 0.0, "cost_usd": 0.0, "verify": [],
        "patch": {"files_changed": 0, "insertions": 0, "deletions": 0},
    }


def batch_exit_code(results: Iterable[dict[str, Any]], signum: int | None = None) -> int:
    """0 when every task succeeded, else the first of 4, 3, 1 among the tasks; 128+N if interrupted."""
    if signum is not None:
        return 128 + signum
    results = list(results)
    interrupted = [r.get("exit_code") for r in results if r.get("status") == "interrupted"]
    if interrupted:  # only seen by merge: a shard was stopped by a signal
        return max((c for c in interrupted if isinstance(c, int)), default=130)
    codes = {r.get("exit_code") for r in results}
    for code in (4, 3, 1):
        if code in codes:
            return code
    return 0 if all(r.get("status") == "success" for r in results) else 1


def _cost(result: dict[str, Any]) -> float | None:
    value = result.get("cost_usd", 0.0)
    return float(value) if isinstance(value, int | float) else None


def write_aggregates(out: Path, entries: Sequence[Entry], *, title: str, exit_code: int,
                     failed: list[str] | None = None) -> str:
    """Write the four aggregate files; returns the summary markdown.

    Each file is attempted even when another cannot be written (a full disk): `failed` gets one
    line per file that could not be (without it, the first failure raises)."""
    ordered = sorted(entries, key=lambda e: e.name)
    summary = strip_hidden(summary_table(ordered, title=title, exit_code=exit_code))  # names from task files
    files: dict[str, Callable[[], str]] = {
        "results.jsonl": lambda: "".join(
            json.dumps(e.result, ensure_ascii=False, separators=(",", ":")) + "\n" for e in ordered),
        "junit.xml": lambda: merge_suites([_junit_of(e) for e in ordered],
                                          classname_prefixes=[e.name for e in ordered]),
        "cost.json": lambda: json.dumps(cost_report(ordered), indent=2, ensure_ascii=False) + "\n",
        "summary.md": lambda: summary,
    }
    for name, text in files.items():
        try:
            write_text_atomic(out / name, text())
        except OSError as exc:
            if failed is None:
                raise
            failed.append(f"could not write {out / name}: {exc}")
    return summary


def _junit_of(entry: Entry) -> str:
    if entry.dir is not None:
        try:
            return (entry.dir / "junit.xml").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):  # missing, unreadable or corrupt: the synthetic suite
            pass
    # no junit.xml of its own: a suite with one testcase saying why
    name = clean_text(entry.name)
    status = str(entry.result.get("status"))
    reason = clean_text(str(entry.result.get("reason") or status))
    suite = ET.Element("testsuite", name=name, tests="1", failures="0", errors="0", skipped="0", time="0.000")
    case = ET.SubElement(suite, "testcase", name="agent", classname=f"astra.{name}", time="0.000")
    if status == SKIPPED:
        ET.SubElement(case, "skipped", message=reason)
        suite.set("skipped", "1")
    elif status != "success":
        ET.SubElement(case, "error", message=reason, type=status).text = reason
        suite.set("errors", "1")
    return ET.tostring(suite, encoding="unicode")


def cost_report(entries: Sequence[Entry]) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    total: float | None = 0.0
    unknown: list[str] = []
    prices: Any = None
    for e in entries:
        cost = _cost(e.result)
        models: Any = {}
        if e.dir is not None:
            try:
                data = json.loads((e.dir / "cost.json").read_text(encoding="utf-8"))
                models = data.get("models", {})
                prices = prices or data.get("prices")
            except (OSError, ValueError, AttributeError):
                models = {}
        tasks[e.name] = {"status": e.result.get("status"), "cost_usd": cost, "models": models}
        if cost is None:
            unknown.append(e.name)
            total = None
        elif total is not None:
            total += cost
    return {
        "tasks": tasks,
        "total_cost_usd": None if total is None else round(total, 6),
        "unknown_cost_tasks": unknown,
        "prices": prices,
    }


def _cell(value: object, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")


def summary_table(entries: Sequence[Entry], *, title: str, exit_code: int) -> str:
    counts = Counter(str(e.result.get("status")) for e in entries)
    report = cost_report(entries)
    order = ["success", "failed", "limit", "error", "interrupted", SKIPPED]
    tally = ", ".join(f"{counts[s]} {s}" for s in [*order, *sorted(set(counts) - set(order))] if counts[s])
    lines = [
        f"## astra-run batch: {_cell(title)}", "",
        f"**{len(entries)} task(s)**: {tally or 'none'} · total cost {format_cost(report['total_cost_usd'])}"
        f" · exit code {exit_code}", "",
        "| Task | Status | Reason | Turns | Cost | Files changed |",
        "|---|---|---|---:|---:|---:|",
    ]
    for e in entries:
        r = e.result
        patch = r.get("patch") if isinstance(r.get("patch"), dict) else {}
        files = patch.get("files_changed", 0) if patch else 0
        lines.append(f"| {_cell(e.name)} | {_cell(r.get('status'))} | {_cell(r.get('reason') or '')} |"
                     f" {r.get('turns', 0)} | {format_cost(_cost(r))} | {files} |")
    lines.append("")
    return "\n".join(lines)
