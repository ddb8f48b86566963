"""The two waiting primitives the fault handling rests on (runner/deadline.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from runner.deadline import CallTimedOut, blocking, to_the_end


async def test_to_the_end_outlives_cancellations_and_counts_them() -> None:
    finished = asyncio.Event()

    async def work() -> str:
        await asyncio.sleep(0.3)
        finished.set()
        return "done"

    async def runner() -> tuple[str, int]:
        return await to_the_end(work())

    task = asyncio.create_task(runner())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()
    assert await task == ("done", 2)  # asyncio.shield alone: CancelledError here, `work` left unowned
    assert finished.is_set()


async def test_to_the_end_passes_the_inner_error_on() -> None:
    async def broken() -> None:
        raise ValueError("inner")

    with pytest.raises(ValueError, match="inner"):
        await to_the_end(broken())


async def test_blocking_gives_up_waiting_and_does_not_hold_the_loop() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(CallTimedOut, match=r"no answer within 0\.2s"):
        await blocking(lambda: release.wait(30), limit_s=0.2, what="hung")
    assert time.monotonic() - started < 2
    release.set()
    assert await blocking(lambda: 42, limit_s=None, what="quick") == 42
    with pytest.raises(ZeroDivisionError):
        await blocking(lambda: 1 // 0, limit_s=1, what="raises")


def test_an_abandoned_call_does_not_delay_the_exit_of_asyncio_run() -> None:
    """asyncio.to_thread's thread is waited for by asyncio.run at exit; ours is not."""
    release = threading.Event()

    async def main() -> None:
        task = asyncio.create_task(blocking(lambda: release.wait(30), limit_s=None, what="hung"))
        await asyncio.sleep(0.1)
        task.cancel()

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 5
    release.set()
