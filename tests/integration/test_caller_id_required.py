"""A click with no caller ID to present is refused before the volunteer's phone rings.

The dialplan ([dialer-place-call]) hangs up a call whose caller ID is not 8
to 15 digits, but only once the volunteer has answered; the service refuses
such a click up front (``no_caller_id``), in a campaign and outside one, and
warns when a campaign is made active with nothing to present.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.compliance import CallRefused, RefusalCode
from dialer.domain.vocabulary import CampaignStatus
from dialer.services.caller_ids import campaign_caller_ids, usable_caller_id
from dialer.services.calling import CallService
from dialer.services.campaigns import CampaignChanges, lacks_caller_id, update_campaign
from dialer.store.models import CallAttempt, Campaign
from tests.integration.world import CALLER_ID, World, build_world

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def world(sessions: Sessions) -> World:
    return await build_world(sessions)


async def set_caller_ids(world: World, campaign_id: int, numbers: list[str]) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(Campaign).where(Campaign.id == campaign_id).values(allowed_caller_ids=numbers)
        )


async def refusal(service: CallService, **kwargs: object) -> CallRefused:
    with pytest.raises(CallRefused) as caught:
        await service.start_call(**kwargs)  # type: ignore[arg-type]
    return caught.value


async def call_rows(world: World) -> int:
    async with world.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(CallAttempt)) or 0)


async def test_a_campaign_without_caller_id_and_no_default_is_refused(world: World) -> None:
    await set_caller_ids(world, world.campaign_id, [])
    refused = await refusal(
        world.service(default_caller_id=""),
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
    )
    assert refused.refusal.code is RefusalCode.NO_CALLER_ID
    assert refused.refusal.message == (
        "this campaign has no caller ID to call from and there is no default one"
    )
    # Refused before anything is committed: no request row for a worker to dial.
    assert await call_rows(world) == 0


async def test_the_default_caller_id_serves_a_campaign_without_its_own(world: World) -> None:
    await set_caller_ids(world, world.campaign_id, [])
    call = await world.service(default_caller_id=CALLER_ID).start_call(
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
    )
    assert call.caller_id == CALLER_ID


async def test_a_campaign_caller_id_needs_no_default(world: World) -> None:
    call = await world.service(default_caller_id="").start_call(
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
    )
    assert call.caller_id == CALLER_ID


async def test_a_manual_call_follows_the_same_rule(world: World) -> None:
    service = world.service(default_caller_id="")
    # Without a campaign_id, a contact on a campaign's list is called under
    # that campaign, with its caller IDs (see test_call_rules.py).
    call = await service.start_call(
        volunteer_id=world.users["alice"], contact_id=world.contacts["vancouver"]
    )
    assert (call.campaign_id, call.caller_id) == (world.campaign_id, CALLER_ID)
    await service.hang_up(world.users["alice"], call.call_id)
    await set_caller_ids(world, world.campaign_id, [])
    refused = await refusal(
        service, volunteer_id=world.users["alice"], contact_id=world.contacts["vancouver"]
    )
    assert refused.refusal.code is RefusalCode.NO_CALLER_ID
    assert refused.refusal.message == (
        "this campaign has no caller ID to call from and there is no default one"
    )
    assert await call_rows(world) == 1


async def test_a_caller_id_the_pbx_would_refuse_counts_as_none(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # An extension is not a caller ID: the dialplan wants 8 to 15 digits.
    with caplog.at_level(logging.WARNING, logger="dialer.services.calling"):
        service = world.service(default_caller_id="1001")
    assert service.default_caller_id == ""
    assert "DIALER_DEFAULT_CALLER_ID" in caplog.text and "'1001'" in caplog.text
    await set_caller_ids(world, world.campaign_id, ["+1514"])
    refused = await refusal(
        service,
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
    )
    assert refused.refusal.code is RefusalCode.NO_CALLER_ID
    # Choosing it explicitly is choosing a number that is not allowed.
    await set_caller_ids(world, world.campaign_id, ["+1514", CALLER_ID])
    refused = await refusal(
        service,
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
        caller_id="+1514",
    )
    assert refused.refusal.code is RefusalCode.CALLER_ID_NOT_ALLOWED


def test_usable_caller_ids_are_what_the_dialplan_accepts() -> None:
    assert usable_caller_id("+15145550000")
    assert usable_caller_id("+33142685300")
    assert usable_caller_id("12345678")  # 8 digits
    assert usable_caller_id("+123456789012345")  # 15 digits
    assert not usable_caller_id("")
    assert not usable_caller_id("1001")
    assert not usable_caller_id("1234567")
    assert not usable_caller_id("+1234567890123456")
    assert not usable_caller_id("anonymous")
    # The dialplan's FILTER(0-9,...) keeps ASCII digits only.
    assert not usable_caller_id("١٢٣٤٥٦٧٨")


def _campaign(status: CampaignStatus, numbers: list[str]) -> Campaign:
    return Campaign(title="t", status=status, allowed_caller_ids=numbers)


def test_an_active_campaign_lacks_a_caller_id_only_without_both() -> None:
    active, draft = CampaignStatus.ACTIVE, CampaignStatus.DRAFT
    assert lacks_caller_id(_campaign(active, []), "")
    assert lacks_caller_id(_campaign(active, ["1001"]), CALLER_ID)  # its own list wins
    assert not lacks_caller_id(_campaign(active, []), CALLER_ID)
    assert not lacks_caller_id(_campaign(active, [CALLER_ID]), "")
    assert not lacks_caller_id(_campaign(draft, []), "")  # not calling yet
    assert campaign_caller_ids(_campaign(active, ["1001", CALLER_ID]), "") == [CALLER_ID]


async def test_activating_a_campaign_without_caller_id_warns_and_is_allowed(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    async def activate(default: str) -> None:
        async with world.sessions.begin() as session:
            campaign = await session.get(Campaign, world.other_campaign_id)
            assert campaign is not None
            campaign.status = CampaignStatus.DRAFT
            changes = CampaignChanges(
                title=campaign.title,
                brief=campaign.brief,
                team_id=campaign.team_id,
                status=CampaignStatus.ACTIVE,
                scheduled_on=campaign.scheduled_on,
                starts_at=campaign.starts_at,
                ends_at=campaign.ends_at,
                allowed_caller_ids=[],
                calling_hours=campaign.calling_hours,
                max_attempts=campaign.max_attempts,
                retry_delay_minutes=campaign.retry_delay_minutes,
                survey=campaign.survey,
            )
            changed = await update_campaign(
                session,
                campaign,
                changes,
                actor_id=world.users["olivia"],
                default_caller_id=default,
            )
            assert changed["status"] == "active"

    with caplog.at_level(logging.WARNING, logger="dialer.services.campaigns"):
        await activate(CALLER_ID)
        assert not caplog.records
        await activate("")
    assert [record.getMessage() for record in caplog.records] == [
        f"campaign {world.other_campaign_id} is active with no caller ID and no default "
        "caller ID: every call will be refused until one is set"
    ]
    async with world.sessions() as session:
        stored = await session.get(Campaign, world.other_campaign_id)
    assert stored is not None and stored.status is CampaignStatus.ACTIVE
