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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from runner.batch.aggregate import AGGREGATE_FILES
from runner.errors import ConfigError
from runner.models.scripted import PREFIX as SCRIPTED
from runner.models.scripted import resolve_script
from runner.settings import Flags, Settings, apply_overrides
from runner.task import (
    LoadedTask,
    TaskSpec,
    build_task,
    deep_merge,
    is_git_url,
    line_of,
    load_task,
    parse_yaml,
    read_yaml_file,
    validation_messages,
)

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


def load_manifest(path: str | os.PathLike[str], settings: Settings, out: Path) -> list[PlannedTask]:
    """Every task of the manifest, validated, sorted by name. Raises ConfigError with all problems."""
    file = Path(path)
    source = str(path)
    data, root = read_yaml_file(file, "manifest file")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: (top level): a manifest is a mapping with `tasks` and/or `matrix`")
    try:
        spec = ManifestSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(validation_messages(source, root, exc))) from None
    base = file.resolve().parent
    errors = _check_defaults(spec.defaults, source, root)
    planned: list[PlannedTask] = []
    seen: set[Path] = set()
    for i, pattern in enumerate(spec.tasks):
        files = _expand(base, pattern)
        if not files:
            errors.append(f"{source}:{line_of(root, 'tasks', i)}: tasks[{i}]: {pattern!r} matches no file")
        for task_file in files:
            if task_file in seen:
                continue  # listed twice (two globs): run once
            seen.add(task_file)
            shown = display_path(task_file)
            try:
                task = load_task(shown, overrides=spec.defaults)
            except ConfigError as exc:
                errors.append(str(exc))
                continue
            planned.append(PlannedTask(task.spec.name, shown, task))
    if spec.matrix is not None:
        planned += _matrix_tasks(spec.matrix, spec.defaults, base, source, root, errors)
    errors += _check_names(planned)
    final = []
    for p in planned:
        task = apply_overrides(p.task, settings, Flags(out=str(out / p.name)))
        if task.spec.model and task.spec.model.startswith(SCRIPTED):
            try:  # as `astra-run validate` does: a missing script is a configuration error
                resolve_script(task.spec.model, task.base_dir)
            except ConfigError as exc:
                errors.append(f"{p.origin}: {exc}")
        final.append(PlannedTask(p.name, p.origin, task))
    if errors:
        raise ConfigError("\n".join(errors))
    return sorted(final, key=lambda p: p.name)


def _expand(base: Path, pattern: str) -> list[Path]:
    full = pattern if os.path.isabs(pattern) else str(base / pattern)
    if glob.has_magic(pattern):
        return sorted(Path(p).resolve() for p in glob.glob(full, recursive=True) if Path(p).is_file())
    return [Path(full).resolve()] if Path(full).is_file() else []


def _check_defaults(defaults: Mapping[str, Any], source: str, root: yaml.Node | None) -> list[str]:
    errors = []
    for key in defaults:
        if key == "name":
            errors.append(f"{source}:{line_of(root, 'defaults', key)}: defaults.name: a name cannot be a default "
                          "(every task needs its own)")
        elif key not in TaskSpec.model_fields:
            errors.append(f"{source}:{line_of(root, 'defaults', key)}: defaults.{key}: unknown key")
    if errors:
        return errors
    try:  # the types of the defaults, checked once here rather than once per task file
        TaskSpec.model_validate(deep_merge({"name": "defaults", "prompt": "-"}, defaults))
    except ValidationError as exc:
        # the problems as a task file's, placed in the manifest: lines within `defaults:`, fields under it
        node, fallback = _value_node(root, "defaults"), line_of(root, "defaults")
        for message in validation_messages(source, node, exc):
            line, field_and_problem = message[len(source) + 1:].split(": ", 1)
            if field_and_problem.startswith("(top level): "):
                continue  # no field (both `prompt` and `prompt_file`...): shows in each task file instead
            errors.append(f"{source}:{line if node is not None else fallback}: defaults.{field_and_problem}")
    return errors


def _value_node(root: yaml.Node | None, key: str) -> yaml.Node | None:
    """The node of `key`'s value in a mapping node."""
    if isinstance(root, yaml.MappingNode):
        for k, v in root.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                node: yaml.Node = v
                return node
    return None


def _matrix_tasks(
    matrix: MatrixSpec, defaults: Mapping[str, Any], base: Path, source: str, root: yaml.Node | None,
    errors: list[str],
) -> list[PlannedTask]:
    template = (base / matrix.template).resolve()
    shown = display_path(template)
    try:
        data, troot = parse_yaml(template.read_text(encoding="utf-8"), shown)
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{source}:{line_of(root, 'matrix', 'template')}: matrix.template: cannot read {shown}: {exc}")
        return []
    except ConfigError as exc:
        errors.append(str(exc))
        return []
    if not isinstance(data, dict):
        errors.append(f"{shown}:1: (top level): expected a mapping of keys")
        return []
    labels = _repo_labels(matrix.repos)
    refs: list[str | None] = list(matrix.refs) if matrix.refs else [None]
    out = []
    for ri, repo in enumerate(matrix.repos):
        label = labels[ri]
        if is_git_url(repo):
            resolved = repo
        else:
            resolved = str((base / repo).resolve())
            if not Path(resolved).is_dir():
                errors.append(f"{source}:{line_of(root, 'matrix', 'repos', ri)}: matrix.repos[{ri}]: "
                              f"{resolved} does not exist or is not a directory")
                continue
        for ref in refs:
            cell = deep_merge(defaults, data)
            cell["repo"] = resolved
            suffix = f".{label}" + (f".{_slug(ref)}" if ref is not None else "")
            if ref is not None:
                cell["ref"] = ref
            if isinstance(cell.get("name"), str):
                cell["name"] = cell["name"] + suffix
            origin = f"{shown} (matrix: repo {repo}" + (f", ref {ref})" if ref is not None else ")")
            try:
                task = build_task(cell, root=troot, source=shown, base_dir=template.parent, path=template)
            except ConfigError as exc:
                if str(exc) not in errors:
                    errors.append(str(exc))
                continue
            out.append(PlannedTask(task.spec.name, origin, task))
    return out


def _check_names(planned: Sequence[PlannedTask]) -> list[str]:
    errors = []
    first: dict[str, PlannedTask] = {}
    for p in planned:
        if p.name.startswith(".") or p.name in AGGREGATE_FILES:
            errors.append(f"{p.origin}: name: {p.name!r} cannot be a batch task name "
                          "(it would collide with OUT/ itself or an aggregate file)")
            continue
        other = first.setdefault(p.name.lower(), p)
        if other is not p:
            same = "" if other.name == p.name else f" (names differ only in case: {other.name!r})"
            errors.append(f"duplicate task name {p.name!r}{same}: defined by {other.origin} and by {p.origin}")
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
