"""The batch manifest (SPEC §5): which tasks a batch runs, validated before anything runs.

    defaults: {...}            # merged under every task (the task's own values win)
    tasks: ["tasks/*.yaml"]    # paths relative to the manifest; globs allowed (`**` too)
    matrix:                    # optional: one template over many repos / refs
      template: refactor.yaml
      repos: ["../svc-a", "https://example.org/svc-b.git"]
      refs: [main]

Every task file is loaded and validated first; if the manifest or any task file is invalid the
batch exits 2 with every problem as `FILE:LINE: field: problem` and nothing runs. Task names must
be unique (ignoring case: the output directories must not collide on macOS or Windows).

A matrix cell's task is the template with `repo` (relative paths: to the manifest) and `ref` set
and its name suffixed `.<repo>` and, when `refs` is given, `.<ref>` (e.g. `refactor.svc-a.main`).

Sharding (`--shard I/N`, I counted from 0): the tasks sorted by name, task k goes to shard k mod N.
Every shard reads the same manifest, so the shards together cover every task exactly once.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from runner import preflight
from runner.batch.aggregate import AGGREGATE_FILES
from runner.errors import ConfigError
from runner.problems import ConfigProblems, Layer, Layers, Problem, from_validation, messages_of
from runner.settings import Flags, Settings, apply_overrides
from runner.task import LoadedTask, TaskSpec, build_task, deep_merge, is_git_url, load_task
from runner.yamlio import Positions, YamlDoc, is_dir, is_file, load_yaml_file

SHARD_ENV = "ASTRA_SHARD"
SHARD_COUNT_ENV = "ASTRA_SHARD_COUNT"
K8S_INDEX_ENV = "JOB_COMPLETION_INDEX"


class MatrixSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    template: str
    """A task file (relative to the manifest); its name gets a suffix per cell."""
    repos: list[str] = Field(min_length=1)
    refs: list[str] | None = Field(default=None, min_length=1)
    """None: each repo's HEAD (or the template's `ref`), and no ref suffix in the name."""


class ManifestSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    defaults: dict[str, Any] = Field(default_factory=dict)
    tasks: list[str] = Field(default_factory=list)
    matrix: MatrixSpec | None = None

    @model_validator(mode="after")
    def _something(self) -> ManifestSpec:
        if not self.tasks and self.matrix is None:
            raise ValueError("a manifest needs `tasks`, a `matrix`, or both")
        return self


@dataclass(frozen=True)
class PlannedTask:
    """One task of the batch, validated, with its outputs directory set to OUT/<name>."""

    name: str
    origin: str
    """Where it came from, for messages: a task file, or the template and its matrix cell."""
    task: LoadedTask


def display_path(path: Path) -> str:
    """A path as the user would write it: relative to the current directory when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def _repo_label(repo: str) -> str:
    tail = repo.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return _slug(tail.removesuffix(".git"))


def _repo_labels(repos: Sequence[str]) -> list[str]:
    """A name suffix per repo: its last path part; repos that share one are numbered 1, 2, ...
    among themselves, in the order listed (`svc-1`, `svc-2`), skipping a number another repo's
    own label already takes."""
    plain = [_repo_label(r) for r in repos]
    taken = set(plain)
    counts: dict[str, int] = {}
    labels = []
    for label in plain:
        if plain.count(label) == 1:
            labels.append(label)
            continue
        n = counts.get(label, 0)
        while True:
            n += 1
            candidate = f"{label}-{n}"
            if candidate not in taken:
                break
        counts[label] = n
        taken.add(candidate)
        labels.append(candidate)
    return labels


def load_manifest(
    path: str | os.PathLike[str], settings: Settings, out: Path, *, check_machine: bool = True,
    check_credentials: bool = True, loaded: YamlDoc | None = None, credential_hint: str = "",
) -> list[PlannedTask]:
    """Every task of the manifest, validated, sorted by name. Raises ConfigError with all problems.

    Each problem is reported once, where it was written: a bad default at the manifest's line
    (not once per task), a matrix cell's repo or ref at its line in `matrix:`, missing
    credentials once per provider at the manifest's line. With `check_machine`, every task is
    also preflighted (git refs, model, image) before anything runs. `loaded`: the manifest
    already read (`validate` reads a file once).
    """
    file = Path(path)
    source = str(path)
    data, root, problems = loaded if loaded is not None else load_yaml_file(file, "manifest file", source=source)
    errors: list[Problem | str] = list(problems)
    manifest = Layers.of(source, root)
    if not isinstance(data, dict):
        raise ConfigProblems([*errors, manifest.problem((), "a manifest is a mapping with `tasks` and/or `matrix`")])
    try:
        spec = ManifestSpec.model_validate(data)
    except ValidationError as exc:
        errors += from_validation(exc, manifest)
        spec = _usable_part(data)  # the rest is still checked: every problem in one pass
    base = file.resolve().parent
    defaults = Layer(source, root, prefix=("defaults",))
    machine = preflight.Machine()
    errors += _check_defaults(spec.defaults, source, root)
    planned: list[PlannedTask] = []
    partial: list[LoadedTask] = []
    seen: set[Path] = set()

    def on_error(exc: ConfigError) -> list[Problem | str]:
        return _with_preflight(exc, settings, out, check_machine, machine, partial)

    for i, pattern in enumerate(spec.tasks):
        files = _expand(base, pattern)
        if not files:
            errors.append(manifest.problem(("tasks", i), f"{pattern!r} matches no file"))
        for task_file in files:
            if task_file in seen:
                continue  # listed twice (two globs): run once
            seen.add(task_file)
            shown = display_path(task_file)
            try:
                task = load_task(shown, overrides=spec.defaults, overrides_layer=defaults)
            except ConfigError as exc:
                errors += on_error(exc)
                continue
            planned.append(PlannedTask(task.spec.name, shown, task))
    if spec.matrix is not None:
        planned += _matrix_tasks(spec.matrix, spec.defaults, base, source, root, errors, on_error)
    errors += _check_names(planned)
    final = []
    for p in planned:
        task = apply_overrides(p.task, settings, Flags(out=str(out / p.name)))
        errors += preflight.find(task, check_git=check_machine, check_credentials=False, machine=machine)
        final.append(PlannedTask(p.name, p.origin, task))
    if check_credentials:
        errors += preflight.manifest_credentials([*(p.task for p in final), *partial], source, root,
                                                 credential_hint)
    if errors:
        raise ConfigProblems(errors)
    return sorted(final, key=lambda p: p.name)


def _usable_part(data: Mapping[str, Any]) -> ManifestSpec:
    """What of a manifest that does not fit the schema can still be checked: the defaults if
    they are a mapping, the task patterns that are text, the matrix if it is valid."""
    raw_defaults = data.get("defaults")
    raw_tasks = data.get("tasks")
    matrix = None
    if data.get("matrix") is not None:
        try:
            matrix = MatrixSpec.model_validate(data["matrix"])
        except ValidationError:
            matrix = None
    return ManifestSpec.model_construct(
        defaults=dict(raw_defaults) if isinstance(raw_defaults, dict) else {},
        tasks=[t for t in raw_tasks if isinstance(t, str)] if isinstance(raw_tasks, list) else [],
        matrix=matrix,
    )


def _with_preflight(
    exc: ConfigError, settings: Settings, out: Path, check_machine: bool, machine: preflight.Machine,
    partial_tasks: list[LoadedTask],
) -> list[Problem | str]:
    """A task's problems, and the machine checks of what of it could be built (one pass); the
    part that could be built joins `partial_tasks` (its provider's credentials are still asked)."""
    found = messages_of(exc)
    if isinstance(exc, ConfigProblems) and exc.partial is not None:
        name = exc.partial.spec.name
        partial = apply_overrides(exc.partial, settings, Flags(out=str(out / name)))
        found += preflight.find(partial, check_git=check_machine, check_credentials=False,
                                machine=machine, skip=exc.unchecked)
        if not exc.unchecked & {"model", "provider", "name"}:
            partial_tasks.append(partial)
    return found


def _expand(base: Path, pattern: str) -> list[Path]:
    full = pattern if os.path.isabs(pattern) else str(base / pattern)
    if glob.has_magic(pattern):
        return sorted(Path(p).resolve() for p in glob.glob(full, recursive=True) if is_file(Path(p)))
    return [Path(full).resolve()] if is_file(Path(full)) else []


def _check_defaults(defaults: Mapping[str, Any], source: str, root: Positions) -> list[Problem]:
    """The defaults' own problems, at the manifest's lines (the tasks' copies of them dedupe away)."""
    errors = []
    for key in defaults:
        if key == "name":
            errors.append(Problem(source, root.line(("defaults", key)), "defaults.name",
                                  "a name cannot be a default (every task needs its own)"))
    if errors:
        return errors
    dummy = Layers((Layer("<defaults>", Positions()), Layer(source, root, prefix=("defaults",))))
    try:  # the defaults' types, checked once here, even when no task file matched
        TaskSpec.model_validate(deep_merge({"name": "defaults", "prompt": "-"}, defaults))
    except ValidationError as exc:
        errors += [p for p in from_validation(exc, dummy) if p.source == source]
    return errors


def _matrix_tasks(
    matrix: MatrixSpec, defaults: Mapping[str, Any], base: Path, source: str, root: Positions,
    errors: list[Problem | str], on_error: Callable[[ConfigError], list[Problem | str]],
) -> list[PlannedTask]:
    template = (base / matrix.template).resolve()
    shown = display_path(template)
    try:
        data, troot, problems = load_yaml_file(template, "matrix template", source=shown)
    except ConfigError as exc:
        if "no such" in str(exc) or "not a regular file" in str(exc) or "directory" in str(exc):
            errors.append(Problem(source, root.line(("matrix", "template")), "matrix.template", str(exc)))
        else:
            errors += messages_of(exc)
        return []
    errors += problems
    if not isinstance(data, dict):
        errors.append(Problem(shown, 1, "(top level)", "expected a mapping of keys"))
        return []
    labels = _repo_labels(matrix.repos)
    refs: list[str | None] = list(matrix.refs) if matrix.refs else [None]
    defaults_layer = Layer(source, root, prefix=("defaults",))
    out = []
    for ri, repo in enumerate(matrix.repos):
        label = labels[ri]
        if is_git_url(repo):
            resolved = repo
        else:
            resolved = str((base / repo).resolve())
            if not is_dir(Path(resolved)):
                errors.append(Problem(source, root.line(("matrix", "repos", ri)), f"matrix.repos[{ri}]",
                                      f"{resolved} does not exist or is not a directory"))
                continue
        for rj, ref in enumerate(refs):
            cell = deep_merge(defaults, data)
            cell["repo"] = resolved
            suffix = f".{label}" + (f".{_slug(ref)}" if ref is not None else "")
            cell_fields: dict[tuple[int | str, ...], tuple[int | str, ...]] = {("repo",): ("matrix", "repos", ri)}
            if ref is not None:
                cell["ref"] = ref
                cell_fields[("ref",)] = ("matrix", "refs", rj)
            if isinstance(cell.get("name"), str):
                cell["name"] = cell["name"] + suffix
            origin = f"{shown} (matrix: repo {repo}" + (f", ref {ref})" if ref is not None else ")")
            layers = Layers((Layer(shown, troot), Layer(source, root, only=cell_fields), defaults_layer))
            try:
                task = build_task(cell, root=troot, source=shown, base_dir=template.parent, path=template,
                                  layers=layers)
            except ConfigError as exc:
                errors += on_error(exc)
                continue
            out.append(PlannedTask(task.spec.name, origin, task))
    return out


def _check_names(planned: Sequence[PlannedTask]) -> list[Problem]:
    """Names that would collide in OUT/, at the line of the later task's `name`."""
    errors = []
    first: dict[str, PlannedTask] = {}
    for p in planned:
        if p.name.startswith(".") or p.name in AGGREGATE_FILES:
            errors.append(p.task.problem(("name",), f"{p.name!r} cannot be a batch task name "
                                         "(it would collide with OUT/ itself or an aggregate file)"))
            continue
        other = first.setdefault(p.name.lower(), p)
        if other is not p:
            same = "" if other.name == p.name else f" (names differ only in case: {other.name!r})"
            where = other.task.where("name").rsplit(": ", 1)[0]  # FILE:LINE
            also = "" if other.origin.split(" (matrix")[0] == where.split(":")[0] and "(matrix" not in other.origin \
                else f" ({other.origin})"
            errors.append(p.task.problem(("name",), f"duplicate task name {p.name!r}{same}: {where}{also} already "
                                         "has it; task names must be unique in a batch"))
    return errors


# ------------------------------------------------------------------------------------ shards


@dataclass(frozen=True)
class Shard:
    index: int
    """0-based, like Kubernetes' JOB_COMPLETION_INDEX."""
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, where: str = "--shard") -> Shard:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise ConfigError(f"{where}: {text!r} is not a shard I/N with 0 <= I < N (I counts from 0)")
    return Shard(int(m.group(1)), int(m.group(2)))


def shard_from(flag: str | None, env: Mapping[str, str]) -> Shard | None:
    """--shard, else $ASTRA_SHARD (I/N), else $JOB_COMPLETION_INDEX with $ASTRA_SHARD_COUNT."""
    if flag:
        return parse_shard(flag)
    if env.get(SHARD_ENV):
        return parse_shard(env[SHARD_ENV], SHARD_ENV)
    if env.get(K8S_INDEX_ENV):
        count = env.get(SHARD_COUNT_ENV)
        if not count:
            raise ConfigError(f"{K8S_INDEX_ENV} is set (a Kubernetes Indexed Job) but {SHARD_COUNT_ENV} is not: "
                              "set it to the Job's `completions`, or pass --shard I/N")
        return parse_shard(f"{env[K8S_INDEX_ENV]}/{count}", f"{K8S_INDEX_ENV}/{SHARD_COUNT_ENV}")
    return None


def select_shard(tasks: Sequence[PlannedTask], shard: Shard | None) -> list[PlannedTask]:
    ordered = sorted(tasks, key=lambda p: p.name)
    if shard is None:
        return ordered
    return [p for k, p in enumerate(ordered) if k % shard.count == shard.index]
