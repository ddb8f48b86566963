"""`astra-run validate FILE` (SPEC §1): a task file or a batch manifest, every problem at once.

Which one a file is, is told by its keys: a manifest has `tasks`, `matrix` or `defaults` and no
`name` or prompt. A valid task prints what would run (repo, model, sandbox, limits, the
effective policy); a valid manifest prints the table of its tasks, as `batch --dry-run` does.
Missing credentials are a problem (exit 2) unless `--no-credentials` is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from runner.yamlio import YamlDoc, load_yaml_file

if TYPE_CHECKING:
    from runner.batch.manifest import PlannedTask
    from runner.settings import Settings

MANIFEST_KEYS = frozenset({"tasks", "matrix", "defaults"})
TASK_KEYS = frozenset({"name", "prompt", "prompt_file"})
NO_CREDENTIALS_HINT = (" (absent on purpose, as in a fork's pull request? "
                       "`astra-run validate --no-credentials` skips this check)")


def looks_like_manifest(data: object) -> bool:
    """A manifest has `tasks`, `matrix` or `defaults` and no `name` or prompt."""
    return isinstance(data, dict) and bool(MANIFEST_KEYS & data.keys()) and not (TASK_KEYS & data.keys())


def validate(path: str, out: TextIO, *, check_credentials: bool = True) -> int:
    """Every problem of the file (exit 2) or what it would run (exit 0). The file is read once.

    Missing credentials are a problem like any other; `check_credentials=False`
    (`--no-credentials`) leaves them out, for a job where the secrets are absent on purpose."""
    from runner.settings import load_settings

    loaded = load_yaml_file(Path(path), "file")
    if looks_like_manifest(loaded[0]):
        return _manifest(path, out, load_settings(), loaded, check_credentials)
    return _task(path, out, loaded, check_credentials)


def _manifest(path: str, out: TextIO, settings: Settings, loaded: YamlDoc, check_credentials: bool) -> int:
    from runner.batch.commands import DEFAULT_OUT
    from runner.batch.manifest import load_manifest

    planned = load_manifest(path, settings, Path(settings.out or DEFAULT_OUT).expanduser().resolve(),
                            check_credentials=check_credentials, loaded=loaded,
                            credential_hint=NO_CREDENTIALS_HINT)
    out.write(f"{path}: valid batch manifest, {len(planned)} task(s)"
              + ("" if check_credentials else " (credentials not checked: --no-credentials)") + "\n")
    print_task_table(planned, out)
    return 0


def print_task_table(planned: Sequence[PlannedTask], out: TextIO) -> None:
    """One line per task: what would run, where, with which model and limits."""
    header = ("task", "repo", "model", "sandbox", "limits", "verify", "from")
    rows = [header]
    for p in planned:
        spec = p.task.spec
        lim = spec.limits
        rows.append((
            p.name,
            p.task.repo + (f" @ {spec.ref}" if spec.ref else ""),
            spec.model or "",
            spec.sandbox.backend + (f" {spec.sandbox.image}" if spec.sandbox.backend == "docker" else ""),
            f"{lim.max_turns} turn{'' if lim.max_turns == 1 else 's'}, ${lim.max_cost_usd:g}, {lim.timeout:g}s",
            str(len(spec.verify)),
            p.origin,
        ))
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(len(header))]
    for row in rows:
        cells = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(row, widths, strict=True)]
        out.write("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() + "\n")


def _task(path: str, out: TextIO, loaded: YamlDoc, check_credentials: bool) -> int:
    from runner import preflight
    from runner.policy import Policy
    from runner.settings import Flags, load_settings
    from runner.task import load_task

    machine = preflight.Machine(credential_hint=NO_CREDENTIALS_HINT)
    task = preflight.checked(lambda: load_task(path, loaded=loaded), load_settings(), Flags(),
                             check_credentials=check_credentials, machine=machine)
    spec = task.spec
    out.write(f"{path}: valid task {spec.name!r}\n")
    out.write(f"  repo:    {task.repo}" + (f" @ {spec.ref}" if spec.ref else "") + "\n")
    out.write(f"  model:   {spec.model}\n")
    if not (spec.model or "").startswith("scripted:"):
        said = "found" if check_credentials else "not checked (--no-credentials)"
        out.write(f"  provider: {spec.provider}, credentials {said}\n")
    out.write(f"  sandbox: {spec.sandbox.backend} ({spec.sandbox.image}, network {spec.sandbox.network} "
              f"in the agent phase, setup timeout {spec.sandbox.setup_timeout:g}s)\n")
    lim = spec.limits
    turns = "1 turn" if lim.max_turns == 1 else f"{lim.max_turns} turns"
    out.write(f"  limits:  {turns}, ${lim.max_cost_usd:g}, {lim.timeout:g}s wall clock, "
              f"{lim.tool_timeout:g}s per tool call, breaker at {lim.circuit_breaker}\n")
    out.write(f"  verify:  {', '.join(v.name for v in spec.verify) or '(none)'}\n")
    out.write(f"  outputs: {spec.outputs.dir}\n")
    for note in machine.notes:
        out.write(f"  note:    {note}\n")
    out.write("effective policy" + (" (the default: the task sets none)" if spec.policy is None else "") + ":\n")
    for line in Policy.from_spec(spec.policy).describe().splitlines():
        out.write("  " + line + "\n")
    return 0
