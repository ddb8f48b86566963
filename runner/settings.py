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
from runner.task import DEFAULT_MODEL, Duration, LoadedTask, TaskSpec


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
    max_turns: int | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)
    timeout: Duration | None = None
    tool_timeout: Duration | None = None
    cache: Path = Path.home() / ".cache" / "astra-run"
    """ASTRA_CACHE: mirrors of git URLs and the runs' working directories."""
    prices_file: Path | None = None
    """ASTRA_PRICES_FILE: a JSON price file that replaces the built-in one."""
    trigger_phrase: str = "/astra"
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
    """The task with flags and environment applied over it, in SPEC's order."""
    spec = task.spec
    limits = spec.limits.model_copy(
        update={
            k: v
            for k, v in {
                "max_turns": settings.max_turns,
                "max_cost_usd": settings.max_cost_usd,
                "timeout": settings.timeout,
                "tool_timeout": settings.tool_timeout,
            }.items()
            if v is not None
        }
    )
    sandbox = spec.sandbox.model_copy(
        update={
            k: v
            for k, v in {
                "backend": _first(flags.sandbox, settings.sandbox),
                "image": settings.image,
            }.items()
            if v is not None
        }
    )
    outputs = spec.outputs.model_copy(
        update={"dir": _first(flags.out, settings.out, spec.outputs.dir)}
    )
    model = _first(flags.model, settings.model, spec.model, DEFAULT_MODEL)
    provider = _first(settings.provider, spec.provider, "anthropic")
    new_spec: TaskSpec = spec.model_copy(
        update={"model": model, "provider": provider, "limits": limits, "sandbox": sandbox, "outputs": outputs}
    )
    return dataclasses.replace(task, spec=new_spec)
