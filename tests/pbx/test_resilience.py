"""Calls that outlive a worker, an AMI connection or Asterisk itself, on a real PBX.

Each test drives `dialer serve` (or `dialer worker`) processes through the
JSON API, breaks something mid-call, and checks the stored call against
SIPp's trace: the times a call got before the break are kept, and the
product carries on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.tools.replay import replay
from tests.pbx.conftest import STANDARD_UAS, RealPbx, pbx_running, standard_phones, start_pbx
from tests.pbx.product import (
    Browser,
    DialerProcess,
    LiveRecorder,
    close_to,
    dialer_running,
    seed,
    stored_call,
    utc,
)
from tests.support.tcp_proxy import TcpProxy

# One xdist worker for the whole module: its module fixture starts its own
# Asterisk (and waits out ring timeouts), which split tests would do twice.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pbx_resilience")]


@pytest.fixture(scope="module")
async def spare_pbx(pbx_folder: Path) -> AsyncIterator[RealPbx]:
    """A second real Asterisk, for a second worker and for restarting Asterisk."""
    asterisk, agents = await start_pbx(pbx_folder / "spare", STANDARD_UAS, standard_phones())
    async with pbx_running(asterisk, agents) as running:
        await asterisk.wait_for_contacts({"1001": "Avail", "carrier": "Avail"})
        yield running


async def _talking(browser: Browser, call_id: str) -> None:
    body = await browser.wait_for(call_id, "talking", timeout=20)
    assert body["state"] == "talking", body


async def test_a_worker_killed_mid_call_keeps_the_answer_times_and_its_trace_replays(
    pbx: RealPbx, pg_url: str, db: async_sessionmaker[AsyncSession], pbx_folder: Path
) -> None:
    world = await seed(db, {"kim": "1010"}, {"karl": ("+15145550215", "kim")})
    trace = pbx_folder / "trace-kill" / "ami.ami"
    trace.parent.mkdir()
    first = DialerProcess(pg_url, pbx.asterisk, pbx_folder, DIALER_AMI_TRACE_FILE=str(trace))
    await first.start()
    async with Browser.signed_in(first.url, "kim") as kim:
        call_id = await kim.click_call(world, "karl")
        await _talking(kim, call_id)
    await asyncio.sleep(2)
    await first.kill()
    await asyncio.sleep(3)  # the call goes on in Asterisk with nobody watching
    async with (
        dialer_running(
            pg_url, pbx.asterisk, pbx_folder, DIALER_AMI_TRACE_FILE=str(trace)
        ) as second,
        Browser.signed_in(second.url, "olivia") as organizer,
    ):
        # Re-attached by the resync: the organizer can hang it up.
        await asyncio.sleep(1)
        status, body = await organizer.api("POST", f"/api/calls/{call_id}/hangup")
        assert status == 202, body
        await organizer.wait_for(call_id, "ended", timeout=20)

    row = await stored_call(db, call_id)
    contact = await pbx.carrier.dialog("15145550215")
    volunteer = await pbx.ua_of("1010").dialog("1010")
    assert row.outcome is not None and row.outcome.value == "hung_up_by_operator"
    assert not row.needs_review
    # The times seen as they happened, not the restarted worker's resync time.
    assert close_to(row.contact_answered_at, contact.answered_at)
    assert close_to(row.volunteer_answered_at, volunteer.answered_at)
    assert close_to(row.ended_at, contact.ended_at)
    assert contact.bye_from() == "asterisk"

    # The wire trace of both runs: one file per AMI connection, the secret
    # masked, and `dialer replay` follows the call across the restart.
    files = sorted(trace.parent.glob("ami-*.ami"))
    assert len(files) == 2
    text = "".join(path.read_bytes().decode() for path in files)
    assert pbx.asterisk.ami_secret not in text
    assert "Secret: ********\r\n" in text
    assert "Action: Originate\r\n" in text and f"ChannelId: {call_id}-v\r\n" in text
    [replayed] = [line for line in replay(*files) if line["call_id"] == call_id]
    assert replayed["outcome"] == "hung_up_by_operator"


async def test_a_call_that_ends_while_the_worker_is_down_is_settled_for_review(
    pbx: RealPbx, pg_url: str, db: async_sessionmaker[AsyncSession], pbx_folder: Path
) -> None:
    world = await seed(db, {"lea": "1011"}, {"lou": ("+15145550220", "lea")})
    first = DialerProcess(pg_url, pbx.asterisk, pbx_folder)
    await first.start()
    async with Browser.signed_in(first.url, "lea") as lea:
        call_id = await lea.click_call(world, "lou")
        await _talking(lea, call_id)
    await first.kill()
    # The contact talks 3 s, then hangs up: nobody watches it end.
    contact = await pbx.carrier.dialog("15145550220", timeout=15)
    assert contact.bye_from() == "ua"
    async with (
        dialer_running(pg_url, pbx.asterisk, pbx_folder) as second,
        Browser.signed_in(second.url, "lea") as lea,
    ):
        await lea.wait_for(call_id, "ended", timeout=20)
    row = await stored_call(db, call_id)
    # How it ended is unknown: flagged for a person to look at, and the
    # answer time it had is kept.
    assert row.outcome is not None and row.outcome.value == "lost"
    assert row.needs_review
    assert close_to(row.contact_answered_at, contact.answered_at)
    assert row.ended_at is not None and contact.ended_at is not None
    assert utc(row.ended_at) >= contact.ended_at  # type: ignore[operator]


async def test_an_ami_connection_cut_mid_call_is_resynced_and_the_call_goes_on(
    pbx: RealPbx, pg_url: str, db: async_sessionmaker[AsyncSession], pbx_folder: Path
) -> None:
    world = await seed(db, {"max": "1012"}, {"mia": ("+15145550225", "max")})
    proxy = TcpProxy("127.0.0.1", pbx.asterisk.ami_port)
    await proxy.start()
    try:
        async with dialer_running(pg_url, pbx.asterisk, pbx_folder, ami_port=proxy.port) as dialer:
            live = LiveRecorder()
            async with (
                live.recording(dialer.url),
                Browser.signed_in(dialer.url, "max") as max_,
            ):
                call_id = await max_.click_call(world, "mia")
                await live.until(call_id, "talking")
                proxy.cut()
                await asyncio.sleep(2)
                assert (await stored_call(db, call_id)).state.value == "talking"
                proxy.restore()
                await dialer.wait_healthy()  # AMI connected again
                status, body = await max_.api("POST", f"/api/calls/{call_id}/hangup")
                assert status == 202, body
                ended = await live.until(call_id, "ended")
    finally:
        await proxy.stop()
    # The volunteer hung up a talking call: a completed conversation.
    assert ended["outcome"] == "completed"
    row = await stored_call(db, call_id)
    contact = await pbx.carrier.dialog("15145550225")
    assert close_to(row.contact_answered_at, contact.answered_at)
    assert close_to(row.ended_at, contact.ended_at)
    assert not row.needs_review


async def test_two_workers_on_two_asterisks_share_one_database(
    pbx: RealPbx,
    spare_pbx: RealPbx,
    pg_url: str,
    db: async_sessionmaker[AsyncSession],
    pbx_folder: Path,
) -> None:
    world = await seed(
        db,
        {"ana": "1013", "ben": "1014"},
        {"abe": ("+15145550230", "ana"), "bea": ("+15145550240", "ben")},
        pbx_of={"ana": "east", "ben": "west"},
    )
    async with (
        dialer_running(pg_url, pbx.asterisk, pbx_folder, pbx_name="east") as east,
        dialer_running(pg_url, spare_pbx.asterisk, pbx_folder, command="worker", pbx_name="west"),
        Browser.signed_in(east.url, "ana") as ana,
        Browser.signed_in(east.url, "ben") as ben,
    ):
        # Both click on the east web app; each call rings on its own PBX.
        first = await ana.click_call(world, "abe")
        second = await ben.click_call(world, "bea")
        assert (await ana.wait_for(first, timeout=30))["outcome"] == "completed"
        assert (await ben.wait_for(second, timeout=30))["outcome"] == "completed"
    assert pbx.carrier.dialogs("15145550230") and not spare_pbx.carrier.dialogs("15145550230")
    assert spare_pbx.carrier.dialogs("15145550240") and not pbx.carrier.dialogs("15145550240")
    assert (await stored_call(db, first)).pbx == "east"
    assert (await stored_call(db, second)).pbx == "west"


async def test_asterisk_restarting_mid_call_ends_it_and_the_next_call_works(
    spare_pbx: RealPbx, pg_url: str, db: async_sessionmaker[AsyncSession], pbx_folder: Path
) -> None:
    world = await seed(
        db,
        {"rae": "1015"},
        {"ray": ("+15145550255", "rae"), "rex": ("+15145550260", "rae")},
    )
    async with (
        dialer_running(pg_url, spare_pbx.asterisk, pbx_folder) as dialer,
        Browser.signed_in(dialer.url, "rae") as rae,
    ):
        call_id = await rae.click_call(world, "ray")
        await _talking(rae, call_id)
        await spare_pbx.asterisk.restart_now()
        ended = await rae.wait_for(call_id, "ended", timeout=20)
        assert ended["outcome"] == "failed"
        row = await stored_call(db, call_id)
        assert row.failure_reason is not None and "shut down" in row.failure_reason
        contact = await spare_pbx.carrier.dialog("15145550255")
        assert contact.bye_from() == "asterisk"
        assert close_to(row.contact_answered_at, contact.answered_at)

        # Asterisk is back; the same dialer, never restarted, calls again.
        await spare_pbx.asterisk.wait_until_back()
        await spare_pbx.asterisk.wait_for_contacts({"1015": "Avail", "carrier": "Avail"})
        await dialer.wait_healthy()
        next_call = await rae.click_call(world, "rex")
        assert (await rae.wait_for(next_call, timeout=30))["outcome"] == "completed"
    assert spare_pbx.carrier.dialogs("15145550260")[-1].answered_at is not None
