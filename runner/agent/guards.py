"""Limits and the circuit breaker: the checks that stop a run nobody is watching.

Turns and cost are checked before every model call; the wall clock is enforced around the whole
loop by run.py (it cancels the running tool call or model stream). Every stop raises
LimitExceeded with a reason that names the limit and its value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from runner.errors import LimitExceeded

REPEAT_CALLOUT = 3
"""The same failing call this many times in a row is called out to the model."""


@dataclass
class Guards:
    max_turns: int
    max_cost_usd: float
    circuit_breaker: int
    turns: int = 0
    cost_usd: float | None = 0.0
    cost_estimated: bool = False
    """cost_usd is an upper estimate (a model without a known price was used)."""
    tool_failures: int = 0
    """Consecutive failed tool calls (errors, timeouts, denials, malformed input)."""
    model_failures: int = 0
    """Consecutive failed model calls (after the SDK's own retries)."""
    _last_failed_call: str | None = None
    _repeats: int = 0

    def before_model_call(self) -> None:
        if self.turns >= self.max_turns:
            unit = "turn" if self.max_turns == 1 else "turns"
            raise LimitExceeded(f"max_turns reached: {self.turns} of {self.max_turns} {unit} used",
                                limit="max_turns", value=self.max_turns)
        if self.cost_usd is not None and self.cost_usd >= self.max_cost_usd:
            spent = (f"an estimated ${self.cost_usd:.4f} (at the highest known prices: a model's price is unknown)"
                     if self.cost_estimated else f"${self.cost_usd:.4f}")
            raise LimitExceeded(
                f"max_cost_usd reached: {spent} spent, limit ${self.max_cost_usd:g}",
                limit="max_cost_usd", value=self.max_cost_usd,
            )

    def model_call_failed(self, error: str) -> None:
        self.model_failures += 1
        if self.model_failures >= self.circuit_breaker:
            raise LimitExceeded(
                f"circuit breaker: {self.model_failures} consecutive failed model calls "
                f"(circuit_breaker: {self.circuit_breaker}); last error: {error}",
                limit="circuit_breaker", value=self.circuit_breaker,
            )

    def model_call_succeeded(self) -> None:
        self.model_failures = 0

    def tool_call_failed(self, name: str, tool_input: dict[str, Any]) -> str | None:
        """Count a failed tool call; returns a call-out for the model when it repeats itself."""
        self.tool_failures += 1
        key = name + json.dumps(tool_input, sort_keys=True, default=str)
        self._repeats = self._repeats + 1 if key == self._last_failed_call else 1
        self._last_failed_call = key
        if self._repeats >= REPEAT_CALLOUT:
            return (
                f"[astra-run: this exact {name} call has now failed {self._repeats} times in a row. "
                "Repeating it will not help: change your approach.]"
            )
        return None

    def tool_call_succeeded(self) -> None:
        self.tool_failures = 0
        self._last_failed_call = None
        self._repeats = 0

    def check_breaker(self) -> None:
        if self.tool_failures >= self.circuit_breaker:
            raise LimitExceeded(
                f"circuit breaker: {self.tool_failures} consecutive failed tool calls "
                f"(circuit_breaker: {self.circuit_breaker})",
                limit="circuit_breaker", value=self.circuit_breaker,
            )
