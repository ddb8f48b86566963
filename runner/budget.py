"""A cost cap shared by concurrent runs (a batch's --max-cost-usd), held before every model call.

Checking the total only before a task *starts* let running tasks go on spending: a cap of $0.20
spent $0.30. Now every model call of every running task passes `SharedBudget.turn()` first:

- when the cap is reached, the call is not made: LimitExceeded (the task ends as `limit`, its
  work kept, like its own max_cost_usd);
- calls run side by side only while even all of them costing as much as the dearest turn seen so
  far would stay under the cap; otherwise one at a time (until the first turn's cost is known,
  too). So the cap is passed by at most one turn of one running task.

It wraps the run's Model (`BudgetedModel`), so the agent loop needs no change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from runner.errors import LimitExceeded
from runner.models.base import Model, ModelRequest, ModelResponse, Usage

CostFn = Callable[[Mapping[str, Usage]], float]


class SharedBudget:
    def __init__(self, cap_usd: float, spent_usd: float = 0.0, *, what: str = "the batch's --max-cost-usd") -> None:
        self.cap = cap_usd
        self.spent = spent_usd
        """Everything counted so far: what the caller started with, plus every call's cost."""
        self.what = what
        self.dearest_turn: float | None = None
        self._in_flight = 0
        self._wake = asyncio.Event()

    def reached(self) -> bool:
        return self.spent >= self.cap

    def limit(self) -> LimitExceeded:
        return LimitExceeded(f"{self.what} ${self.cap:g} was reached (${self.spent:.4f} spent)",
                             limit="max_cost_usd", value=self.cap)

    def _room_for_one_more(self) -> bool:
        if self._in_flight == 0:
            return True
        if self.dearest_turn is None:
            return False
        return (self._in_flight + 1) * self.dearest_turn <= self.cap - self.spent

    async def enter(self) -> None:
        """Wait for room for one more model call; raise LimitExceeded once the cap is reached."""
        while True:
            if self.reached():
                raise self.limit()
            if self._room_for_one_more():
                self._in_flight += 1
                return
            await self._wake.wait()

    def leave(self, cost: float | None) -> None:
        self._in_flight -= 1
        if cost is not None:
            self.spent += cost
            self.dearest_turn = max(self.dearest_turn or 0.0, cost)
        self._wake.set()  # everyone waiting looks again; later waiters wait for the next change
        self._wake = asyncio.Event()


class BudgetedModel(Model):
    """`inner` with every call passing the shared budget; a call's cost by `cost_of` its usage."""

    def __init__(self, inner: Model, budget: SharedBudget, cost_of: CostFn) -> None:
        self.inner = inner
        self.name = inner.name
        self.budget = budget
        self.cost_of = cost_of

    async def complete(self, request: ModelRequest) -> ModelResponse:
        await self.budget.enter()
        cost: float | None = None
        try:
            response = await self.inner.complete(request)
            cost = self.cost_of({response.model: response.usage})
            return response
        finally:
            self.budget.leave(cost)

    async def aclose(self) -> None:
        await self.inner.aclose()
