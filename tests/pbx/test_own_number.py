"""A volunteer whose phone is their own number, on the real Asterisk.

The dialer rings the volunteer's mobile over the carrier trunk, through the
contacts' own dialplan context (the same number rules, the campaign's caller
ID), then dials the contact and bridges the two.  SIPp's carrier trace is
the ground truth: both legs went out through it, the volunteer's first.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.compliance import DialingPolicy
from dialer.domain.vocabulary import CallOutcome, VolunteerPhone
from dialer.services.users import UserError, set_phone
from dialer.services.volunteer_phones import NumberRules, PhoneChoice
from tests.e2e.webworld import CALLER_ID
from tests.pbx.conftest import RealPbx
from tests.pbx.product import Browser, close_to, dialer_running, seed, stored_call

pytestmark = pytest.mark.slow

OWN_NUMBER = "+15145550315"  # ends in 5: the carrier answers after 1 s and stays up
CONTACT = "+15145550320"  # ends in 0: answers after 1 s, talks 3 s, hangs up
SESSION_MOBILE = "+15145550325"
SESSION_CONTACT = "+15145550330"
# The dialer process's policy (tests/pbx/product.py: DIALER_ALLOWED_DESTINATIONS).
RULES = NumberRules("CA", DialingPolicy.parse(["CA", "US"], ["+1900", "+1976"]))


async def test_the_volunteers_own_number_is_rung_over_the_trunk_and_bridged(
    pbx: RealPbx, pg_url: str, db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    world = await seed(db, {"otto": None}, {"carla": (CONTACT, "otto")})  # type: ignore[dict-item]
    async with db.begin() as session:
        otto = await set_phone(
            session,
            "otto",
            PhoneChoice(VolunteerPhone.OWN_NUMBER, own_number="514 555 0315"),
            numbers=RULES,
        )
        assert otto.own_number == OWN_NUMBER and otto.own_number_approved_at is not None

    async with (
        dialer_running(pg_url, pbx.asterisk, tmp_path) as dialer,
        Browser.signed_in(dialer.url, "otto") as volunteer,
    ):
        call_id = await volunteer.click_call(world, "carla")
        ended = await volunteer.wait_for(call_id, "ended", timeout=60)
    assert ended["outcome"] == CallOutcome.COMPLETED.value

    mobile = await pbx.carrier.dialog(OWN_NUMBER.removeprefix("+"))
    contact = await pbx.carrier.dialog(CONTACT.removeprefix("+"))
    assert mobile.answered_at is not None and contact.answered_at is not None
    assert mobile.answered_at < contact.invite.at
    # Both legs carry the campaign's caller ID (dialer-place-call sets it).
    for leg in (mobile, contact):
        assert CALLER_ID.removeprefix("+") in leg.invite.headers["from"]
    # The contact hung up; Asterisk then ended the volunteer's leg.
    assert contact.bye_from() == "ua" and mobile.bye_from() == "asterisk"

    stored = await stored_call(db, call_id)
    assert stored.volunteer_channel is not None
    assert stored.volunteer_channel.startswith(f"Local/{OWN_NUMBER.removeprefix('+')}@")
    assert close_to(stored.volunteer_answered_at, mobile.answered_at)
    assert close_to(stored.contact_answered_at, contact.answered_at)
    assert close_to(stored.ended_at, contact.ended_at)


async def test_an_own_number_outside_the_dialing_policy_is_refused(
    db: async_sessionmaker[AsyncSession],
) -> None:
    await seed(db, {"otto": None}, {})  # type: ignore[dict-item]
    for number in ("+1 900 555 0100", "+44 20 7946 0958", "+1 809 234 5678"):
        async with db.begin() as session:
            with pytest.raises(UserError) as refused:
                await set_phone(
                    session,
                    "otto",
                    PhoneChoice(VolunteerPhone.OWN_NUMBER, own_number=number),
                    numbers=RULES,
                )
        assert refused.value.field == "own_number"
        assert "dialing policy" in str(refused.value)


async def test_a_desk_phone_volunteer_takes_a_sessions_calls_on_their_own_number(
    pbx: RealPbx, pg_url: str, db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """Away from the desk: the session rings the approved own number; the desk phone
    (which would answer) never rings."""
    world = await seed(db, {"dora": "1011"}, {"cy": (SESSION_CONTACT, "dora")})
    # Other tests on this PBX ring desk phone 1011: only a new dialog counts.
    desk_dialogs = len(pbx.ua_of("1011").dialogs("1011"))
    async with db.begin() as session:
        await set_phone(
            session,
            "dora",
            PhoneChoice(VolunteerPhone.DESK, own_number=SESSION_MOBILE),
            numbers=RULES,
        )
    async with (
        dialer_running(pg_url, pbx.asterisk, tmp_path) as dialer,
        Browser.signed_in(dialer.url, "dora") as volunteer,
    ):
        status, chosen = await volunteer.api("POST", "/api/phone", {"kind": "own_number"})
        assert status == 200, chosen
        call_id = await volunteer.click_call(world, "cy")
        ended = await volunteer.wait_for(call_id, "ended", timeout=60)
    assert ended["outcome"] == CallOutcome.COMPLETED.value
    mobile = await pbx.carrier.dialog(SESSION_MOBILE.removeprefix("+"))
    assert mobile.answered_at is not None
    assert len(pbx.ua_of("1011").dialogs("1011")) == desk_dialogs
    stored = await stored_call(db, call_id)
    assert stored.volunteer_phone is VolunteerPhone.OWN_NUMBER
    assert close_to(stored.volunteer_answered_at, mobile.answered_at)
