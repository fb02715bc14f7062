"""Outcomes and call starts through the API: new numbers already on file,
calls that leave their campaign out, and bare outcomes (issue 18, items 5,
6 and 7)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import selectinload

from dialer.domain.vocabulary import CampaignStatus
from dialer.store.models import CallAttempt, Campaign, Contact, Disposition
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.webworld import CONTACTS, WebWorld


async def start_call(browser: Browser, world: WebWorld, contact: str) -> str:
    status, call = await browser.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts[contact], "campaign_id": world.campaign_id},
    )
    assert status == 201, call
    return str(call["call_id"])


def outcome(world: WebWorld, submission_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "submission_id": submission_id,
        "contact_id": world.contacts["ada"],
        "campaign_id": world.campaign_id,
        "outcome": "refused",
        **fields,
    }


async def phones_of(world: WebWorld, contact: str) -> list[str]:
    async with world.sessions() as session:
        found = await session.get(
            Contact, world.contacts[contact], options=[selectinload(Contact.phones)]
        )
        assert found is not None
        return sorted(phone.e164 for phone in found.phones)


async def test_a_new_number_on_another_contact_is_stored_without_a_tell(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    call_id = await start_call(alice, world, "ada")
    grace_number, alan_number = CONTACTS["grace"][2], CONTACTS["alan"][2]
    # Grace is on Alice's team's campaign, Alan on another team's; a fresh
    # number goes with them.  Before the fix: a 500, and no outcome.
    status, body = await alice.api(
        "POST",
        "/api/outcomes",
        outcome(
            world,
            "sub-numbers-01",
            call_id=call_id,
            new_numbers=[
                {"number": grace_number},
                {"number": alan_number},
                {"number": "438 555 0199", "type": "mobile"},
            ],
        ),
    )
    assert status == 201, body
    # The answer says nothing about the numbers, attached or not.
    assert set(body) == {"submission_id", "disposition_id", "duplicate"}
    assert await phones_of(world, "ada") == sorted([CONTACTS["ada"][2], "+14385550199"])
    assert await phones_of(world, "grace") == [grace_number]
    assert await phones_of(world, "alan") == [alan_number]


async def test_a_number_with_an_extension_or_letters_is_a_field_error(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    call_id = await start_call(alice, world, "ada")
    status, body = await alice.api(
        "POST",
        "/api/outcomes",
        outcome(
            world,
            "sub-numbers-02",
            call_id=call_id,
            new_numbers=[
                {"number": "438 555 0199"},
                {"number": "+1 514 555 0123;ext=9"},
                {"number": "514-555-CALL"},
            ],
        ),
    )
    assert status == 422, body
    assert body["error"]["code"] == "invalid"
    assert body["error"]["fields"] == {
        "new_numbers.1.number": "An extension cannot be dialed; give the number without it.",
        "new_numbers.2.number": "Write the number with digits only.",
    }
    async with world.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Disposition)) == 0
    assert await phones_of(world, "ada") == [CONTACTS["ada"][2]]


async def test_a_call_without_its_campaign_keeps_the_campaign_rules(
    client: ClientFactory, world: WebWorld
) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == world.campaign_id)
            .values(status=CampaignStatus.PAUSED)
        )
    alice = await client("alice")
    status, body = await alice.api("POST", "/api/calls", {"contact_id": world.contacts["ada"]})
    assert status == 409, body
    assert body["error"]["code"] == "campaign_not_active"
    async with world.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CallAttempt)) == 0
    # Active again: the call goes ahead, made under the campaign.
    async with world.sessions.begin() as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == world.campaign_id)
            .values(status=CampaignStatus.ACTIVE)
        )
    status, call = await alice.api("POST", "/api/calls", {"contact_id": world.contacts["ada"]})
    assert status == 201, call
    assert call["campaign_id"] == world.campaign_id


async def test_a_bare_outcome_cannot_change_the_contact(
    client: ClientFactory, world: WebWorld
) -> None:
    bob = await client("bob", language="fr")
    details = {"do_not_call": True, "email": "ada@example.org", "support_score": 1}
    status, body = await bob.api(
        "POST", "/api/outcomes", outcome(world, "sub-bare-0001", **details)
    )
    assert status == 422, body
    assert body["error"]["fields"] == dict.fromkeys(
        details, "Seul le résultat de votre propre appel peut modifier les coordonnées du contact."
    )
    async with world.sessions() as session:
        ada = await session.get(Contact, world.contacts["ada"])
        assert ada is not None
        assert (ada.do_not_call, ada.email, ada.support_score) == (False, None, 4)
        assert await session.scalar(select(func.count()).select_from(Disposition)) == 0
    # With a call of their own, the same details are taken.
    alice = await client("alice")
    call_id = await start_call(alice, world, "ada")
    status, body = await alice.api(
        "POST", "/api/outcomes", outcome(world, "sub-bare-0002", call_id=call_id, **details)
    )
    assert status == 201, body
    async with world.sessions() as session:
        ada = await session.get(Contact, world.contacts["ada"])
        assert ada is not None
        assert (ada.do_not_call, ada.email, ada.support_score) == (True, "ada@example.org", 1)
