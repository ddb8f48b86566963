"""Command-line parsing only (SPEC §1); every command's work lives in its own module.

Exit codes: 0 success, 1 failed, 2 usage/configuration, 3 limit, 4 infrastructure,
130/143 interrupted. A configuration error prints `FILE:LINE: field: problem` and no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runner import __version__
from runner.errors import AstraError, ConfigError

if TYPE_CHECKING:
    from runner.settings import Flags, Settings
    from runner.task import LoadedTask


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="astra-run", description="Run an AI coding agent headlessly, safely.")
    p.add_argument("--version", action="version", version=f"astra-run {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run one task (a task file, or --repo and --prompt)")
    run.add_argument("task", nargs="?", help="the task file (YAML)")
    run.add_argument("--repo", help="a local path or git URL (a task without a file)")
    run.add_argument("--prompt", help="what the agent should do (a task without a file)")
    run.add_argument("--out", help="output directory (default: the task's outputs.dir, astra-out)")
    run.add_argument("--model", help="model id, or scripted:PATH")
    run.add_argument("--sandbox", choices=["docker", "local"], help="sandbox backend (default docker)")
    run.add_argument("--keep", action="store_true", help="keep the worktree after the run")
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="also print the model's text")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="print only the final summary")
    run.add_argument("--json", action="store_true",
                     help="print the run's events as JSON lines on stdout (the trajectory's) instead of the console")
    run.add_argument("--resume", metavar="OUT_DIR", help="continue a run that stopped on a limit, an interrupt "
                     "or an infrastructure error, from its saved conversation")
    run.add_argument("--max-turns", type=int, help="with --resume: the run's new turn limit (all parts together)")
    run.add_argument("--max-cost-usd", type=float, help="with --resume: the run's new cost limit (all parts together)")
    run.add_argument("--timeout", help="with --resume: the wall clock for the resumed part (90s, 30m, 1h)")

    val = sub.add_parser("validate", help="check a task file or a batch manifest: every problem at once; exit 0 or 2")
    val.add_argument("task", metavar="FILE", help="a task file or a batch manifest (YAML)")
    val.add_argument("--no-credentials", action="store_true",
                     help="do not ask whether the provider's credentials are here (a lint job without secrets)")

    pol = sub.add_parser("policy", help="would the task's policy allow this bash command? why? (exit 0/1)")
    pol.add_argument("task")
    pol.add_argument("words", nargs="+", metavar="-- COMMAND", help="the bash command line")

    sub.add_parser("cleanup", help="remove leftover sandboxes and worktrees of dead runs")

    batch = sub.add_parser("batch", help="run the tasks of a batch manifest")
    batch.add_argument("manifest")
    batch.add_argument("--out", default=None, help="output directory (default: $ASTRA_OUT, else astra-out)")
    batch.add_argument("-j", "--jobs", type=int, default=1)
    batch.add_argument("--shard", help="I/N: run only this deterministic share of the tasks")
    batch.add_argument("--resume", action="store_true",
                       help="skip tasks whose result is final (success, failed, limit) and whose task is unchanged")
    batch.add_argument("--retry-failed", action="store_true",
                       help="like --resume, but also run failed and limit tasks again")
    batch.add_argument("--max-cost-usd", type=float, help="no new task starts once the batch spent this")
    batch.add_argument("--fail-fast", action="store_true", help="stop starting tasks after the first failure")
    batch.add_argument("--dry-run", action="store_true", help="validate every task and print what would run")

    merge = sub.add_parser("merge", help="combine the outputs of batch shards")
    merge.add_argument("dirs", nargs="+")
    merge.add_argument("--out", required=True)

    gh = sub.add_parser("github", help="run inside a GitHub Actions job")
    gh.add_argument("--publish", choices=["none", "comment", "branch", "pr"], default="comment")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from runner import signals

    signals.install_early()  # first: a signal from now on is remembered, never a silent death
    args = _parser().parse_args(argv)
    if args.command not in ("run", "batch", "github") and (signum := signals.restore_defaults()) is not None:
        return 128 + signum  # a command that runs nothing: stopped before it began
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "policy":
            from runner.policy.explain import cmd_policy

            return cmd_policy(args.task, args.words, sys.stdout)
        if args.command == "cleanup":
            return cmd_cleanup()
        if args.command == "batch":
            from runner.batch import cmd_batch

            return int(cmd_batch(args))
        if args.command == "merge":
            from runner.batch import cmd_merge

            return int(cmd_merge(args))
        if args.command == "github":
            from runner.github import cmd_github

            return int(cmd_github(args))
    except ConfigError as exc:
        print(f"astra-run: {exc}", file=sys.stderr)
        return 2
    except AstraError as exc:
        print(f"astra-run: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `astra-run validate x | head`: the reader left; nothing is wrong
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
        return 0
    return 2


# ------------------------------------------------------------------------------------ run


def load_for_run(args: argparse.Namespace) -> tuple[LoadedTask, Settings, Flags]:
    """The task with flags and settings applied, checked in full (file and machine) before
    anything is created: every problem at once, exit 2."""
    from runner import preflight
    from runner.settings import Flags, load_settings
    from runner.task import build_task, load_task

    settings = load_settings()
    if args.task and (args.repo or args.prompt):
        raise ConfigError("give a task file, or --repo and --prompt, not both")
    if args.task:
        task_file = args.task

        def load() -> LoadedTask:
            return load_task(task_file)
    elif args.repo and args.prompt:
        repo, prompt = args.repo, args.prompt

        def load() -> LoadedTask:
            return build_task({"name": "adhoc", "repo": repo, "prompt": prompt})
    else:
        raise ConfigError("give a task file, or both --repo and --prompt")
    flags = Flags(out=args.out, model=args.model, sandbox=args.sandbox, keep=args.keep)
    return preflight.checked(load, settings, flags), settings, flags


def cmd_run(args: argparse.Namespace) -> int:
    from runner.reports.console import Console

    if args.resume:
        from runner.resume import cmd_resume

        return cmd_resume(args)
    if args.max_turns is not None or args.max_cost_usd is not None or args.timeout is not None:
        raise ConfigError("--max-turns, --max-cost-usd and --timeout go with --resume (a task sets its own "
                          "limits; ASTRA_MAX_TURNS, ASTRA_MAX_COST_USD and ASTRA_TIMEOUT override them)")
    task, settings, flags = load_for_run(args)
    console = None if args.json else Console(sys.stdout, verbosity=-1 if args.quiet else (1 if args.verbose else 0))
    import asyncio  # here, not at the top: main() must install its signal handlers first, at once

    return asyncio.run(_run_with_signals(task, settings, flags.keep, console, json_out=args.json))


async def _run_with_signals(task: LoadedTask, settings: Settings, keep: bool, console: object,
                            json_out: bool = False, **extra: object) -> int:
    from runner.run import Interrupt, install_signal_handlers, run_task

    interrupt = Interrupt()
    install_signal_handlers(interrupt)
    result = await run_task(task, settings, keep=keep, console=console, interrupt=interrupt,  # type: ignore[arg-type]
                            event_stream=sys.stdout if json_out else None, **extra)  # type: ignore[arg-type]
    return interrupt.exit_code(result)


# ------------------------------------------------------------------------------- validate


def cmd_validate(args: argparse.Namespace) -> int:
    from runner.validate import validate

    return validate(args.task, sys.stdout, check_credentials=not args.no_credentials)


# -------------------------------------------------------------------------------- cleanup


def cmd_cleanup() -> int:
    from runner.settings import load_settings
    from runner.workspace import cleanup_dead_runs

    settings = load_settings()
    containers: list[str] = []
    code = 0
    try:  # first: a dead run's container may still hold its worktree's file system
        from runner.sandbox.docker import reap_leftovers

        containers = reap_leftovers()
    except AstraError as exc:
        print(f"astra-run: docker: {exc} (containers not checked)", file=sys.stderr)
        code = exc.exit_code
    runs = cleanup_dead_runs(settings.cache)  # each worktree's own file system unmounted, its image deleted
    from runner.objectstore import prune

    stores = prune(settings.cache)  # after the reaping: only live runs still hold a store
    print(f"removed {len(containers)} leftover sandbox container(s) and {len(runs)} worktree(s) of dead runs")
    for name in [*containers, *runs]:
        print(f"  {name}")
    print(f"removed {len(stores)} object store(s) no run is using")
    return code
