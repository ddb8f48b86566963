"""The task file (SPEC §2): pydantic models with unknown keys rejected, and a loader whose
errors name the file, the line and the field (`task.yaml:12: limits.timeout: ...`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from runner.problems import ConfigProblems, Layer, Layers, Problem, from_validation
from runner.yamlio import Positions, YamlDoc, load_yaml_file
from runner.yamlio import parse_yaml as parse_yaml  # re-exported: callers read YAML through this module
from runner.yamlio import read_yaml_file as read_yaml_file

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_IMAGE = "astra-sandbox:latest"
NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_NAME_LEN = 100
"""Task names become directory, container and branch names: long ones break all three."""
MAX_DURATION_S = 7 * 24 * 3600.0
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgtBKMGT]?)\s*$")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
MIN_MEMORY = 6 * 1024**2
"""Docker refuses a memory limit under 6 MiB."""
MAX_PIDS = 4_194_304
"""Linux's largest pid_max."""
MAX_CPUS = 1024.0
_IMAGE_RE = re.compile(
    r"^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?/)?"  # registry host[:port]/
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"  # path
    r"(?::[\w][\w.-]{0,127})?"  # :tag
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"  # @digest
)
"""Docker's image reference grammar (distribution/reference)."""
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_duration(value: object) -> float:
    """`90s`, `30m`, `1h` or a number of seconds -> seconds (float, > 0, at most a week)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90s, 30m, 1h or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration: use 90s, 30m, 1h or a number of seconds")
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a duration: use 90s, 30m, 1h or a number of seconds")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is longer than the most allowed, 7 days ({MAX_DURATION_S:g}s)")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def parse_size(text: str, what: str = "") -> int:
    """`512m`, `4g`, `1.5g`, `1024` (bytes) -> bytes. Units are powers of 1024, as Docker's."""
    m = _SIZE_RE.match(text)
    kind = f"{what} size" if what else "size"
    if not m:
        raise ValueError(f"{text!r} is not a {kind} like 512m or 4g")
    value = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a {kind} like 512m or 4g")
    return int(value)


def _one_line_text(what: str, v: str, limit: int = 4096) -> str:
    if any(c in v for c in "\0\n\r"):
        raise ValueError(f"{what} must be one line without NUL")
    if len(v) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    return v


def _env_name(name: str) -> str:
    if not _ENV_NAME_RE.match(name):
        raise ValueError(f"{name[:60]!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    return name


EnvName = Annotated[str, AfterValidator(_env_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SandboxSpec(_Strict):
    backend: Literal["docker", "local"] = "docker"
    """Where tools run. `local` is for development only and prints a warning."""
    image: str = DEFAULT_IMAGE
    """Any image with python3; built by sandbox-images/build.sh by default."""
    setup: list[str] = Field(default_factory=list)
    """Run before the agent, as root, with network on."""
    network: Literal["none", "bridge"] = "none"
    """Network during the agent phase."""
    env: dict[EnvName, str] = Field(default_factory=dict)
    """Environment of the sandbox; `${NAME}` takes a host variable (and is redacted in outputs)."""
    setup_timeout: Duration = 600.0
    """Wall clock for all `setup` commands together."""
    cpus: float = Field(default=2, ge=0.01, le=MAX_CPUS)
    memory: str = "4g"
    pids: int = Field(default=512, gt=0, le=MAX_PIDS)
    disk: str = "10g"
    """The most the worktree may hold; more is a limit (exit 3). Held by the kernel (the worktree
    on its own file system of this size) where the runner can, else measured every 2 s
    (runner/diskcap.py; ASTRA_DISK_CAP)."""

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if len(v) > 255 or not _IMAGE_RE.match(v):
            raise ValueError(f"{v[:100]!r} is not an image reference like astra-sandbox:latest or "
                             "registry.example/team/image:1.2")
        return v

    @field_validator("memory", "disk", mode="before")
    @classmethod
    def _bytes(cls, v: object) -> object:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v  # a number of bytes

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        size = parse_size(v, "memory")
        if size < MIN_MEMORY:
            raise ValueError(f"{v!r} is less than Docker's smallest memory limit, 6m")
        if size > 1024**4:
            raise ValueError(f"{v!r} is more than 1t")
        return v.strip()

    @field_validator("disk")
    @classmethod
    def _disk(cls, v: str) -> str:
        size = parse_size(v, "disk")
        if size < 1024**2:
            raise ValueError(f"{v!r} is less than the smallest disk limit, 1m")
        if size > 64 * 1024**4:
            raise ValueError(f"{v!r} is more than 64t")
        return v.strip()

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if "\0" in value:
                raise ValueError(f"{name}: the value holds a NUL character")
        return v


class PolicySpec(_Strict):
    default: Literal["deny", "allow"] = "deny"
    """What a call that matches no rule gets."""
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)


class LimitsSpec(_Strict):
    max_turns: int = Field(default=50, gt=0, le=10_000)
    max_cost_usd: float = Field(default=5.0, gt=0, le=100_000)
    timeout: Duration = 30 * 60.0
    """Wall clock for the whole run."""
    tool_timeout: Duration = 120.0
    """Default per tool call; a bash call may ask for less, never more."""
    circuit_breaker: int = Field(default=5, gt=0, le=1000)
    """Consecutive failed tool calls or model calls before giving up."""


class VerifySpec(_Strict):
    name: str
    run: str
    timeout: Duration | None = None
    """Defaults to limits.tool_timeout."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a verify check needs a non-empty name")
        return _one_line_text("a verify name", v, 200)


class McpServerSpec(_Strict):
    """One MCP server (docs/mcp.md): stdio (`command`) or streamable HTTP (`url`), or - with
    `from_repo: true` - every stdio server of the repo's own `.mcp.json`, run in the sandbox."""

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    where: Literal["sandbox", "host"] | None = None
    """stdio only: `sandbox` (default) or `host`."""
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 60.0
    """Per call (and for the start-up handshake)."""
    optional: bool = False
    """True: a server that fails to start is skipped with a warning instead of ending the run."""
    from_repo: bool = False
    """Opt in to the repo's `.mcp.json` (untrusted): its stdio servers run inside the sandbox only,
    as servers named `<this entry>_<its name>`; its HTTP servers are ignored."""

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSpec:
        if self.from_repo:
            given = [k for k in ("command", "url", "args", "env", "headers", "where") if getattr(self, k)]
            if given:
                raise ValueError(f"`from_repo: true` takes its servers from .mcp.json; remove {', '.join(given)}")
            return self
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs exactly one of `command` (stdio) or `url` (HTTP)")
        return self


class ModelOptionsSpec(_Strict):
    """SPEC §2 `model_options`; unset fields keep the model's own defaults. Which values a model
    accepts is checked per model (runner.models), not here."""

    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    thinking: Literal["adaptive", "between_tools", "off"] | None = None
    max_output_tokens: int | None = Field(default=None, gt=0, le=10_000_000)


class ContextSpec(_Strict):
    """SPEC §2 `context`: what a run does when its history outgrows the model's window."""

    strategy: Literal["auto", "compact", "clear", "none"] = "auto"
    trigger_tokens: int | None = Field(default=None, gt=0, le=100_000_000)
    """Default: from the model's context window."""


class OutputsSpec(_Strict):
    dir: str = "astra-out"

    @field_validator("dir")
    @classmethod
    def _dir(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the output directory cannot be empty")
        return _one_line_text("the output directory", v)


class TaskSpec(_Strict):
    """One task file, as the user wrote it (relative paths not yet resolved)."""

    name: str
    repo: str = "."
    ref: str | None = None
    prompt: str | None = None
    prompt_file: str | None = None
    model: str | None = None
    provider: Literal["anthropic", "bedrock", "vertex"] | None = None
    """None: ASTRA_PROVIDER, else anthropic (SPEC §7)."""
    model_options: ModelOptionsSpec = Field(default_factory=ModelOptionsSpec)
    context: ContextSpec = Field(default_factory=ContextSpec)
    sandbox: SandboxSpec = Field(default_factory=SandboxSpec)
    policy: PolicySpec | None = None
    """None: the documented safe default policy applies (runner.policy.DEFAULT_POLICY)."""
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    verify: list[VerifySpec] = Field(default_factory=list)
    mcp_servers: dict[str, McpServerSpec] = Field(default_factory=dict)
    expect_changes: bool = True
    """False: a run that changes nothing can still succeed."""
    outputs: OutputsSpec = Field(default_factory=OutputsSpec)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"{v[:100]!r} may hold only letters, digits, '.', '_' and '-'")
        if len(v) > MAX_NAME_LEN:
            raise ValueError(f"the name is {len(v)} characters long; at most {MAX_NAME_LEN}")
        return v

    @field_validator("repo", "ref")
    @classmethod
    def _not_an_option(cls, v: str | None) -> str | None:
        if v is not None:
            if not v.strip():
                raise ValueError("cannot be empty")
            if v.startswith("-"):
                raise ValueError(f"{v[:100]!r} starts with '-' (git would read it as an option)")
            _one_line_text("the value", v)
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        if v is not None and v.startswith("scripted:"):
            return _one_line_text("a scripted model's path", v)
        if v is not None and (not v.strip() or any(c.isspace() for c in v) or len(v) > 1000):
            raise ValueError(f"{v[:100]!r} is not a model id (one word, like {DEFAULT_MODEL})")
        return v

    @model_validator(mode="after")
    def _one_prompt(self) -> TaskSpec:
        if (self.prompt is None) == (self.prompt_file is None):
            which = "both" if self.prompt is not None else "neither"
            raise ValueError(f"give exactly one of `prompt` or `prompt_file` ({which} given)")
        return self


def is_git_url(repo: str) -> bool:
    return bool(re.match(r"^([a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", repo))


@dataclass(frozen=True)
class LoadedTask:
    """A validated task plus where it came from, with paths resolved and the prompt read."""

    spec: TaskSpec
    path: Path | None
    base_dir: Path
    prompt: str
    repo: str
    """An absolute local path or a git URL."""
    root: Positions | None = field(default=None, compare=False, repr=False)
    """Where each field is written in the task file, so later checks can name its line."""
    layers: Layers | None = field(default=None, compare=False, repr=False)
    """Every file that wrote a field of this task (the task file, a manifest's defaults, ...)."""

    @property
    def source(self) -> str:
        return self.origin.source

    @property
    def origin(self) -> Layers:
        if self.layers is not None:
            return self.layers
        return Layers.of(str(self.path) if self.path else "<command line>", self.root)

    def problem(self, loc: Sequence[int | str], message: str) -> Problem:
        """A problem about the field at `loc`, placed where that field was written."""
        return self.origin.problem(loc, message)

    def where(self, *loc: int | str) -> str:
        """`FILE:LINE: field.path` for messages about the field at `loc`."""
        source, line, shown = self.origin.locate(loc)
        return f"{source}:{line}: {shown}"


# ------------------------------------------------------------------------------ loading


def line_of(root: Positions | None, *loc: int | str) -> int:
    """The line (1-based) where the field at `loc` is written, or the deepest written part of it."""
    return root.line(loc) if root is not None else 1


def validation_messages(source: str, root: Positions | None, exc: ValidationError) -> list[str]:
    """pydantic errors as `FILE:LINE: field.path: what is wrong`, one per problem."""
    return [str(p) for p in from_validation(exc, Layers.of(source, root))]


def load_task(
    path: str | os.PathLike[str],
    *,
    overrides: Mapping[str, Any] | None = None,
    overrides_layer: Layer | None = None,
    loaded: YamlDoc | None = None,
) -> LoadedTask:
    """Read, validate and resolve a task file. Raises ConfigError with every problem found.

    `overrides`: values under the file's own (a manifest's defaults); `overrides_layer` says
    where they were written, so a problem in them is reported there, once. `loaded`: the file
    already read (`validate` reads it once to tell a task file from a manifest).
    """
    file = Path(path)
    source = str(path)
    data, root, yaml_problems = loaded if loaded is not None else load_yaml_file(file, "task file", source=source)
    layers = Layers.of(source, root, *([overrides_layer] if overrides_layer else []))
    if data is None:
        raise ConfigProblems([*yaml_problems, layers.problem((), "the task file is empty")])
    if not isinstance(data, dict):
        raise ConfigProblems([*yaml_problems, layers.problem((), f"expected a mapping of keys, got {_kind(data)}")])
    if overrides:
        data = deep_merge(dict(overrides), data)
    try:
        task = build_task(data, root=root, source=source, base_dir=file.resolve().parent, path=file.resolve(),
                          layers=layers)
    except ConfigProblems as exc:
        raise ConfigProblems([*yaml_problems, *exc.problems], partial=exc.partial, unchecked=exc.unchecked) from None
    if yaml_problems:
        raise ConfigProblems(yaml_problems, partial=task)
    return task


def _kind(value: object) -> str:
    return {list: "a list", str: "text", int: "a number", float: "a number", bool: "true/false"}.get(
        type(value), type(value).__name__)


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` over `base`, recursively for mappings (batch defaults, GitHub .astra/task.yaml)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def build_task(
    data: Mapping[str, Any],
    *,
    root: Positions | None = None,
    source: str = "<command line>",
    base_dir: Path | None = None,
    path: Path | None = None,
    layers: Layers | None = None,
) -> LoadedTask:
    """Validate task data and resolve its repo and prompt relative to `base_dir`.

    Every problem is found in one pass (ConfigProblems): the schema's, and the checks of the
    values that passed it (prompt file, repo, policy rules, verify names, ...).
    """
    from runner.taskcheck import check_task  # late import: it needs the schema above

    base_dir = base_dir or Path.cwd()
    layers = layers or Layers.of(source, root)
    checked = check_task(data, layers, base_dir)
    task = None if checked.spec is None else LoadedTask(
        spec=checked.spec, path=path, base_dir=base_dir, prompt=checked.prompt, repo=checked.repo, root=root,
        layers=layers)
    if checked.problems or task is None:
        raise ConfigProblems(checked.problems or [layers.problem((), "invalid task")], partial=task,
                             unchecked=checked.unchecked)
    return task
