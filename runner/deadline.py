"""Waiting that the run's clock covers, and work a signal must not cut in half.

- `blocking(fn, limit_s=...)`: a blocking call (the Docker SDK) in a daemon thread, waited for at
  most `limit_s` and never past a cancellation. `asyncio.to_thread` cannot do that: its thread
  runs on after a timeout or a signal, and `asyncio.run` waits for it at exit (a hung Docker
  daemon once turned a 60 s wall clock into 399 s). An abandoned thread's result is dropped; it
  ends with its own request timeout, or with the process.
- `to_the_end(aw)`: await `aw` to its end even when the awaiting task is cancelled meanwhile
  (`asyncio.shield` alone lets the cancellation through to the awaiting task, which then leaves
  `aw` running unowned). Returns how many cancellations arrived, so the caller can honour them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class CallTimedOut(TimeoutError):
    """A blocking call did not return within its limit (it was abandoned, not stopped)."""


async def blocking(fn: Callable[[], T], *, limit_s: float | None, what: str) -> T:
    """`fn()` in a daemon thread; raise CallTimedOut after `limit_s` (None: no limit of its own,
    but a cancellation still stops the waiting at once)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(value)  # type: ignore[arg-type]

    def target() -> None:
        try:
            value, error = fn(), None
        except BaseException as exc:  # handed to the waiting coroutine, which raises it
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=target, name=f"astra-{what}", daemon=True).start()
    try:
        async with asyncio.timeout(limit_s):
            return await done
    except TimeoutError:
        raise CallTimedOut(f"{what}: no answer within {limit_s:g}s") from None


async def to_the_end(aw: Awaitable[T]) -> tuple[T, int]:
    """(`aw`'s result, how many times the current task was cancelled while waiting for it)."""
    inner = asyncio.ensure_future(aw)
    task = asyncio.current_task()
    cancels = 0
    while True:
        try:
            return await asyncio.shield(inner), cancels
        except asyncio.CancelledError:
            if inner.done():  # cancelled from the inside, or it ended as we were cancelled
                if not inner.cancelled() and task is not None and task.cancelling():
                    task.uncancel()
                    cancels += 1
                return inner.result(), cancels
            if task is not None:
                task.uncancel()
            cancels += 1
