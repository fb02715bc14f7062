"""Split mode: the web tier records (or skips) an outcome, and the worker, whose
live state every process shows, sets the volunteer back to available (issue
17, defect 3).  The two sides share only PostgreSQL here: the web tier's
publisher and broadcaster are its own, as in another process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator
from dialer.domain.outcomes import parse_submission
from dialer.domain.vocabulary import CallOutcome, CallState
from dialer.live.broadcaster import Broadcaster
from dialer.store.notify import OUTCOMES_SETTLED, PgListener, asyncpg_dsn
from tests.integration.pbx_harness import Harness, running_worker
from tests.integration.world import build_world

Sessions = async_sessionmaker[AsyncSession]


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


def status_of(broadcaster: Broadcaster, volunteer_id: int) -> tuple[str, str]:
    event = broadcaster.current("volunteer", str(volunteer_id))
    assert event is not None
    return event.payload["status"], event.payload["call_id"]


@pytest.fixture
async def worker_side(
    pg_url: str, sessions: Sessions, simulator: AmiSimulator
) -> AsyncIterator[Harness]:
    world = await build_world(sessions)
    async with running_worker(world, simulator) as harness:
        # Only the NOTIFY can make it act within the test's few seconds.
        harness.worker.wrap_up_poll_interval = 60
        listener = PgListener(
            asyncpg_dsn(pg_url), {OUTCOMES_SETTLED: harness.worker.wake_wrap_ups}, pbx="default"
        )
        task = asyncio.create_task(listener.run())
        try:
            await until(lambda: listener.connected)
            await asyncio.sleep(0.1)  # the wrap-up loop takes its long wait
            yield harness
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def answered_and_ended(harness: Harness) -> str:
    call_id = await harness.call("explicit_zone")  # answers, talks, hangs up
    ended = await harness.wait_for(call_id, CallState.ENDED)
    assert ended.outcome is CallOutcome.COMPLETED
    return call_id


async def test_an_outcome_saved_by_the_web_tier_frees_the_volunteer_on_the_workers_panel(
    worker_side: Harness,
) -> None:
    harness = worker_side
    alice = harness.world.users["alice"]
    shown = harness.service.broadcaster  # what MQTT carries to every web process
    call_id = await answered_and_ended(harness)
    await until(lambda: status_of(shown, alice) == ("wrap_up", call_id))

    web_tier = harness.world.outcomes()  # its own publisher and broadcaster
    assert web_tier.publisher.broadcaster is not shown
    await web_tier.record_outcome(
        alice,
        parse_submission(
            {
                "submission_id": "split-0001",
                "call_id": call_id,
                "contact_id": harness.world.contacts["explicit_zone"],
                "outcome": "answered",
                "consent": False,
            }
        ),
    )
    await until(lambda: status_of(shown, alice) == ("idle", call_id), timeout=3)


async def test_an_outcome_skipped_by_the_web_tier_frees_the_volunteer_too(
    worker_side: Harness,
) -> None:
    harness = worker_side
    alice = harness.world.users["alice"]
    shown = harness.service.broadcaster
    call_id = await answered_and_ended(harness)
    await until(lambda: status_of(shown, alice) == ("wrap_up", call_id))

    skipped = await harness.world.outcomes().skip_outcome(alice, call_id, reason="call_cut_off")
    assert skipped.skipped
    await until(lambda: status_of(shown, alice) == ("idle", call_id), timeout=3)
