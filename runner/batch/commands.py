"""`astra-run batch` and `astra-run merge` (SPEC §1, §5)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from runner.batch.aggregate import (
    AGGREGATE_FILES,
    FINAL_STATUSES,
    SKIPPED,
    Entry,
    batch_exit_code,
    read_result,
    write_aggregates,
)
from runner.batch.manifest import PlannedTask, Shard, load_manifest, select_shard, shard_from
from runner.batch.progress import Progress, is_live
from runner.batch.scheduler import Batch, BatchOptions, start_policy
from runner.digest import task_digest
from runner.errors import ConfigError, InfraError
from runner.outlock import hold_output_dir
from runner.reports.summary import append_step_summary, format_cost
from runner.sandbox.local import LOCAL_WARNING
from runner.settings import Settings, load_settings
from runner.task import NAME_RE

log = logging.getLogger(__name__)
_TITLE = re.compile(r"^## astra-run batch: (.+)$")


def is_task_dir_name(name: str) -> bool:
    """A name a task directory of a batch can have (a task name; never `.`-first or an aggregate)."""
    return bool(NAME_RE.match(name)) and not name.startswith(".") and name not in AGGREGATE_FILES


def split_resumed(
    tasks: Sequence[PlannedTask], out: Path, *, retry_failed: bool = False
) -> tuple[list[Entry], list[PlannedTask]]:
    """(tasks whose OUT/<task>/result.json can stand, tasks still to run).

    A result stands when it is final (success, failed, limit; only success with `retry_failed`)
    and was made from this very task: its `task_digest` matches the task as it is now (the file,
    its prompt and the manifest's defaults, runner/digest.py). An edited task runs again."""
    keep = {"success"} if retry_failed else FINAL_STATUSES
    done: list[Entry] = []
    todo: list[PlannedTask] = []
    for p in tasks:
        result = read_result(out / p.name)
        if (result is not None and result.get("status") in keep and result.get("task") == p.name
                and result.get("task_digest") == task_digest(p.task)):
            done.append(Entry(p.name, result, out / p.name))
        else:
            todo.append(p)
    return done, todo


DEFAULT_OUT = "astra-out"


def cmd_batch(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.jobs < 1:
        raise ConfigError(f"-j/--jobs: {args.jobs} is not a number of parallel tasks (at least 1)")
    if args.max_cost_usd is not None and not args.max_cost_usd > 0:
        raise ConfigError(f"--max-cost-usd: {args.max_cost_usd} must be greater than zero")
    shard = shard_from(args.shard, os.environ)
    out = Path(args.out or settings.out or DEFAULT_OUT).expanduser().resolve()  # --out, $ASTRA_OUT, default
    planned = load_manifest(args.manifest, settings, out)
    mine = select_shard(planned, shard)
    if getattr(args, "dry_run", False):
        from runner.validate import print_task_table

        where = f"shard {shard}: {len(mine)} of {len(planned)} task(s)" if shard else f"{len(mine)} task(s)"
        print(f"astra-run batch: dry run: {where} would run, outputs in {out}; nothing was run")
        print_task_table(mine, sys.stdout)
        return 0
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InfraError(f"cannot create the output directory {out}: {exc}") from None
    with hold_output_dir(out):  # one batch per output directory: a second one exits 2, writing nothing
        return _run_batch(args, settings, out, planned, mine, shard)


def _run_batch(
    args: argparse.Namespace, settings: Settings, out: Path, planned: Sequence[PlannedTask],
    mine: Sequence[PlannedTask], shard: Shard | None,
) -> int:
    resume = args.resume or args.retry_failed  # --retry-failed: a resume that also reruns failed and limit
    done, todo = split_resumed(mine, out, retry_failed=args.retry_failed) if resume else ([], list(mine))
    if local := [p.name for p in todo if p.task.spec.sandbox.backend == "local"]:
        shown = ", ".join(local[:10]) + (f" and {len(local) - 10} more" if len(local) > 10 else "")
        print(f"astra-run batch: warning: {len(local)} task(s) use the local sandbox ({shown}): {LOCAL_WARNING}",
              file=sys.stderr, flush=True)

    progress = Progress(sys.stdout, total=len(mine), live=is_live(sys.stdout))
    where = f"shard {shard} ({len(mine)} of {len(planned)} tasks)" if shard else f"{len(mine)} task(s)"
    progress.note(f"{where}, {len(todo)} to run, {args.jobs} at a time; outputs in {out}")
    for entry in done:
        progress.skip(entry.name, "resumed", entry.result)
    cap, stagger = start_policy(todo, args.jobs)
    options = BatchOptions(jobs=args.jobs, max_cost_usd=args.max_cost_usd, fail_fast=args.fail_fast,
                           start_cap=cap, stagger_s=stagger)
    batch = Batch(todo, done, settings, options, progress)
    title = Path(args.manifest).name

    def finish() -> int:
        """The aggregates of the tasks as they are now, the step summary, the closing line."""
        progress.close()
        entries = batch.entries_now()
        code = batch_exit_code([e.result for e in entries], batch.interrupt.signum)
        failed: list[str] = []
        summary = write_aggregates(out, entries, title=title, exit_code=code, failed=failed)
        for problem in failed:  # a full disk: every aggregate that fits is written; the batch is an error
            print(f"astra-run batch: {problem}", file=sys.stderr)
        if failed and code in (0, 1, 3):
            code = 4
        append_step_summary(summary)  # when $GITHUB_STEP_SUMMARY is set; the tasks' own are not
        _print_total(entries, code, out)
        return code

    def second_signal(signum: int) -> None:
        """A second SIGINT/SIGTERM: stop waiting for the running tasks' cleanup. The aggregates are
        written as they are (tasks still stopping are `interrupted`), then the process exits at once
        with the first signal's code; sandboxes still being removed are left to `astra-run cleanup`."""
        first = batch.interrupt.signum or signum
        code = 128 + first
        try:
            progress.note(f"{signal.Signals(signum).name} again: exiting now without waiting for the running "
                          "tasks to clean up (`astra-run cleanup` removes what they leave)")
            batch.mark_running_interrupted(first)
            code = finish()
        except BaseException:  # best effort: the exit must happen whatever the outputs do
            log.debug("aggregates on the second signal failed", exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    batch.on_second_signal = second_signal
    try:
        asyncio.run(batch.run())
    except Exception as exc:  # a bug of the batch runner itself: its tasks were stopped cleanly
        finish()
        first: BaseException = exc
        while isinstance(first, BaseExceptionGroup) and first.exceptions:
            first = first.exceptions[0]  # from the workers' TaskGroup
        raise InfraError(f"internal error in the batch runner: {type(first).__name__}: {first}") from exc
    return finish()


def _print_total(entries: Sequence[Entry], code: int, out: Path, command: str = "batch") -> None:
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
    print(f"astra-run {command}: {len(entries)} task(s): {tally}; cost {cost_text}; exit {code}; see {out}/summary.md")


# ------------------------------------------------------------------------------------ merge


def read_batch_dir(directory: Path) -> list[Entry]:
    """The tasks of one batch output directory: per results.jsonl, or its task directories."""
    try:
        return _read_batch_dir(directory)
    except (OSError, UnicodeDecodeError) as exc:  # unreadable, or not text: a corrupt or foreign file
        where = exc.filename if isinstance(exc, OSError) and exc.filename else directory / "results.jsonl"
        raise ConfigError(f"{where}: cannot read it: {exc}") from None


def _read_batch_dir(directory: Path) -> list[Entry]:
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
            if not is_task_dir_name(name):
                raise ConfigError(f"{listing}:{n}: task: {name!r} is not a task name")
            on_disk = read_result(directory / name)
            if on_disk is not None and on_disk.get("task") == name:
                entries.append(Entry(name, on_disk, directory / name))
            else:
                entries.append(Entry(name, record, None))
        return entries
    for sub in sorted(p for p in directory.iterdir() if p.is_dir() and is_task_dir_name(p.name)):
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
    except (OSError, UnicodeDecodeError, IndexError):
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
    append_step_summary(summary)  # when $GITHUB_STEP_SUMMARY is set
    _print_total(merged, code, out, "merge")
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
