"""Every outcome the call tracker knows, on a real Asterisk, checked against SIP.

All the calls run at once (each volunteer has their own phone), so the tier
pays the longest one (a contact who never answers: the dialplan's 30 s ring)
once.  Each test then checks one call against SIPp's message trace, the
ground truth: the stored row, its timestamps, and the organizer's live panel.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.store.models import CallAttempt
from tests.pbx.conftest import (
    UNPLUGGED,
    VOLUNTEER_BUSY,
    VOLUNTEER_DECLINES,
    VOLUNTEER_HANGS_UP,
    VOLUNTEER_NO_ANSWER,
    RealPbx,
)
from tests.pbx.product import (
    Browser,
    LiveRecorder,
    World,
    close_to,
    dialer_running,
    seed,
    stored_call,
    truncate_all,
    utc,
)
from tests.pbx.realpbx import Dialog

# One xdist worker for the whole module: its module fixture starts its own
# Asterisk (and waits out ring timeouts), which split tests would do twice.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pbx_outcomes")]


@dataclass(frozen=True)
class Scenario:
    extension: str
    number: str  # the carrier acts on its last digit (tests/pbx/scenarios/carrier.xml)
    # What the volunteer or the organizer does once the call reaches a state.
    action: tuple[str, str] | None = None  # (state, "volunteer" | "organizer")


SCENARIOS: dict[str, Scenario] = {
    # Desk phone answers; the contact answers after 1 s, talks 3 s, hangs up.
    "completed": Scenario("1001", "+15145550100"),
    "contact_busy": Scenario("1002", "+15145550111"),
    # Rings until the dialplan's DIALER_RING_TIMEOUT (30 s) runs out.
    "contact_no_answer": Scenario("1003", "+15145550122"),
    # 603 Decline reaches Dial() as NOANSWER with cause 21.
    "contact_rejected": Scenario("1004", "+15145550133"),
    # 503 Service Unavailable.
    "contact_congestion": Scenario("1005", "+15145550146"),
    # 404 Not Found (an unallocated number): NOANSWER with cause 1.
    "contact_unreachable": Scenario("1006", "+15145550157"),
    "volunteer_busy": Scenario(VOLUNTEER_BUSY, "+15145550160"),
    "volunteer_declines": Scenario(VOLUNTEER_DECLINES, "+15145550161"),
    "volunteer_no_answer": Scenario(VOLUNTEER_NO_ANSWER, "+15145550170"),
    "volunteer_unreachable": Scenario(UNPLUGGED, "+15145550180"),
    # The volunteer's phone sends BYE itself, 3 s after answering, while the
    # contact (answered 1 s after the dial) is still talking.
    "volunteer_sends_bye": Scenario(VOLUNTEER_HANGS_UP, "+15145550185"),
    # The volunteer's phone hangs up while the contact's still rings.
    "volunteer_bye_while_contact_rings": Scenario("1040", "+15145550192"),
    "hung_up_by_operator": Scenario("1007", "+15145550195", ("talking", "organizer")),
    "hang_up_while_contact_rings": Scenario(
        "1008", "+15145550202", ("ringing_contact", "volunteer")
    ),
    # The dialplan is the second line of defence.  The dialer and the shipped
    # dialplan refuse the same numbers (dialer/domain/dial_rules.py), so this
    # batch's dialer allows the Dominican Republic (DIALER_ALLOWED_DESTINATIONS)
    # while the dialplan, not regenerated with --allow DO, still refuses it as
    # billed at international rates: the volunteer's leg is hung up with cause 34.
    "refused_by_dialplan": Scenario("1009", "+18092345678"),
}


@dataclass
class Batch:
    pbx: RealPbx
    world: World
    sessions: async_sessionmaker[AsyncSession]
    live: LiveRecorder
    call_ids: dict[str, str] = field(default_factory=dict)
    requested_at: dict[str, datetime] = field(default_factory=dict)

    async def row(self, name: str) -> CallAttempt:
        return await stored_call(self.sessions, self.call_ids[name])

    def states(self, name: str) -> list[str]:
        return self.live.states.get(self.call_ids[name], [])

    async def contact_leg(self, name: str) -> Dialog:
        return await self.pbx.carrier.dialog(SCENARIOS[name].number.lstrip("+"))

    async def volunteer_leg(self, name: str) -> Dialog:
        extension = SCENARIOS[name].extension
        return await self.pbx.ua_of(extension).dialog(extension)


async def _play(
    name: str, scenario: Scenario, batch: Batch, volunteer: Browser, organizer: Browser
) -> None:
    batch.requested_at[name] = datetime.now().astimezone()
    call_id = await volunteer.click_call(batch.world, name)
    batch.call_ids[name] = call_id
    if scenario.action is not None:
        state, who = scenario.action
        await batch.live.until(call_id, state)
        actor = volunteer if who == "volunteer" else organizer
        status, body = await actor.api("POST", f"/api/calls/{call_id}/hangup")
        assert status == 202, body
    await volunteer.wait_for(call_id, "ended", timeout=90)


@pytest.fixture(scope="module")
async def batch(
    pbx: RealPbx, pg_url: str, session_maker: async_sessionmaker[AsyncSession], pbx_folder: Path
) -> AsyncIterator[Batch]:
    volunteers = {f"v{scenario.extension}": scenario.extension for scenario in SCENARIOS.values()}
    contacts = {name: (s.number, f"v{s.extension}") for name, s in SCENARIOS.items()}
    # Emptied even when setting up fails half-way, or the next module's
    # users would collide with these.
    try:
        world = await seed(session_maker, volunteers, contacts)
        async with dialer_running(
            pg_url, pbx.asterisk, pbx_folder, DIALER_ALLOWED_DESTINATIONS="CA,US,DO"
        ) as dialer:
            live = LiveRecorder()
            async with live.recording(dialer.url):
                result = Batch(pbx, world, session_maker, live)
                async with Browser.signed_in(dialer.url, "olivia") as organizer:
                    plays: list[Callable[[], Awaitable[None]]] = []
                    browsers: list[Any] = []
                    for name, scenario in SCENARIOS.items():
                        browser = Browser.signed_in(dialer.url, f"v{scenario.extension}")
                        browsers.append(browser)
                        volunteer = await browser.__aenter__()
                        plays.append(
                            lambda n=name, s=scenario, v=volunteer: _play(
                                n, s, result, v, organizer
                            )
                        )
                    try:
                        await asyncio.gather(*(play() for play in plays))
                        # The panel gets the end a moment after the database.
                        for call_id in result.call_ids.values():
                            await live.until(call_id, "ended", timeout=10)
                    finally:
                        for browser in browsers:
                            await browser.__aexit__(None, None, None)
                yield result
    finally:
        await truncate_all(session_maker)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_every_call_ends_with_its_outcome_on_the_panel(batch: Batch, name: str) -> None:
    expected = {
        "volunteer_declines": "volunteer_busy",
        "volunteer_sends_bye": "completed",
        "volunteer_bye_while_contact_rings": "hung_up_by_volunteer",
        "hang_up_while_contact_rings": "hung_up_by_volunteer",
        "refused_by_dialplan": "failed",
    }.get(name, name)
    row = await batch.row(name)
    assert row.state.value == "ended"
    assert row.outcome is not None and row.outcome.value == expected, (
        row.outcome,
        row.failure_reason,
    )
    assert row.ended_at is not None
    ended = await batch.live.until(batch.call_ids[name], "ended")
    assert ended["outcome"] == expected
    assert batch.states(name)[-1] == "ended"


async def test_a_completed_call_is_timed_by_the_sip_messages(batch: Batch) -> None:
    row = await batch.row("completed")
    volunteer, contact = (
        await batch.volunteer_leg("completed"),
        await batch.contact_leg("completed"),
    )
    assert close_to(row.volunteer_answered_at, volunteer.answered_at)
    assert close_to(row.contact_answered_at, contact.answered_at)
    # The contact hung up (the carrier sent BYE), and the call ended then.
    assert contact.bye_from() == "ua"
    assert close_to(row.ended_at, contact.ended_at)
    assert row.contact_hangup_cause == 16
    assert row.caller_id == "+15145550000"
    # The contact sees the campaign's number, and not their own name.
    for header in ("from", "p-asserted-identity"):
        assert "sip:15145550000@" in contact.invite.headers[header]
        assert "Completed" not in contact.invite.headers[header]
    # The panel showed the call's steps in order, ending with the talk and its end
    # (a step can be merged into the next when two events land together).
    order = [
        "requested",
        "ringing_volunteer",
        "volunteer_answered",
        "ringing_contact",
        "talking",
        "ended",
    ]
    shown = batch.states("completed")
    assert shown == sorted(shown, key=order.index)
    assert shown[-2:] == ["talking", "ended"]


async def test_contact_busy_and_rejected_are_what_the_carrier_answered(batch: Batch) -> None:
    assert (await batch.contact_leg("contact_busy")).final_status == 486
    assert (await batch.contact_leg("contact_rejected")).final_status == 603
    assert (await batch.contact_leg("contact_congestion")).final_status == 503
    assert (await batch.contact_leg("contact_unreachable")).final_status == 404
    for name in ("contact_busy", "contact_rejected", "contact_congestion", "contact_unreachable"):
        row = await batch.row(name)
        assert row.contact_answered_at is None
        assert "talking" not in batch.states(name)


async def test_a_contact_who_never_answers_is_cancelled_after_the_ring_timeout(
    batch: Batch,
) -> None:
    contact = await batch.contact_leg("contact_no_answer")
    assert contact.final_status == 487
    cancel = contact.first(method="CANCEL")
    assert cancel is not None
    rang = (cancel.at - contact.invite.at).total_seconds()
    assert 29 <= rang <= 32  # DIALER_RING_TIMEOUT=30 in the shipped dialplan
    row = await batch.row("contact_no_answer")
    assert close_to(row.ended_at, cancel.at)


async def test_volunteer_phone_outcomes_match_what_the_phone_did(batch: Batch) -> None:
    assert (await batch.volunteer_leg("volunteer_busy")).final_status == 486
    assert (await batch.volunteer_leg("volunteer_declines")).final_status == 603
    no_answer = await batch.volunteer_leg("volunteer_no_answer")
    assert no_answer.final_status == 487 and no_answer.first(method="CANCEL") is not None
    # Nobody dialed a contact for any of them.
    for name in (
        "volunteer_busy",
        "volunteer_declines",
        "volunteer_no_answer",
        "volunteer_unreachable",
    ):
        number = SCENARIOS[name].number.lstrip("+")
        assert batch.pbx.carrier.dialogs(number) == []
        assert (await batch.row(name)).volunteer_answered_at is None


async def test_an_unplugged_phone_is_refused_at_once_and_nothing_rings(batch: Batch) -> None:
    row = await batch.row("volunteer_unreachable")
    assert row.outcome is not None and row.outcome.value == "volunteer_unreachable"
    # Asterisk refused it at once (qualify had it Unavailable), long before
    # the Originate's 6 s timeout.
    assert row.ended_at is not None
    assert (utc(row.ended_at) - batch.requested_at["volunteer_unreachable"]).total_seconds() < 4
    assert "ringing_volunteer" not in batch.states("volunteer_unreachable")


async def test_a_volunteer_phone_that_hangs_up_itself_ends_the_call(batch: Batch) -> None:
    volunteer = await batch.volunteer_leg("volunteer_sends_bye")
    assert volunteer.bye_from() == "ua"
    contact = await batch.contact_leg("volunteer_sends_bye")
    # Asterisk then hung the contact up.
    assert contact.bye_from() == "asterisk"
    row = await batch.row("volunteer_sends_bye")
    assert close_to(row.contact_answered_at, contact.answered_at)
    assert close_to(row.ended_at, volunteer.ended_at)

    ringing = await batch.volunteer_leg("volunteer_bye_while_contact_rings")
    assert ringing.bye_from() == "ua"
    cancelled = await batch.contact_leg("volunteer_bye_while_contact_rings")
    assert cancelled.first(method="CANCEL") is not None and cancelled.answered_at is None


async def test_hang_ups_from_the_app_reach_the_phones(batch: Batch) -> None:
    # The organizer hung up a talking call: Asterisk sent BYE to both phones.
    operator = await batch.row("hung_up_by_operator")
    contact = await batch.contact_leg("hung_up_by_operator")
    assert contact.answered_at is not None and contact.bye_from() == "asterisk"
    assert close_to(operator.ended_at, contact.ended_at)
    assert (await batch.volunteer_leg("hung_up_by_operator")).bye_from() == "asterisk"
    # The volunteer hung up while the contact rang: the carrier got CANCEL.
    ringing = await batch.contact_leg("hang_up_while_contact_rings")
    assert ringing.first(method="CANCEL") is not None and ringing.answered_at is None
    assert (await batch.row("hang_up_while_contact_rings")).contact_answered_at is None


async def test_the_dialplan_refuses_billed_numbers_and_logs_the_number(batch: Batch) -> None:
    assert batch.pbx.carrier.dialogs("18092345678") == []
    row = await batch.row("refused_by_dialplan")
    assert row.volunteer_hangup_cause == 34
    log = batch.pbx.asterisk.log()
    assert f"dialer call {row.call_id} to 18092345678 refused: international-rate" in log
