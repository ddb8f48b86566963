"""`astra-run batch` and `astra-run merge` (SPEC §1, §5)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from runner.batch.aggregate import (
    FINAL_STATUSES,
    SKIPPED,
    Entry,
    batch_exit_code,
    format_cost,
    read_result,
    write_aggregates,
)
from runner.batch.manifest import PlannedTask, load_manifest, select_shard, shard_from
from runner.batch.progress import Progress, is_live
from runner.batch.scheduler import Batch, BatchOptions, start_policy
from runner.errors import ConfigError, InfraError
from runner.reports.summary import append_step_summary
from runner.settings import load_settings

_TITLE = re.compile(r"^## astra-run batch: (.+)$")
_TASK_DIR_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


def split_resumed(tasks: Sequence[PlannedTask], out: Path) -> tuple[list[Entry], list[PlannedTask]]:
    """(tasks whose OUT/<task>/result.json is final, tasks still to run)."""
    done: list[Entry] = []
    todo: list[PlannedTask] = []
    for p in tasks:
        result = read_result(out / p.name)
        if result is not None and result.get("status") in FINAL_STATUSES and result.get("task") == p.name:
            done.append(Entry(p.name, result, out / p.name))
        else:
            todo.append(p)
    return done, todo


def cmd_batch(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.jobs < 1:
        raise ConfigError(f"-j/--jobs: {args.jobs} is not a number of parallel tasks (at least 1)")
    if args.max_cost_usd is not None and not args.max_cost_usd > 0:
        raise ConfigError(f"--max-cost-usd: {args.max_cost_usd} must be greater than zero")
    shard = shard_from(args.shard, os.environ)
    out = Path(args.out).expanduser().resolve()
    planned = load_manifest(args.manifest, settings, out)
    mine = select_shard(planned, shard)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InfraError(f"cannot create the output directory {out}: {exc}") from None
    done, todo = split_resumed(mine, out) if args.resume else ([], list(mine))

    progress = Progress(sys.stdout, total=len(mine), live=is_live(sys.stdout))
    where = f"shard {shard} ({len(mine)} of {len(planned)} tasks)" if shard else f"{len(mine)} task(s)"
    progress.note(f"{where}, {len(todo)} to run, {args.jobs} at a time; outputs in {out}")
    for entry in done:
        progress.skip(entry.name, "resumed", entry.result)
    cap, stagger = start_policy(todo, args.jobs)
    options = BatchOptions(jobs=args.jobs, max_cost_usd=args.max_cost_usd, fail_fast=args.fail_fast,
                           start_cap=cap, stagger_s=stagger)
    batch = Batch(todo, done, settings, options, progress)
    # each task's summary goes to its own summary.md; the step summary gets the batch's table only
    step_summary = os.environ.pop("GITHUB_STEP_SUMMARY", None)
    try:
        asyncio.run(batch.run())
    finally:
        if step_summary is not None:
            os.environ["GITHUB_STEP_SUMMARY"] = step_summary
        progress.close()
        entries = batch.entries_now()
        code = batch_exit_code([e.result for e in entries], batch.interrupt.signum)
        summary = write_aggregates(out, entries, title=Path(args.manifest).name, exit_code=code)
        if step_summary:
            append_step_summary(summary)
    _print_total(entries, code, out)
    return code


def _print_total(entries: Sequence[Entry], code: int, out: Path) -> None:
    counts: dict[str, int] = {}
    total = 0.0
    unknown = False
    for e in entries:
        status = str(e.result.get("status"))
        counts[status] = counts.get(status, 0) + 1
        cost = e.result.get("cost_usd")
        if isinstance(cost, int | float):
            total += cost
        else:
            unknown = True
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no tasks"
    cost_text = format_cost(None if unknown else total)
    print(f"astra-run batch: {len(entries)} task(s): {tally}; cost {cost_text}; exit {code}; see {out}/summary.md")


# ------------------------------------------------------------------------------------ merge


def read_batch_dir(directory: Path) -> list[Entry]:
    """The tasks of one batch output directory: per results.jsonl, or its task directories."""
    entries: list[Entry] = []
    listing = directory / "results.jsonl"
    if listing.is_file():
        for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                name = str(record["task"])
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"{listing}:{n}: not a result line") from None
            if not _TASK_DIR_NAME.match(name):
                raise ConfigError(f"{listing}:{n}: task: {name!r} is not a task name")
            on_disk = read_result(directory / name)
            if on_disk is not None and on_disk.get("task") == name:
                entries.append(Entry(name, on_disk, directory / name))
            else:
                entries.append(Entry(name, record, None))
        return entries
    for sub in sorted(p for p in directory.iterdir() if p.is_dir() and _TASK_DIR_NAME.match(p.name)):
        result = read_result(sub)
        if result is not None and result.get("task") == sub.name:
            entries.append(Entry(sub.name, result, sub))
    return entries


def _rank(entry: Entry) -> tuple[int, str]:
    status = entry.result.get("status")
    level = 2 if status in FINAL_STATUSES else (0 if status == SKIPPED else 1)
    return level, str(entry.result.get("started_at") or "")


def _title(directory: Path) -> str | None:
    try:
        first = (directory / "summary.md").read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError):
        return None
    m = _TITLE.match(first)
    return m.group(1).replace("\\|", "|").replace("\\`", "`").replace("\\\\", "\\") if m else None


def cmd_merge(args: argparse.Namespace) -> int:
    out = Path(args.out).expanduser().resolve()
    chosen: dict[str, Entry] = {}
    titles: list[str] = []
    for raw in args.dirs:
        directory = Path(raw).expanduser().resolve()
        if not directory.is_dir():
            raise ConfigError(f"{raw}: no such directory")
        found = read_batch_dir(directory)
        if not found:
            raise ConfigError(f"{raw}: no batch outputs here (no results.jsonl and no task directory with a "
                              "result.json)")
        titles += [t] if (t := _title(directory)) else []
        for entry in found:
            previous = chosen.get(entry.name)
            if previous is not None and previous.dir != entry.dir:
                print(f"astra-run merge: task {entry.name} is in more than one input; keeping the "
                      f"{'latest final' if _rank(entry) > _rank(previous) else 'earlier'} one", file=sys.stderr)
            if previous is None or _rank(entry) > _rank(previous):
                chosen[entry.name] = entry
    try:
        out.mkdir(parents=True, exist_ok=True)
        merged = [_copy_into(out, entry) for _, entry in sorted(chosen.items())]
    except OSError as exc:
        raise InfraError(f"cannot write the merged outputs into {out}: {exc}") from None
    code = batch_exit_code(e.result for e in merged)
    title = titles[0] if titles and all(t == titles[0] for t in titles) else f"merge of {len(args.dirs)} directories"
    summary = write_aggregates(out, merged, title=title, exit_code=code)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        append_step_summary(summary)
    _print_total(merged, code, out)
    return code


def _copy_into(out: Path, entry: Entry) -> Entry:
    if entry.dir is None:
        return entry
    dest = out / entry.name
    if dest.resolve() == entry.dir.resolve():
        return entry
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(entry.dir, dest, symlinks=True)
    return Entry(entry.name, entry.result, dest)
