"""The exception family that carries a run's outcome to its exit code (SPEC §1).

Control flow by exception, as in mini-swe-agent: whatever stops a run raises one of these,
and `run.py` turns it into a status, a reason and an exit code. Tool failures are *not* here:
they go back to the model as tool results (see `runner.tools`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

Status = Literal["success", "failed", "limit", "error", "interrupted"]


class AstraError(Exception):
    """Base of every error that ends a run or a command."""

    exit_code: ClassVar[int] = 1
    status: ClassVar[Status] = "failed"


class ConfigError(AstraError):
    """Usage or configuration error: nothing was run. The message names file, line and field."""

    exit_code = 2
    status = "error"


class InfraError(AstraError):
    """Docker, git, the model API or an MCP server could not be used."""

    exit_code = 4
    status = "error"


class SandboxError(InfraError):
    """The sandbox itself failed (daemon gone, container died, helper lost) - never a tool error."""


class ModelAPIError(InfraError):
    """The model API could not be used (auth, bad request, unreachable after retries)."""


class LimitExceeded(AstraError):
    """A limit stopped the run: turns, cost, wall time or the circuit breaker."""

    exit_code = 3
    status = "limit"

    def __init__(self, reason: str, *, limit: str, value: object) -> None:
        super().__init__(reason)
        self.limit = limit
        """The task field that stopped the run: max_turns, max_cost_usd, timeout, circuit_breaker."""
        self.value = value


class Interrupted(AstraError):
    """SIGINT or SIGTERM."""

    status = "interrupted"

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def code(self) -> int:
        return 128 + self.signum
