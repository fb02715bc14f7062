"""Worker and web tier apart: requests and hang-ups reach a worker in another
process through PostgreSQL, several workers on several PBXs share one
database, and web processes follow live state over a real Mosquitto that
restarts mid-call."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator, ContactBehaviour, ContactOutcome
from dialer.domain.compliance import CallRefused, RefusalCode
from dialer.domain.vocabulary import CallOutcome, CallState
from dialer.live.broadcaster import Broadcaster
from dialer.live.mqtt import MqttLiveFeed, MqttPublisher
from dialer.runtime.bootstrap import build_runtime
from dialer.runtime.settings import Settings
from dialer.store.models import CallAttempt, User
from dialer.store.notify import CALL_REQUESTS, HANGUP_REQUESTS, PgListener, asyncpg_dsn
from tests.integration.pbx_harness import SECRET, Harness, running_worker
from tests.integration.world import CALLER_ID, build_world
from tests.support.network import free_port

Sessions = async_sessionmaker[AsyncSession]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def row(sessions: Sessions, call_id: str) -> CallAttempt:
    async with sessions() as session:
        call = await session.scalar(select(CallAttempt).where(CallAttempt.call_id == call_id))
    assert call is not None
    return call


async def state_of(sessions: Sessions, call_id: str) -> CallState:
    return (await row(sessions, call_id)).state


@contextlib.asynccontextmanager
async def listening(
    pg_url: str, harness: Harness, pbx: str = "default"
) -> AsyncIterator[PgListener]:
    listener = PgListener(
        asyncpg_dsn(pg_url),
        {CALL_REQUESTS: harness.worker.wake, HANGUP_REQUESTS: harness.worker.wake_hangups},
        pbx=pbx,
    )
    task = asyncio.create_task(listener.run())
    try:
        await until(lambda: listener.connected)
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_requests_and_hangups_from_another_process_wake_the_worker_at_once(
    pg_url: str, sessions: Sessions, simulator: AmiSimulator
) -> None:
    world = await build_world(sessions)
    async with running_worker(world, simulator) as harness, listening(pg_url, harness):
        # Nothing in this process wakes the worker, and it polls only every
        # 30 s: only the NOTIFY can make it act within the second.
        harness.worker.poll_interval = 30
        await asyncio.sleep(0.2)  # the loops take the long wait
        web_tier = world.service()
        started = time.monotonic()
        call = await web_tier.start_call(
            volunteer_id=world.users["alice"],
            contact_id=world.contacts["montreal"],  # ...4: answers and stays
            campaign_id=world.campaign_id,
        )
        await eventually(lambda: _is(sessions, call.call_id, CallState.TALKING), timeout=5)
        assert time.monotonic() - started < 3

        started = time.monotonic()
        await web_tier.hang_up(world.users["olivia"], call.call_id)
        await eventually(lambda: _is(sessions, call.call_id, CallState.ENDED), timeout=5)
        assert time.monotonic() - started < 3
        ended = await row(sessions, call.call_id)
        assert ended.outcome is CallOutcome.HUNG_UP_BY_OPERATOR
        assert simulator.action_counts["Originate"] == 1


async def test_the_listener_comes_back_after_its_connection_is_killed(
    pg_url: str, sessions: Sessions, simulator: AmiSimulator
) -> None:
    world = await build_world(sessions)
    async with running_worker(world, simulator) as harness, listening(pg_url, harness) as listener:
        harness.worker.poll_interval = 30
        await asyncio.sleep(0.2)
        async with sessions() as session:
            killed = await session.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'dialer-listener-default'"
                    # Another xdist worker's test database has a listener of its own.
                    " AND datname = current_database()"
                )
            )
        assert killed == 1
        await until(lambda: listener.reconnects >= 1 and listener.connected)
        call = await world.service().start_call(
            volunteer_id=world.users["alice"],
            contact_id=world.contacts["montreal"],
            campaign_id=world.campaign_id,
        )
        await eventually(lambda: _is(sessions, call.call_id, CallState.TALKING), timeout=5)


async def _is(sessions: Sessions, call_id: str, state: CallState) -> bool:
    return await state_of(sessions, call_id) is state


async def test_a_hangup_asked_before_the_worker_starts_is_carried_out_after(
    sessions: Sessions, simulator: AmiSimulator
) -> None:
    """Hang-up requests are rows: a worker that was away when asked still does it."""
    world = await build_world(sessions)
    web_tier = world.service()
    call = await web_tier.start_call(
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
    )
    await web_tier.hang_up(world.users["alice"], call.call_id)
    async with running_worker(world, simulator):
        await eventually(lambda: _is(sessions, call.call_id, CallState.ENDED))
    ended = await row(sessions, call.call_id)
    assert ended.outcome is CallOutcome.HUNG_UP_BY_VOLUNTEER
    # Cancelled before it was dialed: the phone never rang.
    assert simulator.action_counts["Originate"] == 0


async def test_two_workers_on_two_pbxs_share_one_database_without_double_dialing(
    sessions: Sessions,
) -> None:
    world = await build_world(sessions)
    async with sessions.begin() as session:
        await session.execute(
            update(User).where(User.id == world.users["alice"]).values(pbx="east")
        )
        await session.execute(update(User).where(User.id == world.users["bob"]).values(pbx="west"))
    east = AmiSimulator(username="dialer", secret=SECRET, least_privilege=True, time_scale=0.02)
    west = AmiSimulator(username="dialer", secret=SECRET, least_privilege=True, time_scale=0.02)
    await east.start()
    await west.start()
    try:
        async with (
            running_worker(world, east, pbx_name="east"),
            running_worker(world, west, pbx_name="west"),
        ):
            # The web tier: no worker of its own, its default PBX unused.
            web_tier = world.service(pbx_name="nowhere")
            # Two volunteers click the same contact at the same moment.
            results = await asyncio.gather(
                *(
                    web_tier.start_call(
                        volunteer_id=world.users[name],
                        contact_id=world.contacts["montreal"],
                        campaign_id=world.campaign_id,
                    )
                    for name in ("alice", "bob")
                ),
                return_exceptions=True,
            )
            placed = [result for result in results if isinstance(result, CallAttempt)]
            refused = [result for result in results if isinstance(result, CallRefused)]
            assert len(placed) == 1 and len(refused) == 1, results
            assert refused[0].refusal.code is RefusalCode.CONTACT_BEING_CALLED
            winner = placed[0]
            owner = east if winner.volunteer_id == world.users["alice"] else west
            await eventually(lambda: _is(sessions, winner.call_id, CallState.TALKING))
            assert owner.action_counts["Originate"] == 1
            assert east.action_counts["Originate"] + west.action_counts["Originate"] == 1
            assert (await row(sessions, winner.call_id)).pbx == (
                "east" if owner is east else "west"
            )

            # The one who lost the race calls someone else, on their own PBX.
            loser = "bob" if owner is east else "alice"
            other = await web_tier.start_call(
                volunteer_id=world.users[loser],
                contact_id=world.contacts["paris" if loser == "alice" else "bob_contact"],
                campaign_id=world.campaign_id,
            )
            await eventually(lambda: _is(sessions, other.call_id, CallState.ENDED))
            assert east.action_counts["Originate"] == 1 and west.action_counts["Originate"] == 1

            # Each worker hangs up only its own PBX's calls.
            hangup_by = world.users["olivia"]
            await web_tier.hang_up(hangup_by, winner.call_id)
            await eventually(lambda: _is(sessions, winner.call_id, CallState.ENDED))
            assert owner.action_counts["Hangup"] == 1
            assert (west if owner is east else east).action_counts["Hangup"] == 0
    finally:
        await east.stop()
        await west.stop()


# -- live state over a broker that restarts -------------------------------------


async def start_broker(port: int) -> asyncio.subprocess.Process:
    """A private Mosquitto (no persistence): a restart forgets every retained message."""
    process = await asyncio.create_subprocess_exec(
        "mosquitto",
        "-p",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(10):
        while True:
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return process
            except OSError:
                await asyncio.sleep(0.05)


async def stop_broker(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


def live_calls(broadcaster: Broadcaster) -> dict[str, str]:
    return {event.key: event.payload["state"] for event in broadcaster.snapshot("call")}


async def test_a_broker_restart_mid_call_changes_nothing_for_calls_and_state_comes_back(
    sessions: Sessions, simulator: AmiSimulator
) -> None:
    world = await build_world(sessions)
    # Both of these stay on the line until hung up.
    simulator.script_contact("+15145550185", ContactBehaviour(ContactOutcome.ANSWER, 0.1))
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    broker = await start_broker(port)
    async with running_worker(world, simulator) as harness:
        publisher = MqttPublisher(
            harness.service.broadcaster, url, prefix=prefix, reconnect_max_delay=0.2
        )
        web_view = Broadcaster()  # what a web process shows
        feed = MqttLiveFeed(
            web_view,
            url,
            prefix=prefix,
            ended_calls=harness.service.publisher.final_states,
            reconnect_max_delay=0.2,
        )
        tasks = [asyncio.create_task(publisher.run()), asyncio.create_task(feed.run())]
        try:
            first = await harness.call("montreal", "alice")
            second = await harness.call("bob_contact", "bob")
            for call_id in (first, second):
                await harness.wait_for(call_id, CallState.TALKING)
            await until(lambda: live_calls(web_view) == {first: "talking", second: "talking"})

            await stop_broker(broker)
            # Calls go on without the broker: one is hung up meanwhile.
            await harness.service.hang_up(world.users["olivia"], first)
            ended = await harness.wait_for(first, CallState.ENDED)
            assert ended.outcome is CallOutcome.HUNG_UP_BY_OPERATOR
            assert await state_of(sessions, second) is CallState.TALKING
            assert first in live_calls(web_view)  # the web view cannot know yet

            broker = await start_broker(port)  # empty: no retained state survived
            # The worker publishes the current state again; the web view
            # drops the call that ended while it could not hear.
            await until(lambda: live_calls(web_view) == {second: "talking"}, timeout=30)
            assert publisher.reconnects >= 1 and feed.reconnects >= 1
            assert await state_of(sessions, second) is CallState.TALKING
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await stop_broker(broker)


def test_the_feed_ignores_what_it_does_not_understand() -> None:
    view = Broadcaster()
    feed = MqttLiveFeed(view, "mqtt://127.0.0.1", prefix="org/dialer")
    feed.apply("org/dialer/calls/c1", b"{not json")
    feed.apply("org/dialer/calls/c1", b"[1, 2]")
    feed.apply("elsewhere/calls/c1", b'{"state": "talking"}')
    feed.apply("org/dialer/unknown/c1", b'{"state": "talking"}')
    feed.apply("org/dialer/calls/c1", b"")  # a retained message being cleared
    assert view.snapshot() == []
    feed.apply("org/dialer/calls/c1", b'{"call_id": "c1", "state": "talking"}')
    feed.apply("org/dialer/volunteers/7/status", b'{"volunteer_id": 7, "status": "on_call"}')
    assert live_calls(view) == {"c1": "talking"}
    feed.apply("org/dialer/calls/c1", b'{"call_id": "c1", "state": "ended"}')
    assert live_calls(view) == {}
    assert [event.kind for event in view.snapshot()] == ["volunteer"]


async def test_a_web_process_refuses_calls_while_their_pbx_is_down_and_frees_stuck_volunteers(
    pg_url: str, sessions: Sessions
) -> None:
    world = await build_world(sessions)
    async with sessions.begin() as session:
        await session.execute(
            update(User).where(User.id == world.users["alice"]).values(pbx="east")
        )
    # A web process: what it knows of workers comes over MQTT into its broadcaster.
    runtime = build_runtime(
        Settings(
            _env_file=None,
            database_url=SecretStr(pg_url),
            allowed_destinations="CA,+33",
            default_caller_id=CALLER_ID,
        )
    )
    runtime.service.clock = world.clock  # inside calling hours
    feed = MqttLiveFeed(runtime.broadcaster, "mqtt://127.0.0.1", prefix="dialer")

    def request() -> Awaitable[CallAttempt]:
        return runtime.service.start_call(
            volunteer_id=world.users["alice"],
            contact_id=world.contacts["montreal"],
            campaign_id=world.campaign_id,
        )

    try:
        feed.apply("dialer/workers/east/status", b'{"status": "online", "ami": "disconnected"}')
        with pytest.raises(CallRefused) as refused:
            await request()
        assert refused.value.refusal.code is RefusalCode.PBX_UNAVAILABLE
        feed.apply("dialer/workers/east/status", b'{"status": "offline"}')  # the MQTT will
        with pytest.raises(CallRefused):
            await request()

        # Up again; the request is taken, then the worker dies before dialing it.
        feed.apply("dialer/workers/east/status", b'{"status": "online", "ami": "connected"}')
        stuck = await request()
        feed.apply("dialer/workers/east/status", b'{"status": "offline"}')
        # Alice hangs up: no worker will act, so the request ends here and now.
        await runtime.service.hang_up(world.users["alice"], stuck.call_id)
        ended = await row(sessions, stuck.call_id)
        assert (ended.state, ended.outcome) == (CallState.ENDED, CallOutcome.HUNG_UP_BY_VOLUNTEER)
        assert live_calls(runtime.broadcaster) == {}
        # She is free again: a new call is refused only because the PBX is down.
        with pytest.raises(CallRefused) as refused:
            await request()
        assert refused.value.refusal.code is RefusalCode.PBX_UNAVAILABLE
    finally:
        await runtime.close()


async def test_a_task_that_ignores_its_cancellation_is_named_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from dialer.runtime.bootstrap import stuck_after

    released = False

    async def stubborn() -> None:
        while not released:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)

    async def obedient() -> None:
        await asyncio.sleep(10)

    tasks = [asyncio.create_task(stubborn(), name="stubborn"), asyncio.create_task(obedient())]
    await asyncio.sleep(0)  # both running
    for task in tasks:
        task.cancel()
    try:
        assert await stuck_after(tasks, 0.2) == [tasks[0]]
        assert "task stubborn did not stop within 0s" in caplog.text
        assert "in stubborn" in caplog.text  # its stack says where it hangs
    finally:
        released = True
        await asyncio.wait_for(tasks[0], 1)
