"""A worker's loops wait for a wake-up or a timeout; stopping the worker must
stop them, even when the wake-up comes at the very moment it is stopped
(Python 3.11's ``asyncio.wait_for`` lost that cancellation, and a stopped
worker's heartbeat went on beating)."""

from __future__ import annotations

import asyncio

import pytest

from dialer.worker.call_worker import _woken


@pytest.mark.parametrize("turns_between", [0, 1, 2, 3])
async def test_a_loop_woken_as_it_is_cancelled_stops(turns_between: int) -> None:
    wakeup = asyncio.Event()

    async def loop() -> None:
        while True:
            await _woken(wakeup, 10.0)
            wakeup.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    wakeup.set()
    for _ in range(turns_between):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(1.0):
            await task


async def test_it_returns_at_the_timeout_without_a_wakeup() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await _woken(asyncio.Event(), 0.05)
    assert loop.time() - started >= 0.05
