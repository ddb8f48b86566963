"""The task file (SPEC §2): pydantic models with unknown keys rejected, and a loader whose
errors name the file, the line and the field (`task.yaml:12: limits.timeout: ...`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from runner.errors import ConfigError

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_IMAGE = "astra-sandbox:latest"
NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """`90s`, `30m`, `1h` or a number of seconds -> seconds (float, > 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90s, 30m, 1h or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration: use 90s, 30m, 1h or a number of seconds")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SandboxSpec(_Strict):
    backend: Literal["docker", "local"] = "docker"
    """Where tools run. `local` is for development only and prints a warning."""
    image: str = DEFAULT_IMAGE
    """Any image with python3; built by sandbox-images/build.sh by default."""
    setup: list[str] = Field(default_factory=list)
    """Run before the agent, as root, with network on."""
    network: Literal["none", "bridge"] = "none"
    """Network during the agent phase."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment of the sandbox; `${NAME}` takes a host variable (and is redacted in outputs)."""
    setup_timeout: Duration = 600.0
    """Wall clock for all `setup` commands together."""
    cpus: float = Field(default=2, gt=0)
    memory: str = "4g"
    pids: int = Field(default=512, gt=0)
    disk: str = "10g"
    """The most the worktree may hold; more is a limit (exit 3)."""

    @field_validator("memory", "disk")
    @classmethod
    def _size(cls, v: str, info: ValidationInfo) -> str:
        if not re.fullmatch(r"\d+(\.\d+)?[bkmgBKMG]?", v.strip()):
            raise ValueError(f"{v!r} is not a {info.field_name} size like 512m or 4g")
        return v.strip()


class PolicySpec(_Strict):
    default: Literal["deny", "allow"] = "deny"
    """What a call that matches no rule gets."""
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)


class LimitsSpec(_Strict):
    max_turns: int = Field(default=50, gt=0)
    max_cost_usd: float = Field(default=5.0, gt=0)
    timeout: Duration = 30 * 60.0
    """Wall clock for the whole run."""
    tool_timeout: Duration = 120.0
    """Default per tool call; a bash call may ask for less, never more."""
    circuit_breaker: int = Field(default=5, gt=0)
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
        return v


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
    max_output_tokens: int | None = Field(default=None, gt=0)


class ContextSpec(_Strict):
    """SPEC §2 `context`: what a run does when its history outgrows the model's window."""

    strategy: Literal["auto", "compact", "clear", "none"] = "auto"
    trigger_tokens: int | None = Field(default=None, gt=0)
    """Default: from the model's context window."""


class OutputsSpec(_Strict):
    dir: str = "astra-out"


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
            raise ValueError(f"{v!r} may hold only letters, digits, '.', '_' and '-'")
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
    root: yaml.Node | None = field(default=None, compare=False, repr=False)
    """The file's YAML node tree, so later checks can name the line of a field."""

    @property
    def source(self) -> str:
        return str(self.path) if self.path else "<command line>"

    def where(self, *loc: int | str) -> str:
        """`FILE:LINE: field.path` for messages about the field at `loc`."""
        return f"{self.source}:{line_of(self.root, *loc)}: {_format_loc(list(loc))}"


# ---------------------------------------------------------------- loading with line numbers


def line_of(root: yaml.Node | None, *loc: int | str) -> int:
    """The line (1-based) where the field at `loc` is written, or the deepest written part of it."""
    return _node_line(root, loc)[0]


def _node_line(node: yaml.Node | None, loc: Sequence[int | str]) -> tuple[int, bool]:
    """Line (1-based) where the field at `loc` is written: its key in a mapping, its item in a list.

    When the field is not in the file (a missing key), the line of the deepest part that is.
    Returns (line, found).
    """
    if node is None:
        return 1, False
    current: yaml.Node = node
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                if key.value == part:
                    line, child = key.start_mark.line + 1, value
                    break
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int) and part < len(current.value):
            child = current.value[part]
            line = child.start_mark.line + 1
        if child is None:
            return line, False
        current = child
    return line, True


def _parse_loc(loc: str) -> list[int | str]:
    """`policy.allow[2]` -> ["policy", "allow", 2]."""
    parts: list[int | str] = []
    for piece in re.findall(r"[^.\[\]]+|\[\d+\]", loc):
        parts.append(int(piece[1:-1]) if piece.startswith("[") else piece)
    return parts


def _describe(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validation_messages(source: str, root: yaml.Node | None, exc: ValidationError) -> list[str]:
    """pydantic errors as `FILE:LINE: field.path: what is wrong`, one per problem."""
    lines = []
    for err in exc.errors():
        # pydantic appends the validator/type name for union members; drop non-field parts.
        loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
        line, _ = _node_line(root, loc)
        lines.append(f"{source}:{line}: {_format_loc(loc)}: {_describe(err)}")
    return lines


def parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """YAML text -> (data, node tree). Syntax errors become ConfigError with the line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{source}:{line}: YAML syntax error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}:1: YAML error: {exc}") from None
    return data, root


def read_yaml_file(file: Path, what: str) -> tuple[Any, yaml.Node | None]:
    """A YAML file's data and node tree; a missing, unreadable or malformed file is a ConfigError."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the {what}: {exc}") from None
    return parse_yaml(text, str(file))


def load_task(path: str | os.PathLike[str], *, overrides: Mapping[str, Any] | None = None) -> LoadedTask:
    """Read, validate and resolve a task file. Raises ConfigError with every problem found."""
    file = Path(path)
    source = str(path)
    data, root = read_yaml_file(file, "task file")
    if data is None:
        raise ConfigError(f"{source}:1: (top level): the task file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: (top level): expected a mapping of keys, got {type(data).__name__}")
    if overrides:
        data = deep_merge(dict(overrides), data)
    return build_task(data, root=root, source=source, base_dir=file.resolve().parent, path=file.resolve())


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
    root: yaml.Node | None = None,
    source: str = "<command line>",
    base_dir: Path | None = None,
    path: Path | None = None,
) -> LoadedTask:
    """Validate task data and resolve its repo and prompt relative to `base_dir`."""
    base_dir = base_dir or Path.cwd()
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(validation_messages(source, root, exc))) from None

    def where(*loc: str) -> str:
        return f"{source}:{_node_line(root, loc)[0]}: {'.'.join(loc)}"

    if spec.prompt_file is not None:
        prompt_path = (base_dir / spec.prompt_file).resolve()
        try:
            prompt = prompt_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{where('prompt_file')}: cannot read {prompt_path}: {exc.strerror}") from None
    else:
        prompt = spec.prompt or ""
    if not prompt.strip():
        raise ConfigError(f"{where('prompt' if spec.prompt is not None else 'prompt_file')}: the prompt is empty")

    if is_git_url(spec.repo):
        repo = spec.repo
    else:
        repo_path = (base_dir / spec.repo).resolve()
        if not repo_path.is_dir():
            raise ConfigError(f"{where('repo')}: {repo_path} does not exist or is not a directory")
        repo = str(repo_path)
    from runner.policy import check_rules  # late import: policy imports this module

    if spec.policy is not None and (problems := check_rules(spec.policy)):
        raise ConfigError("\n".join(f"{source}:{_node_line(root, _parse_loc(loc))[0]}: {loc}: {msg}"
                                     for loc, msg in problems))
    for name, server in spec.mcp_servers.items():
        if server.url is not None and server.where == "sandbox":
            raise ConfigError(f"{where('mcp_servers', name, 'where')}: HTTP servers are reached from the host")
    return LoadedTask(spec=spec, path=path, base_dir=base_dir, prompt=prompt, repo=repo, root=root)
