"""Every problem of a task's data, found in one pass (the part of `validate` that needs no machine).

pydantic reports every field that does not fit the schema; the checks that need a valid value
(the prompt file, the repo, policy rules, verify names, MCP servers) then run on every field that
did fit, so a file with a bad `limits:` still hears about its unreadable `prompt_file`.
Machine checks (git, Docker, credentials) are `runner.preflight`'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runner.errors import ConfigError
from runner.problems import Layers, Problem, from_validation
from runner.task import TaskSpec, is_git_url
from runner.yamlio import is_dir, read_text

_PLACEHOLDER = {"name": "placeholder", "prompt": "placeholder"}
"""Stand-ins for fields with problems, so the other fields can still be checked."""


@dataclass(frozen=True)
class Checked:
    spec: TaskSpec | None
    """The task, or with problems the task as far as it goes (bad fields at their defaults)."""
    prompt: str
    repo: str
    problems: list[Problem]
    unchecked: frozenset[str] = frozenset()
    """Top-level fields of `spec` that are stand-ins for values with problems."""


def check_task(data: Mapping[str, Any], layers: Layers, base_dir: Path) -> Checked:
    problems: list[Problem] = []
    spec = _validate(data, layers, problems)
    if spec is None:
        partial, bad = _partial(data, problems)
        if partial is None:
            return Checked(None, "", "", problems)
        try:
            spec = TaskSpec.model_validate(partial)
        except ValidationError:
            return Checked(None, "", "", problems)
        before = len(problems)
        prompt, repo = _field_checks(spec, layers, base_dir, problems, skip=bad)
        return Checked(spec, prompt, repo, problems, frozenset(bad) | _fields_of(problems[before:]))
    prompt, repo = _field_checks(spec, layers, base_dir, problems, skip=set())
    return Checked(spec, prompt, repo, problems, _fields_of(problems))


def _fields_of(problems: list[Problem]) -> frozenset[str]:
    return frozenset(str(p.loc[0]) for p in problems if p.loc)


def _validate(data: Mapping[str, Any], layers: Layers, problems: list[Problem]) -> TaskSpec | None:
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        problems += from_validation(exc, layers)
    prompts = [k for k in ("prompt", "prompt_file") if data.get(k) is not None]
    if len(prompts) != 1:  # pydantic checks this only when every field is valid
        which = "both" if prompts else "neither"
        problems.append(layers.problem((), f"give exactly one of `prompt` or `prompt_file` ({which} given)"))
    return None


_SECTIONS = frozenset({"sandbox", "limits", "model_options", "context", "outputs"})
"""Mappings whose keys stand alone: a bad `sandbox.memory` leaves the rest of `sandbox` checkable."""


def _partial(data: Mapping[str, Any], problems: list[Problem]) -> tuple[dict[str, Any] | None, set[str]]:
    """The data with every field that has a problem replaced by its default: the field itself
    when it is a key of a section (`sandbox.memory`, named so in `bad`), else its top-level field."""
    bad: set[str] = set()
    pruned: dict[str, set[str]] = {}
    for p in problems:
        if not p.loc:  # the task as a whole (both or neither prompt)
            bad |= {"prompt", "prompt_file"}
        elif (len(p.loc) >= 2 and p.loc[0] in _SECTIONS and isinstance(p.loc[1], str)
              and isinstance(data.get(str(p.loc[0])), Mapping)):
            pruned.setdefault(str(p.loc[0]), set()).add(p.loc[1])
        else:
            bad.add(str(p.loc[0]))
    partial = {k: v for k, v in data.items() if k not in bad and k in TaskSpec.model_fields}
    for section, keys in pruned.items():
        if section in partial:
            partial[section] = {k: v for k, v in partial[section].items() if k not in keys}
            bad |= {f"{section}.{k}" for k in keys}
    if "name" not in partial:
        partial["name"] = _PLACEHOLDER["name"]
        bad.add("name")
    if "prompt" not in partial and "prompt_file" not in partial:
        partial["prompt"] = _PLACEHOLDER["prompt"]
        bad.add("prompt")
    return partial, bad


def _field_checks(
    spec: TaskSpec, layers: Layers, base_dir: Path, problems: list[Problem], *, skip: set[str]
) -> tuple[str, str]:
    """The checks of values that fit the schema; fields in `skip` had problems already."""
    prompt = ""
    if "prompt" not in skip and "prompt_file" not in skip:
        prompt = _prompt(spec, layers, base_dir, problems)
    repo = spec.repo
    if "repo" not in skip and not is_git_url(spec.repo):
        repo_path = (base_dir / spec.repo).resolve()
        if not is_dir(repo_path):
            problems.append(layers.problem(("repo",), f"{repo_path} does not exist or is not a directory"))
        repo = str(repo_path)
    if "policy" not in skip and spec.policy is not None:
        from runner.policy import check_rules  # late import: policy imports runner.task

        for loc, msg in check_rules(spec.policy):
            problems.append(layers.problem(_parse_loc(loc), msg))
    if "mcp_servers" not in skip:
        for name, server in spec.mcp_servers.items():
            if server.url is not None and server.where == "sandbox":
                problems.append(layers.problem(("mcp_servers", name, "where"),
                                               "HTTP servers are reached from the host"))
    if "verify" not in skip:
        first: dict[str, int] = {}
        for i, check in enumerate(spec.verify):
            j = first.setdefault(check.name, i)
            if j != i:
                _, line, _ = layers.locate(("verify", j, "name"))
                problems.append(layers.problem(("verify", i, "name"), f"{check.name!r} is already the name of "
                                               f"verify[{j}] (line {line}): verify names must be unique"))
    return prompt, repo


def _prompt(spec: TaskSpec, layers: Layers, base_dir: Path, problems: list[Problem]) -> str:
    if spec.prompt_file is not None:
        prompt_path = (base_dir / spec.prompt_file).resolve()
        try:
            prompt = read_text(prompt_path, "prompt file")
        except ConfigError as exc:
            detail = str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
            problems.append(layers.problem(("prompt_file",), f"cannot read {prompt_path}: {_tail(detail)}"))
            return ""
        where = "prompt_file"
    else:
        prompt, where = spec.prompt or "", "prompt"
    if not prompt.strip():
        problems.append(layers.problem((where,), "the prompt is empty"))
    return prompt


def _tail(message: str) -> str:
    """`(top level): the prompt file is not UTF-8...` -> the words after the field."""
    return message.removeprefix("(top level): ")


def _parse_loc(loc: str) -> tuple[int | str, ...]:
    """`policy.allow[2]` -> ("policy", "allow", 2)."""
    parts: list[int | str] = []
    for piece in re.findall(r"[^.\[\]]+|\[\d+\]", loc):
        parts.append(int(piece[1:-1]) if piece.startswith("[") else piece)
    return tuple(parts)
