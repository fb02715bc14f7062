"""Every refusal of start_call, against the real schema, with the clock injected."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.compliance import CallRefused, RefusalCode
from dialer.domain.vocabulary import CallOutcome, CallState, CampaignStatus, Role
from dialer.store.models import (
    AuditEntry,
    CallAttempt,
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    User,
)
from tests.integration.world import CALLER_ID, World, build_world

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def world(sessions: Sessions) -> World:
    return await build_world(sessions)


async def refused(world: World, expected: RefusalCode, **kwargs: object) -> str:
    options: dict[str, object] = {
        "volunteer_id": world.users["alice"],
        "contact_id": world.contacts["montreal"],
        "campaign_id": world.campaign_id,
    }
    options.update(kwargs)
    with pytest.raises(CallRefused) as caught:
        await world.service().start_call(**options)  # type: ignore[arg-type]
    assert caught.value.refusal.code is expected, caught.value.refusal
    return caught.value.refusal.message


async def call_rows(world: World) -> int:
    async with world.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(CallAttempt)) or 0)


async def test_a_valid_request_is_committed_before_anything_is_dialed(world: World) -> None:
    requested: list[str] = []
    service = world.service(on_request=requested.append)
    call = await service.start_call(
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
    )
    assert requested == [call.call_id]
    async with world.sessions() as session:
        stored = await session.scalar(
            select(CallAttempt).where(CallAttempt.call_id == call.call_id)
        )
        assert stored is not None
        assert (stored.state, stored.number_e164, stored.caller_id) == (
            CallState.REQUESTED,
            "+15145550184",
            CALLER_ID,
        )
        assert stored.originate_sent_at is None
        assert await session.scalar(select(AuditEntry.action)) == "call.request"
    [event] = service.broadcaster.snapshot("call")
    assert event.payload["state"] == "requested"


async def test_volunteer_without_extension(world: World) -> None:
    message = await refused(world, RefusalCode.NO_EXTENSION, volunteer_id=world.users["dave"])
    assert message == "you have no phone extension; ask an organizer to set one"


async def test_volunteer_already_on_a_call(world: World) -> None:
    await world.service().start_call(
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
    )
    await refused(world, RefusalCode.VOLUNTEER_BUSY, contact_id=world.contacts["vancouver"])


async def test_number_outside_the_dialing_policy(world: World) -> None:
    message = await refused(
        world, RefusalCode.NUMBER_NOT_ALLOWED, contact_id=world.contacts["premium"]
    )
    assert message == "numbers starting with +1900 may not be dialed"
    strict = world.service(policy=world.service().policy.parse(["CA"], []))
    with pytest.raises(CallRefused) as caught:
        await strict.start_call(
            volunteer_id=world.users["alice"],
            contact_id=world.contacts["paris"],
            campaign_id=world.campaign_id,
        )
    assert caught.value.refusal.code is RefusalCode.NUMBER_NOT_ALLOWED


async def test_invalid_stored_number(world: World) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(ContactPhone)
            .where(ContactPhone.contact_id == world.contacts["montreal"])
            .values(e164="+1514555")
        )
    await refused(world, RefusalCode.INVALID_NUMBER)


async def test_do_not_call_contact_and_number(world: World) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(ContactPhone)
            .where(ContactPhone.contact_id == world.contacts["montreal"])
            .values(do_not_call=True)
        )
    await refused(world, RefusalCode.DO_NOT_CALL)
    async with world.sessions.begin() as session:
        await session.execute(
            update(Contact)
            .where(Contact.id == world.contacts["vancouver"])
            .values(do_not_call=True, dnc_at=world.clock.now)
        )
    await refused(world, RefusalCode.DO_NOT_CALL, contact_id=world.contacts["vancouver"])


async def test_calling_hours_in_the_contacts_own_zone(world: World) -> None:
    # 16:30 UTC: 11:30 in Montreal but 08:30 in Vancouver.
    world.clock.now = datetime(2026, 11, 24, 16, 30, tzinfo=UTC)
    message = await refused(
        world, RefusalCode.OUTSIDE_CALLING_HOURS, contact_id=world.contacts["vancouver"]
    )
    assert message == (
        "it is Tue 08:30 for this contact (America/Vancouver), outside calling "
        "hours; calls may start at Tue 09:00 their time"
    )
    # An explicit zone on the contact wins over the number's (Paris: 17:30, fine;
    # but at 20:30 UTC it is 21:30 in Paris while only 15:30 in Montreal).
    world.clock.now = datetime(2026, 11, 24, 20, 30, tzinfo=UTC)
    await refused(
        world, RefusalCode.OUTSIDE_CALLING_HOURS, contact_id=world.contacts["explicit_zone"]
    )
    call = await world.service().start_call(
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
    )
    assert call.state is CallState.REQUESTED


async def test_weekend_hours_from_the_campaign(world: World) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == world.campaign_id)
            .values(calling_hours={"weekday": {"start": "09:00", "end": "21:00"}, "weekend": None})
        )
    world.clock.now = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)  # Saturday noon in Montreal
    message = await refused(world, RefusalCode.OUTSIDE_CALLING_HOURS)
    assert "Mon 09:00 their time" in message


async def test_max_attempts_and_retry_delay(world: World) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(CallingListEntry)
            .where(CallingListEntry.contact_id == world.contacts["montreal"])
            .values(attempts=1, last_attempt_at=world.clock.now - timedelta(minutes=10))
        )
    message = await refused(world, RefusalCode.RETRY_TOO_SOON)
    assert message == "this contact was tried recently; try again after 18:20 UTC"
    async with world.sessions.begin() as session:
        await session.execute(
            update(CallingListEntry)
            .where(CallingListEntry.contact_id == world.contacts["montreal"])
            .values(attempts=2)
        )
    await refused(world, RefusalCode.MAX_ATTEMPTS)
    # A due call-back overrides both.
    async with world.sessions.begin() as session:
        await session.execute(
            update(CallingListEntry)
            .where(CallingListEntry.contact_id == world.contacts["montreal"])
            .values(callback_at=world.clock.now - timedelta(minutes=1))
        )
    await world.service().start_call(
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
    )


async def test_contact_claimed_by_another_volunteer(world: World) -> None:
    await world.service().start_call(
        volunteer_id=world.users["bob"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
    )
    message = await refused(world, RefusalCode.CONTACT_BEING_CALLED)
    assert message == "someone is calling this contact right now"


async def test_two_volunteers_racing_for_one_contact_place_one_call(world: World) -> None:
    # Separate services share nothing but the database, like two web processes.
    results = await asyncio.gather(
        *(
            world.service().start_call(
                volunteer_id=world.users[name],
                contact_id=world.contacts["bob_contact"],
                campaign_id=world.campaign_id,
            )
            for name in ("alice", "bob")
        ),
        return_exceptions=True,
    )
    placed = [r for r in results if isinstance(r, CallAttempt)]
    refusals = [r for r in results if isinstance(r, CallRefused)]
    assert len(placed) == 1 and len(refusals) == 1
    assert refusals[0].refusal.code is RefusalCode.CONTACT_BEING_CALLED
    assert await call_rows(world) == 1


async def test_campaign_not_active(world: World) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == world.campaign_id)
            .values(status=CampaignStatus.PAUSED)
        )
    assert await refused(world, RefusalCode.CAMPAIGN_NOT_ACTIVE) == "this campaign is paused"


async def test_volunteer_not_in_the_campaign_team(world: World) -> None:
    await refused(world, RefusalCode.NOT_IN_TEAM, volunteer_id=world.users["carol"])
    # Nor can carol reach alice's contact outside the campaign.
    await refused(world, RefusalCode.NOT_FOUND, volunteer_id=world.users["carol"], campaign_id=None)


async def test_another_teams_contact_is_not_found_under_ones_own_campaign(
    world: World,
) -> None:
    """The campaign's list entry is what proves a contact visible, so it is
    looked for first; without one, a contact of another team is "no such
    contact", never "not on this campaign's list", which would tell it exists."""
    message = await refused(world, RefusalCode.NOT_FOUND, contact_id=world.contacts["other_team"])
    assert message == "no such contact"
    message = await refused(
        world,
        RefusalCode.NOT_FOUND,
        volunteer_id=world.users["carol"],
        contact_id=world.contacts["bob_contact"],
        campaign_id=world.other_campaign_id,
    )
    assert message == "no such contact"


async def test_caller_id_must_be_allowed(world: World) -> None:
    message = await refused(world, RefusalCode.CALLER_ID_NOT_ALLOWED, caller_id="+15145559999")
    assert message == "+15145559999 is not an allowed caller ID here"
    call = await world.service().start_call(
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
        caller_id="+15145550001",
    )
    assert call.caller_id == "+15145550001"


async def test_manual_call_outside_a_campaign(world: World) -> None:
    # A contact on no campaign's list: the default hours and caller ID.  Only
    # an administrator sees such a contact.
    async with world.sessions.begin() as session:
        adam = User(
            username="adam",
            display_name="Adam",
            role=Role.ADMIN,
            password_hash="x",
            sip_extension="1009",
        )
        loose = Contact(first_name="Loose", last_name="Test")
        loose.phones = [ContactPhone(e164="+15145550199")]
        session.add_all([adam, loose])
        await session.flush()
        adam_id, loose_id = adam.id, loose.id
    call = await world.service().start_call(volunteer_id=adam_id, contact_id=loose_id)
    assert call.campaign_id is None
    assert call.caller_id == CALLER_ID
    assert await call_rows(world) == 1


async def test_a_call_without_a_campaign_is_made_under_the_contacts_campaign(
    world: World,
) -> None:
    call = await world.service().start_call(
        volunteer_id=world.users["alice"], contact_id=world.contacts["vancouver"]
    )
    # Stored with the campaign, so its end counts as the campaign's attempt.
    assert call.campaign_id == world.campaign_id
    async with world.sessions() as session:
        audit = await session.scalar(select(AuditEntry.changes))
    assert audit is not None and audit["campaign_id"] == world.campaign_id


async def _set_entry(world: World, contact: str, **values: object) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(CallingListEntry)
            .where(CallingListEntry.contact_id == world.contacts[contact])
            .values(**values)
        )


async def test_leaving_the_campaign_out_skips_none_of_its_rules(world: World) -> None:
    without = {"campaign_id": None}
    await _set_entry(world, "montreal", attempts=1, last_attempt_at=world.clock.now)
    await refused(world, RefusalCode.RETRY_TOO_SOON, **without)
    await _set_entry(world, "montreal", attempts=2, last_attempt_at=None)
    await refused(world, RefusalCode.MAX_ATTEMPTS, **without)
    await _set_entry(world, "montreal", attempts=0, done=True)
    assert (
        await refused(world, RefusalCode.MAX_ATTEMPTS, **without)
        == "this contact is done for this campaign"
    )
    await _set_entry(world, "montreal", done=False)
    # The campaign's hours, not the default ones: no weekend calls.
    async with world.sessions.begin() as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == world.campaign_id)
            .values(calling_hours={"weekday": {"start": "09:00", "end": "21:00"}, "weekend": None})
        )
    world.clock.now = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)  # Saturday noon in Montreal
    await refused(world, RefusalCode.OUTSIDE_CALLING_HOURS, **without)
    world.clock.now = datetime(2026, 11, 24, 17, 30, tzinfo=UTC)
    # And its caller IDs.
    await refused(world, RefusalCode.CALLER_ID_NOT_ALLOWED, caller_id="+15145559999", **without)
    assert await call_rows(world) == 0


async def test_a_paused_campaigns_contact_is_not_called_without_it(world: World) -> None:
    for status, word in ((CampaignStatus.PAUSED, "paused"), (CampaignStatus.CLOSED, "closed")):
        async with world.sessions.begin() as session:
            await session.execute(
                update(Campaign).where(Campaign.id == world.campaign_id).values(status=status)
            )
        message = await refused(world, RefusalCode.CAMPAIGN_NOT_ACTIVE, campaign_id=None)
        assert message == f"this contact is only on campaigns that are not active ({word})"
    # Not even by an organizer of the team.
    async with world.sessions.begin() as session:
        await session.execute(
            update(User).where(User.id == world.users["olivia"]).values(sip_extension="1004")
        )
    await refused(
        world,
        RefusalCode.CAMPAIGN_NOT_ACTIVE,
        volunteer_id=world.users["olivia"],
        campaign_id=None,
    )
    assert await call_rows(world) == 0


async def test_the_contacts_campaign_whose_rules_allow_the_call_is_chosen(world: World) -> None:
    async with world.sessions.begin() as session:
        second = Campaign(
            title="Second",
            status=CampaignStatus.ACTIVE,
            team_id=world.team_id,
            allowed_caller_ids=[CALLER_ID],
        )
        session.add(second)
        await session.flush()
        session.add(
            CallingListEntry(
                campaign_id=second.id,
                contact_id=world.contacts["montreal"],
                volunteer_id=world.users["bob"],
            )
        )
        second_id = second.id
    # Done in GOTV (alice's own list, tried first): the call goes under Second.
    await _set_entry(world, "montreal", done=True)
    async with world.sessions.begin() as session:
        await session.execute(
            update(CallingListEntry)
            .where(CallingListEntry.campaign_id == second_id)
            .values(done=False)
        )
    call = await world.service().start_call(
        volunteer_id=world.users["alice"], contact_id=world.contacts["montreal"]
    )
    assert call.campaign_id == second_id


async def test_an_ended_call_frees_the_claims(world: World) -> None:
    call = await world.service().start_call(
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
    )
    async with world.sessions.begin() as session:
        await session.execute(
            update(CallAttempt)
            .where(CallAttempt.call_id == call.call_id)
            .values(state=CallState.ENDED, outcome=CallOutcome.FAILED)
        )
    await world.service().start_call(
        volunteer_id=world.users["bob"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
    )
