"""Checks that need the machine, not just the file: done by `validate` and before a run starts.

A task file can be well-formed and still not runnable here: a `${NAME}` whose host variable is
unset, a repository path that is not a git repository, a `ref` that names nothing, a model id
nobody serves, no API credentials, a sandbox image that was never built, more CPUs than the
Docker host has, an output directory that is a file. Each problem is reported as
`FILE:LINE: field: problem` (exit 2) before anything is created.

Credentials are asked of each provider's own chain (runner.models.credentials): missing ones
are a problem (exit 2) for `validate`, `run` and `batch` alike, naming the variables or chain
that would satisfy the provider; `validate --no-credentials` leaves them out (a lint job where
secrets are absent on purpose, as in a fork's pull request). A batch reports them once per
provider at the manifest's line (`manifest_credentials`), not once per task. A `${NAME}` of a
provider's variable is refused anywhere it would reach the sandbox or an MCP server.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import AstraError, ConfigError
from runner.models.credentials import check_credentials as _missing
from runner.models.credentials import is_provider_secret_var
from runner.models.scripted import PREFIX as SCRIPTED_PREFIX
from runner.models.scripted import load_script, resolve_script
from runner.problems import ConfigProblems, Problem, messages_of
from runner.redact import HOST_VAR
from runner.task import LoadedTask, is_git_url
from runner.yamlio import Positions, exists, format_loc, is_dir

if TYPE_CHECKING:
    from runner.settings import Flags, Settings


KNOWN_UNPRICED = ("claude-haiku-5-5", "claude-mythos-5-2", "claude-mythos-preview")
"""Real model ids the price file leaves out on purpose (their cost is 'unknown')."""
_DATE_SUFFIX = re.compile(r"-\d{8}$")


def known_models() -> set[str]:
    """Every model id in the data files of runner/models/ (a JSON object with a `models` map)."""
    ids = set(KNOWN_UNPRICED)
    for entry in resources.files("runner.models").iterdir():
        if not entry.name.endswith(".json"):
            continue
        try:
            data = json.loads(entry.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("models"), dict):
            ids |= {str(k) for k in data["models"]}
    return ids


def model_problem(model: str, env: Mapping[str, str]) -> str | None:
    """What is wrong with a model id, if it is surely wrong: not known, and no gateway in between."""
    if model.startswith(SCRIPTED_PREFIX) or env.get("ANTHROPIC_BASE_URL") or env.get("ASTRA_PRICES_FILE"):
        return None  # a gateway, a local server or the user's own price file: their own ids
    known = known_models()
    if model in known or _DATE_SUFFIX.sub("", model) in known:
        return None
    near = difflib.get_close_matches(_DATE_SUFFIX.sub("", model), sorted(known), n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"{model!r} is not a known model id{hint} (known: runner/models/*.json)"


@dataclass
class Machine:
    """What the checks ask of this machine, asked once per command (a batch has many tasks)."""

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    notes: list[str] = field(default_factory=list)
    """What could not be checked (Docker unreachable), for `validate` to say."""
    credential_hint: str = ""
    """Added to a missing-credentials problem (`validate` says how to skip the check)."""
    _docker: Any = None
    _docker_tried: bool = False
    _images: dict[str, bool] = field(default_factory=dict)
    _info: dict[str, Any] | None = None
    _prices: list[Problem] | None = None
    _git: dict[tuple[str, str | None], str | None] = field(default_factory=dict)

    def docker(self) -> Any:
        if not self._docker_tried:
            self._docker_tried = True
            try:
                from runner.sandbox.docker_engine import connect

                self._docker = connect(timeout=10)
                self._info = self._docker.info()
            except (AstraError, Exception) as exc:
                self._docker = None
                self.notes.append(f"Docker is not reachable, so the sandbox image and limits were not checked: {exc}")
        return self._docker

    def has_image(self, image: str) -> bool | None:
        client = self.docker()
        if client is None:
            return None
        if image not in self._images:
            import docker

            try:
                client.images.get(image)
                self._images[image] = True
            except docker.errors.ImageNotFound:
                self._images[image] = False
            except Exception as exc:
                self.notes.append(f"could not look up the image {image}: {exc}")
                return None
        return self._images[image]

    def git_problem(self, repo: str, ref: str | None) -> str | None:
        """"repo" (not a git repository), "ref" (names no commit there) or None - asked of git once
        per repository and ref (a batch's tasks share them). `repo` is a local path, absolute."""
        from runner.workspace import resolve_commit, trusted_git_dir  # git only when asked

        key = (repo, ref)
        if key not in self._git:
            try:
                git_dir = trusted_git_dir(repo, cache=Path(repo))  # a local path: no cache used
            except ConfigError:
                self._git[key] = "repo"
            else:
                try:
                    resolve_commit(git_dir, ref)
                    self._git[key] = None
                except ConfigError:
                    self._git[key] = "ref"
        return self._git[key]

    def price_problems(self) -> list[Problem]:
        """What is wrong with $ASTRA_PRICES_FILE (read once): a run prices every call with it."""
        if self._prices is None:
            self._prices = []
            if path := self.env.get("ASTRA_PRICES_FILE"):
                from runner.models.pricing import load_prices

                try:
                    load_prices(Path(path))
                except ConfigProblems as exc:
                    self._prices = [p for p in exc.problems if isinstance(p, Problem)]
                except ConfigError as exc:  # the file cannot be read at all: name the variable
                    self._prices = [Problem("ASTRA_PRICES_FILE", 0, path, str(exc).removeprefix(f"{path}: "))]
        return self._prices

    def docker_cpus(self) -> int | None:
        return int(self._info["NCPU"]) if self.docker() is not None and self._info and "NCPU" in self._info else None


def find(
    task: LoadedTask, *, check_git: bool = True, check_credentials: bool = True, machine: Machine | None = None,
    skip: frozenset[str] = frozenset(),
) -> list[Problem]:
    """Every problem found. `check_git`: also ask git and Docker (a full preflight).
    `check_credentials`: also whether the provider's credentials are there (see
    `credential_problems`; a batch asks once per provider: `manifest_credentials`). `skip`:
    fields that already have problems (their values are stand-ins): not checked again - a
    top-level one, or one key of a section (`sandbox.memory`: the rest of `sandbox` is checked)."""
    machine = machine or Machine()
    spec = task.spec
    found: list[Problem] = []
    for key, value in spec.sandbox.env.items() if not skip & {"sandbox", "sandbox.env"} else ():
        for name in HOST_VAR.findall(value):
            if name not in machine.env:
                found.append(task.problem(("sandbox", "env", key), f"host variable ${{{name}}} is not set"))
    for server_name, server in spec.mcp_servers.items() if "mcp_servers" not in skip else ():
        if server.optional:
            continue
        for section, values in (("env", server.env), ("headers", server.headers)):
            for key, value in values.items():
                for name in HOST_VAR.findall(value):
                    if name not in machine.env:
                        found.append(task.problem(("mcp_servers", server_name, section, key),
                                                  f"host variable ${{{name}}} is not set"))
    if not skip & {"sandbox", "sandbox.env", "mcp_servers"}:
        found += provider_secret_refs(task)
    if not skip & {"model", "provider"}:
        found += _model(task, machine)
        if check_credentials:
            found += credential_problems(task, machine.credential_hint)
    found += machine.price_problems()
    out_dir = Path(spec.outputs.dir).expanduser()
    if not skip & {"outputs", "outputs.dir"} and exists(out_dir) and not is_dir(out_dir):
        found.append(task.problem(("outputs", "dir"), f"{out_dir.resolve()} exists and is not a directory"))
    if check_git:
        if not skip & {"repo", "ref"}:
            found += _git(task, machine)
        if spec.sandbox.backend == "docker" and not skip & {"sandbox", "sandbox.backend"}:
            found += _docker(task, machine, skip)
    return found


def checked(
    load: Callable[[], LoadedTask], settings: Settings, flags: Flags, *, check_git: bool = True,
    check_credentials: bool = True, machine: Machine | None = None,
) -> LoadedTask:
    """`load()` the task, apply settings and flags, and preflight it: every problem, one ConfigError.

    A task with problems in its file is still preflighted as far as it goes (its other fields),
    so `validate` says everything at once.
    """
    from runner.settings import apply_overrides

    try:
        task = apply_overrides(load(), settings, flags)
    except ConfigProblems as exc:
        if exc.partial is None:
            raise
        partial = apply_overrides(exc.partial, settings, flags)
        more = find(partial, check_git=check_git, check_credentials=check_credentials, machine=machine,
                    skip=exc.unchecked)
        raise ConfigProblems([*exc.problems, *more]) from None
    check(task, check_git=check_git, check_credentials=check_credentials, machine=machine)
    return task


def _model(task: LoadedTask, machine: Machine) -> list[Problem]:
    spec = task.spec
    model = spec.model or ""
    if model.startswith(SCRIPTED_PREFIX):
        try:
            load_script(resolve_script(model, task.base_dir))
        except ConfigError as exc:  # each of the script's problems, under the task's `model` line
            return [task.problem(("model",), str(m).removeprefix("model: ")) for m in messages_of(exc)]
        return []
    found = []
    if (spec.provider or "anthropic") == "anthropic" and (problem := model_problem(model, machine.env)):
        found.append(task.problem(("model",), problem))
    return found


def credential_problems(task: LoadedTask, hint: str = "") -> list[Problem]:
    """What the provider's credential chain is missing here (none for a scripted model), placed
    at `provider` where the task (a manifest's defaults, or ASTRA_PROVIDER) sets it, else at `model`."""
    spec = task.spec
    if (spec.model or "").startswith(SCRIPTED_PREFIX):
        return []
    loc = ("provider",) if _written(task, ("provider",)) else ("model",)
    return [task.problem(loc, p + hint) for p in _missing(spec.provider or "anthropic")]


def manifest_credentials(
    tasks: Sequence[LoadedTask], source: str, root: Positions, hint: str = ""
) -> list[Problem]:
    """A batch's missing credentials, once per provider and at the manifest's line (its
    `defaults.provider`, else `defaults.model`, else its top), naming the tasks that need them;
    at ASTRA_PROVIDER when that variable chose the provider."""
    by_provider: dict[str, list[LoadedTask]] = {}
    for task in tasks:
        if not (task.spec.model or "").startswith(SCRIPTED_PREFIX):
            by_provider.setdefault(task.spec.provider or "anthropic", []).append(task)
    found = []
    for provider, users in by_provider.items():
        missing = _missing(provider)  # type: ignore[arg-type]
        if not missing:
            continue
        names = sorted(t.spec.name for t in users)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        needed = f" (needed by {len(names)} task{'' if len(names) == 1 else 's'}: {shown})"
        if ("provider",) in _overridden(users[0]):
            found += [users[0].problem(("provider",), m + needed + hint) for m in missing]
            continue
        loc = next((k for k in (("defaults", "provider"), ("defaults", "model")) if root.has(k)), ())
        found += [Problem(source, root.line(loc), format_loc(loc), m + needed + hint) for m in missing]
    return found


def provider_secret_refs(task: LoadedTask) -> list[Problem]:
    """`${NAME}` of a model provider's variable in sandbox.env or an MCP server's env or headers:
    refused, whatever the variable holds (SPEC §7: no credential ever enters the sandbox)."""
    spec = task.spec
    fields: list[tuple[tuple[str, ...], dict[str, str]]] = [(("sandbox", "env"), dict(spec.sandbox.env))]
    for server_name, server in spec.mcp_servers.items():
        fields += [(("mcp_servers", server_name, "env"), server.env),
                   (("mcp_servers", server_name, "headers"), server.headers)]
    found = []
    for loc, values in fields:
        for key, value in values.items():
            for name in HOST_VAR.findall(value):
                if is_provider_secret_var(name):
                    found.append(task.problem((*loc, key), f"${{{name}}} is a model provider's variable; "
                                              "it is never passed to the sandbox or an MCP server"))
    return found


def _written(task: LoadedTask, loc: tuple[str, ...]) -> bool:
    """Whether a file, a variable or a flag sets the field at `loc` (else it is the default)."""
    return any(loc in layer.only if layer.only is not None else layer.positions.has((*layer.prefix, *loc))
               for layer in task.origin.layers)


def _overridden(task: LoadedTask) -> set[tuple[int | str, ...]]:
    return {loc for layer in task.origin.layers if layer.only for loc in layer.only}


def _git(task: LoadedTask, machine: Machine) -> list[Problem]:
    if is_git_url(task.repo):
        return []  # asked of the remote when the run fetches it
    wrong = machine.git_problem(task.repo, task.spec.ref)
    if wrong == "repo":
        return [task.problem(("repo",), f"{task.repo} is not a git repository")]
    if wrong == "ref":
        return [task.problem(("ref",), f"{task.spec.ref or 'HEAD'} does not name a commit in {task.repo}")]
    return []


def _docker(task: LoadedTask, machine: Machine, skip: frozenset[str] = frozenset()) -> list[Problem]:
    from runner.sandbox.docker_engine import BUILD_HINT

    sandbox = task.spec.sandbox
    found = []
    if "sandbox.image" not in skip and machine.has_image(sandbox.image) is False:
        from runner.task import DEFAULT_IMAGE

        ours = sandbox.image.rsplit(":", 1)[0] == DEFAULT_IMAGE.rsplit(":", 1)[0]
        hint = BUILD_HINT if ours else "build or load it on this machine (astra-run never pulls images)"
        found.append(task.problem(("sandbox", "image"),
                                  f"the image {sandbox.image} is not on this Docker host; {hint}"))
    cpus = machine.docker_cpus()
    if "sandbox.cpus" not in skip and cpus is not None and sandbox.cpus > cpus:
        found.append(task.problem(("sandbox", "cpus"), f"{sandbox.cpus:g} is more than the {cpus} CPU(s) of the "
                                  "Docker host"))
    return found


_uncommitted: dict[Path, int] = {}
_uncommitted_lock = threading.Lock()


def uncommitted_changes(repo: Path) -> int:
    """How many paths of the user's checkout differ from its HEAD (staged, unstaged or untracked,
    ignored files not counted): a run starts from a commit and does not see them. 0 when unknown.

    Asked once per checkout per process: `git status` walks the whole checkout, and a batch's
    tasks on one repository start together (the others wait for the first one's answer)."""
    from runner.workspace import git  # host git with the safe config (no hooks, no fsmonitor)

    key = repo.resolve()
    with _uncommitted_lock:
        if key not in _uncommitted:
            try:
                proc = git(["-C", str(key), "status", "--porcelain", "--untracked-files=normal"], check=False,
                           timeout=30)
                _uncommitted[key] = len(proc.stdout.splitlines()) if proc.returncode == 0 else 0
            except Exception:
                _uncommitted[key] = 0
        return _uncommitted[key]


def problems(task: LoadedTask, *, check_git: bool = True, check_credentials: bool = True) -> list[str]:
    """Every problem found, as `FILE:LINE: field: what is wrong`."""
    return [str(p) for p in find(task, check_git=check_git, check_credentials=check_credentials)]


def check(
    task: LoadedTask, *, check_git: bool = True, check_credentials: bool = True, machine: Machine | None = None
) -> None:
    if found := find(task, check_git=check_git, check_credentials=check_credentials, machine=machine):
        raise ConfigProblems(found)
