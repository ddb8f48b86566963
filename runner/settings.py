"""Settings from the environment (`ASTRA_*`) and their precedence over the task file.

Highest first (SPEC §2): command-line flags, `ASTRA_*` environment variables, the task file,
defaults. `apply_overrides` is the one place that ordering is implemented.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.errors import ConfigError
from runner.problems import Layer, Layers
from runner.task import DEFAULT_MODEL, Duration, LoadedTask, TaskSpec
from runner.yamlio import Positions


class Settings(BaseSettings):
    """Every `ASTRA_*` variable astra-run reads. Unset means "not overridden"."""

    model_config = SettingsConfigDict(env_prefix="ASTRA_", extra="ignore", frozen=True)

    model: str | None = None
    """ASTRA_MODEL: the model id, or scripted:PATH."""
    provider: Literal["anthropic", "bedrock", "vertex"] | None = None
    """ASTRA_PROVIDER: anthropic, bedrock or vertex (SPEC §7)."""
    sandbox: Literal["docker", "local"] | None = None
    """ASTRA_SANDBOX: the sandbox backend."""
    image: str | None = None
    """ASTRA_IMAGE: the sandbox image."""
    out: str | None = None
    """ASTRA_OUT: the output directory."""
    max_turns: int | None = Field(default=None, gt=0, le=10_000)
    max_cost_usd: float | None = Field(default=None, gt=0, le=100_000, allow_inf_nan=False)
    timeout: Duration | None = None
    tool_timeout: Duration | None = None
    cache: Path = Path.home() / ".cache" / "astra-run"
    """ASTRA_CACHE: mirrors of git URLs and the runs' working directories."""
    prices_file: Path | None = None
    """ASTRA_PRICES_FILE: a JSON price file that replaces the built-in one."""
    trigger_phrase: str = "/astra"
    disk_cap: Literal["auto", "kernel", "poll"] = "auto"
    """ASTRA_DISK_CAP: how sandbox.disk is enforced - `kernel` (the worktree on its own loop-mounted
    file system; needs root and loop devices, and for docker a daemon sharing our mounts), `poll`
    (du every 2 s), `auto` (kernel where possible). See runner/diskcap.py."""
    require_docker: bool = False
    """ASTRA_REQUIRE_DOCKER: tests fail instead of skipping when Docker is missing."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"ASTRA_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"environment: {problems}") from None


@dataclass(frozen=True)
class Flags:
    """Command-line flags of `astra-run run` that override settings (None: not given)."""

    out: str | None = None
    model: str | None = None
    sandbox: Literal["docker", "local"] | None = None
    keep: bool = False


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def apply_overrides(task: LoadedTask, settings: Settings, flags: Flags) -> LoadedTask:
    """The task with flags and environment applied over it, in SPEC's order.

    Each overridden field is remembered as coming from its flag or variable, so a problem
    with it (an unknown `--model`) names that, not the task file's line.
    """
    spec = task.spec
    sources: dict[tuple[str, ...], str] = {}

    def pick(loc: tuple[str, ...], *candidates: tuple[Any, str]) -> Any:
        for value, name in candidates:
            if value is not None:
                sources[loc] = name
                return value
        return None

    limits = spec.limits.model_copy(
        update={
            k: v
            for k, v in {
                key: pick(("limits", key), (getattr(settings, key), f"ASTRA_{key.upper()}"))
                for key in ("max_turns", "max_cost_usd", "timeout", "tool_timeout")
            }.items()
            if v is not None
        }
    )
    sandbox = spec.sandbox.model_copy(
        update={
            k: v
            for k, v in {
                "backend": pick(("sandbox", "backend"),
                                (flags.sandbox, "--sandbox"), (settings.sandbox, "ASTRA_SANDBOX")),
                "image": pick(("sandbox", "image"), (settings.image, "ASTRA_IMAGE")),
            }.items()
            if v is not None
        }
    )
    out_dir = pick(("outputs", "dir"), (flags.out, "--out"), (settings.out, "ASTRA_OUT"))
    outputs = spec.outputs.model_copy(update={"dir": _first(out_dir, spec.outputs.dir)})
    model = _first(pick(("model",), (flags.model, "--model"), (settings.model, "ASTRA_MODEL")), spec.model,
                   DEFAULT_MODEL)
    provider = _first(pick(("provider",), (settings.provider, "ASTRA_PROVIDER")), spec.provider, "anthropic")
    new_spec: TaskSpec = spec.model_copy(
        update={"model": model, "provider": provider, "limits": limits, "sandbox": sandbox, "outputs": outputs}
    )
    layers = task.origin
    extra = tuple(Layer(name, Positions(root_line=0), only={loc: loc}) for loc, name in sources.items())
    return dataclasses.replace(task, spec=new_spec, layers=Layers((*extra, *layers.layers)))
