"""Power mode on the real Asterisk: one volunteer leg, contact after contact.

The volunteer starts a session through the API as their page does; their
SIPp desk phone is called once and waits in a conference of its own; the
SIPp carrier plays each contact by the last digit of their number
(tests/pbx/scenarios/carrier.xml).  The volunteer records each answered
call's outcome, as their screen asks, and the next contact is dialed.

Ground truth: SIPp's trace (one INVITE to the desk phone for the whole
session; each contact's INVITE, answer and BYE at the carrier) and the
conference's own AMI events, read by an observer with full read access:
every contact joins the volunteer's conference while the volunteer is in
it, and none ever joins one the volunteer has left.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.vocabulary import CallOutcome, DialingMode, VolunteerPhone
from dialer.store.models import CallAttempt, Campaign, PowerSession, User
from tests.pbx.conftest import STANDARD_UAS, RealPbx, pbx_running, standard_phones, start_pbx
from tests.pbx.product import (
    ORGANIZER,
    AmiObserver,
    Browser,
    World,
    dialer_running,
    seed,
    truncate_all,
)
from tests.pbx.record_transcripts import recorder_user

# One xdist worker for the whole module: it starts its own Asterisk.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pbx_power")]

VOLUNTEER = ("paula", "1020")
# The carrier by last digit: 0 answers after 1 s and hangs up 3 s later,
# 1 busy, 3 declines (603), 5 answers and stays, 6 congested (503), 9 not
# found (404).  Ten contacts, every outcome but "no answer" (its 30 s ring
# would make this test twice as long; the dialplan's ring time is the same
# as a click's, tested in test_outcomes).
CONTACTS: dict[str, tuple[str, CallOutcome]] = {
    "c01": ("+15145550300", CallOutcome.COMPLETED),
    "c02": ("+15145550311", CallOutcome.CONTACT_BUSY),
    "c03": ("+15145550323", CallOutcome.CONTACT_REJECTED),
    "c04": ("+15145550330", CallOutcome.COMPLETED),
    "c05": ("+15145550346", CallOutcome.CONTACT_CONGESTION),
    "c06": ("+15145550359", CallOutcome.CONTACT_UNREACHABLE),
    # The volunteer ends this conversation from their screen: a conversation
    # that took place, as for a click-to-call.
    "c07": ("+15145550365", CallOutcome.COMPLETED),
    "c08": ("+15145550371", CallOutcome.CONTACT_BUSY),
    "c09": ("+15145550380", CallOutcome.COMPLETED),
    "c10": ("+15145550393", CallOutcome.CONTACT_REJECTED),
}
# The second session, whose volunteer's phone hangs up mid-session: first
# while a contact rings (2: rings until cancelled), then, in a third
# session, while one talks (5: answers and stays).
DROPPER = ("dora", "1021")
RINGS = "+15145550402"
TALKS = "+15145550415"
# A volunteer whose phone is their own number (5: the carrier answers and
# stays), dialed over the trunk once for the session.
MOBILE_VOLUNTEER = ("omar", "+15145550455")
MOBILE_CONTACTS = {"m1": "+15145550460", "m2": "+15145550461"}  # completes, busy
# An organizer whispers into a power call (5: the contact stays on).
SUPERVISED = ("sam", "1022")
SUPERVISED_CONTACT = "+15145550475"
ORGANIZER_PHONE = "1023"


@dataclass
class Session:
    """One volunteer's power session as the test saw it through the API."""

    volunteer: Browser
    world: World
    session_id: int = 0
    states: list[str] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)

    @classmethod
    async def started(cls, volunteer: Browser, world: World) -> Session:
        """The volunteer clicks Start calling on the campaign's session screen."""
        status, body = await volunteer.api("POST", "/api/power", {"campaign_id": world.campaign_id})
        assert status == 201, body
        return cls(volunteer, world, session_id=body["session"]["session_id"])

    async def view(self) -> dict[str, Any]:
        status, body = await self.volunteer.api("GET", "/api/power")
        assert status == 200, body
        session = body["session"]
        assert session is not None
        if not self.states or self.states[-1] != session["state"]:
            self.states.append(session["state"])
        call = session["call"]
        if call is not None and call["call_id"] not in self.call_ids:
            self.call_ids.append(call["call_id"])
        return dict(session)

    async def play(
        self, dialed: int, *, hang_up: str | None = None, timeout: float = 240
    ) -> list[str]:
        """Do what the volunteer's screen asks: record each answered call's
        outcome, end the conversation with ``hang_up`` (a number) a second
        into it, until ``dialed`` contacts were dialed and nobody is left to
        call; then leave.  The calls whose outcome was recorded, in order."""
        recorded: list[str] = []
        hung_up = False
        async with asyncio.timeout(timeout):
            while True:
                session = await self.view()
                call = session["call"]
                if session["state"] == "wrap_up" and call is not None:
                    if call["call_id"] not in recorded:
                        recorded.append(call["call_id"])
                        await _record_outcome(self.volunteer, call)
                elif (
                    session["state"] == "talking"
                    and call is not None
                    and call["number"] == hang_up
                    and not hung_up
                ):
                    hung_up = True
                    await asyncio.sleep(1)
                    status, body = await self.volunteer.api(
                        "POST", f"/api/calls/{call['call_id']}/hangup"
                    )
                    assert status == 202, body
                elif session["state"] == "waiting" and session["calls"] == dialed:
                    # Nobody left to call now (retries are hours away).
                    break
                await asyncio.sleep(0.1)
        status, body = await self.volunteer.api("POST", "/api/power/leave")
        assert status == 200, body
        await self.until("ended", timeout=20)
        return recorded

    async def until(self, *states: str, timeout: float = 60) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                session = await self.view()
                if session["state"] in states:
                    return session
                await asyncio.sleep(0.1)


@dataclass
class Ran:
    pbx: RealPbx
    observer: AmiObserver
    world: World
    session_id: int
    views: Session
    outcomes_recorded: list[str]
    calls: list[CallAttempt]
    row: PowerSession


async def _power_campaign(sessions: async_sessionmaker[AsyncSession], campaign_id: int) -> None:
    async with sessions.begin() as session:
        # Retries far away: the list is over once each contact was dialed once.
        await session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(dialing_mode=DialingMode.POWER, retry_delay_minutes=600)
        )


async def _record_outcome(volunteer: Browser, call: dict[str, Any]) -> None:
    status, body = await volunteer.api(
        "POST",
        "/api/outcomes",
        {
            "submission_id": uuid.uuid4().hex,
            "call_id": call["call_id"],
            "contact_id": call["contact_id"],
            "campaign_id": call["campaign_id"],
            "outcome": "refused",
        },
    )
    assert status == 201, body


@pytest.fixture(scope="module")
async def power_pbx(
    _real_pbx_available: None, pbx_folder: Path, pg_url: str
) -> AsyncIterator[tuple[RealPbx, str]]:
    secret = f"obs{random.getrandbits(64):x}"
    asterisk, agents = await start_pbx(
        pbx_folder / "power",
        STANDARD_UAS,
        standard_phones(),
        database=pg_url.rsplit("/", 1)[1],
        appended={"manager.conf": recorder_user(secret)},
    )
    async with pbx_running(asterisk, agents) as running:
        await asterisk.wait_for_contacts(
            {
                VOLUNTEER[1]: "Avail",
                DROPPER[1]: "Avail",
                SUPERVISED[1]: "Avail",
                ORGANIZER_PHONE: "Avail",
            }
        )
        yield running, secret


@pytest.fixture(scope="module")
async def ran(
    power_pbx: tuple[RealPbx, str],
    pg_url: str,
    pbx_folder: Path,
    session_maker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Ran]:
    pbx, secret = power_pbx
    username, extension = VOLUNTEER
    contacts = {key: (number, username) for key, (number, _outcome) in CONTACTS.items()}
    try:
        world = await seed(session_maker, {username: extension}, contacts)
        await _power_campaign(session_maker, world.campaign_id)
        async with (
            AmiObserver().watching(pbx.asterisk.ami_port, secret) as observer,
            dialer_running(pg_url, pbx.asterisk, pbx_folder) as dialer,
            Browser.signed_in(dialer.url, username) as volunteer,
        ):
            views = await Session.started(volunteer, world)
            session_id = views.session_id
            recorded = await views.play(len(CONTACTS), hang_up=CONTACTS["c07"][0])
        calls = await _session_calls(session_maker, session_id)
        async with session_maker() as session:
            row = await session.get(PowerSession, session_id)
        assert row is not None
    finally:
        # Read above, emptied now: the module's other tests seed their own.
        await truncate_all(session_maker)
    yield Ran(pbx, observer, world, session_id, views, recorded, calls, row)


async def _session_calls(
    sessions: async_sessionmaker[AsyncSession], session_id: int
) -> list[CallAttempt]:
    async with sessions() as session:
        rows = await session.scalars(
            select(CallAttempt)
            .where(CallAttempt.power_session_id == session_id)
            .order_by(CallAttempt.requested_at)
        )
        return list(rows)


async def test_ten_contacts_are_called_in_a_row_on_one_volunteer_leg(ran: Ran) -> None:
    # One INVITE to the volunteer's desk phone for the whole session.
    legs = ran.pbx.ua_of(VOLUNTEER[1]).dialogs(VOLUNTEER[1])
    assert len(legs) == 1, [leg.invite.call_id for leg in legs]
    leg = legs[0]
    assert leg.answered_at is not None and leg.ended_at is not None
    calls = ran.calls
    assert sorted(call.number_e164 for call in calls) == sorted(
        number for number, _outcome in CONTACTS.values()
    )
    for call in calls:
        # Each contact was dialed while the volunteer's leg was up.
        assert call.volunteer_channel is not None
        assert call.volunteer_channel.startswith(f"Local/{ran.session_id}@dialer-power-join-")
        assert leg.answered_at <= call.requested_at <= leg.ended_at


async def test_every_call_is_stored_with_the_outcome_the_carrier_caused(ran: Ran) -> None:
    expected = {number: outcome for number, outcome in CONTACTS.values()}
    calls = ran.calls
    assert {call.number_e164: call.outcome for call in calls} == expected
    for call in calls:
        dialog = await ran.pbx.carrier.dialog(call.number_e164.lstrip("+"))
        answered = dialog.answered_at is not None
        assert (call.contact_answered_at is not None) == answered, call.number_e164
    # The volunteer recorded an outcome for each answered call, and only those.
    answered_ids = {call.call_id for call in calls if call.contact_answered_at is not None}
    assert set(ran.outcomes_recorded) == answered_ids
    assert all(
        call.outcome_recorded_at is not None for call in calls if call.call_id in answered_ids
    )


async def test_no_contact_is_ever_in_the_conference_without_the_volunteer(ran: Ran) -> None:
    room = f"dialer-power-{ran.session_id}"
    events = [
        event
        for event in ran.observer.events
        if event.get("Event", "").startswith("Confbridge") and event.get("Conference") == room
    ]
    volunteer_in = False
    volunteer_joins = 0
    contacts_in: set[str] = set()
    joined: set[str] = set()
    for event in events:
        kind = event["Event"]
        is_volunteer = event.get("Uniqueid") == f"ps{ran.session_id}-s"
        if kind == "ConfbridgeJoin":
            if is_volunteer:
                volunteer_in = True
                volunteer_joins += 1
            else:
                assert volunteer_in, f"a contact joined an empty conference: {event}"
                contacts_in.add(event["Uniqueid"])
                joined.add(event["Uniqueid"])
        elif kind == "ConfbridgeLeave":
            if is_volunteer:
                volunteer_in = False
            else:
                contacts_in.discard(event["Uniqueid"])
    assert volunteer_joins == 1
    # Every contact who answered was in the conference (through their call's
    # ;2 half, <call id>-o), and nobody stayed in it.  A contact who never
    # answered may not have reached it before their call ended.
    answered = {f"{call.call_id}-o" for call in ran.calls if call.contact_answered_at}
    assert len(answered) == 4 and answered <= joined
    assert not contacts_in and not volunteer_in


async def test_the_session_went_through_its_states_and_ended_as_the_volunteer_left(
    ran: Ran,
) -> None:
    row = ran.row
    assert row.end_reason == "left" and row.ended_at is not None
    assert row.calls == len(CONTACTS)
    assert row.waited_seconds > 0
    seen = ran.views.states
    assert seen[-1] == "ended"
    for state in ("dialing", "talking", "wrap_up", "waiting"):
        assert state in seen, seen


async def _hang_up_the_volunteers_phone(pbx: RealPbx, extension: str) -> None:
    """The volunteer's phone goes (its line dropped, they hung up): as Asterisk sees it."""
    listing = await pbx.asterisk.cli("core show channels concise")
    names = [
        line.split("!", 1)[0]
        for line in listing.splitlines()
        if line.startswith(f"PJSIP/{extension}-")
    ]
    assert names, listing
    for name in names:
        await pbx.asterisk.cli(f"channel request hangup {name}")


@pytest.mark.parametrize(
    ("number", "dropped_while"),
    [(RINGS, "dialing"), (TALKS, "talking")],
    ids=["while-a-contact-rings", "while-a-contact-talks"],
)
async def test_the_volunteers_leg_dropping_ends_the_session_and_the_contacts_call(
    power_pbx: tuple[RealPbx, str],
    pg_url: str,
    pbx_folder: Path,
    db: async_sessionmaker[AsyncSession],
    number: str,
    dropped_while: str,
) -> None:
    pbx, _secret = power_pbx
    username, extension = DROPPER
    world = await seed(
        db, {username: extension}, {"one": (number, username), "two": ("+15145550420", username)}
    )
    await _power_campaign(db, world.campaign_id)
    async with (
        dialer_running(pg_url, pbx.asterisk, pbx_folder) as dialer,
        Browser.signed_in(dialer.url, username) as volunteer,
    ):
        views = await Session.started(volunteer, world)
        session_id = views.session_id
        await views.until(dropped_while, timeout=30)
        if dropped_while == "dialing":
            # The contact's phone is ringing at the carrier.
            await pbx.carrier.dialog(number.lstrip("+"), ended=False)
        await _hang_up_the_volunteers_phone(pbx, extension)
        ended = await views.until("ended", timeout=20)
        assert ended["end_reason"] == "volunteer_hung_up", ended
        await asyncio.sleep(2)  # nothing else may be dialed meanwhile
    calls = await _session_calls(db, session_id)
    assert [call.number_e164 for call in calls] == [number]
    [call] = calls
    assert call.ended_at is not None
    dialog = await pbx.carrier.dialog(number.lstrip("+"))
    if dropped_while == "dialing":
        # Cancelled while ringing: never answered, never left ringing.
        assert call.outcome is CallOutcome.HUNG_UP_BY_VOLUNTEER, call.outcome
        assert dialog.answered_at is None and dialog.first(method="CANCEL") is not None
    else:
        # They had talked: the conversation took place, then Asterisk hung up.
        assert call.outcome is CallOutcome.COMPLETED, call.outcome
        assert dialog.answered_at is not None and dialog.bye_from() == "asterisk"
    leftover = await pbx.asterisk.cli("core show channels concise")
    assert "carrier" not in leftover and f"PJSIP/{extension}-" not in leftover, leftover


async def test_a_volunteer_whose_phone_is_their_own_number_is_dialed_once_for_the_session(
    power_pbx: tuple[RealPbx, str],
    pg_url: str,
    pbx_folder: Path,
    db: async_sessionmaker[AsyncSession],
) -> None:
    pbx, _secret = power_pbx
    username, mobile = MOBILE_VOLUNTEER
    world = await seed(
        db, {username: ""}, {key: (number, username) for key, number in MOBILE_CONTACTS.items()}
    )
    await _power_campaign(db, world.campaign_id)
    async with db.begin() as session:
        await session.execute(
            update(User)
            .where(User.username == username)
            .values(
                sip_extension=None,
                phone=VolunteerPhone.OWN_NUMBER,
                own_number=mobile,
                own_number_approved_at=datetime.now(UTC),
            )
        )
    async with (
        dialer_running(pg_url, pbx.asterisk, pbx_folder) as dialer,
        Browser.signed_in(dialer.url, username) as volunteer,
    ):
        views = await Session.started(volunteer, world)
        session_id = views.session_id
        await views.play(len(MOBILE_CONTACTS), timeout=60)
    calls = await _session_calls(db, session_id)
    assert {call.number_e164: call.outcome for call in calls} == {
        MOBILE_CONTACTS["m1"]: CallOutcome.COMPLETED,
        MOBILE_CONTACTS["m2"]: CallOutcome.CONTACT_BUSY,
    }
    # The mobile was dialed over the carrier once, and hung up by Asterisk
    # when the volunteer left.
    [line] = pbx.carrier.dialogs(mobile.lstrip("+"))
    assert line.answered_at is not None and line.bye_from() == "asterisk"
    for call in calls:
        assert line.answered_at <= call.requested_at


async def test_an_organizer_whispers_into_a_power_call_through_its_volunteer_leg(
    power_pbx: tuple[RealPbx, str],
    pg_url: str,
    pbx_folder: Path,
    db: async_sessionmaker[AsyncSession],
) -> None:
    pbx, secret = power_pbx
    username, extension = SUPERVISED
    world = await seed(db, {username: extension}, {"s1": (SUPERVISED_CONTACT, username)})
    await _power_campaign(db, world.campaign_id)
    async with db.begin() as session:
        await session.execute(
            update(User).where(User.username == ORGANIZER).values(sip_extension=ORGANIZER_PHONE)
        )
    async with (
        AmiObserver().watching(pbx.asterisk.ami_port, secret) as observer,
        dialer_running(pg_url, pbx.asterisk, pbx_folder) as dialer,
        Browser.signed_in(dialer.url, username) as volunteer,
        Browser.signed_in(dialer.url, ORGANIZER) as organizer,
    ):
        views = await Session.started(volunteer, world)
        talking = await views.until("talking", timeout=30)
        call_id = talking["call"]["call_id"]
        status, body = await organizer.api(
            "POST", f"/api/calls/{call_id}/supervise", {"mode": "whisper"}
        )
        assert status == 202, body
        start = await observer.until("ChanSpyStart", timeout=20)
        await volunteer.api("POST", "/api/power/leave")
        await views.until("ended", timeout=20)
    stored = await _session_calls(db, talking["session_id"])
    # The organizer's phone spies on the session's Local leg: what it
    # whispers goes to that leg's other half, in the volunteer's conference,
    # and so to the volunteer alone.
    assert start["SpyeeChannel"] == stored[0].volunteer_channel
    assert start["SpyeeChannel"].startswith(f"Local/{talking['session_id']}@dialer-power-join-")
    assert start["SpyerChannel"].startswith(f"PJSIP/{ORGANIZER_PHONE}-")
