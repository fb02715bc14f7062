"""The live panel's Listen, Whisper and Barge in a real browser, against the AMI simulator.

Alice calls Marie (who stays on the line); Olivia, whose desk phone is set,
clicks Listen on the call's row: the panel says her phone is ringing, and
the simulator has her phone's channel running ChanSpy on Alice's leg.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect
from sqlalchemy import select, update

from ami_bridge.simulator import AmiSimulator
from dialer.store.models import AuditEntry, CallAttempt, User
from tests.browser.conftest import Contexts, shot
from tests.browser.walk import sign_in
from tests.e2e.webworld import Served, WebWorld, serve

pytestmark = pytest.mark.slow


@pytest.fixture
async def live_app(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with world.sessions.begin() as session:
        await session.execute(
            update(User).where(User.username == "olivia").values(sip_extension="1005")
        )
    async with serve(pg_url, with_simulator=True, time_scale=0.5) as running:
        yield running


async def test_an_organizer_listens_from_the_live_panel(
    live_app: Served, world: WebWorld, contexts: Contexts
) -> None:
    served = live_app
    organizer = await contexts.page(phone=False, locale="en-CA")
    await sign_in(organizer, served, "olivia")
    await organizer.goto(served.url + "/ops/live")
    await expect(organizer.locator("#live-status")).to_have_class(re.compile("ok"))

    alice = await contexts.page(phone=True, locale="en-CA")
    await sign_in(alice, served, "alice")
    call = await alice.evaluate(
        "(body) => PB.api('POST', '/api/calls', body)",
        {"contact_id": world.contacts["marie"], "campaign_id": world.campaign_id},
    )
    row = organizer.locator(f'#calls tr[data-call="{call["call_id"]}"]')
    await expect(row).to_have_attribute("data-state", "talking", timeout=10_000)
    listen = row.locator('[data-supervise="listen"]')
    await expect(listen).to_be_enabled()
    await expect(row.locator('[data-supervise="whisper"]')).to_have_text("Whisper")
    await expect(row.locator('[data-supervise="barge"]')).to_have_text("Barge")
    await listen.click()
    await expect(organizer.locator("#live-status")).to_have_text(
        "Your phone is ringing: answer it to listen to the call."
    )
    await shot(organizer, "en-30-live-panel-listening")
    simulator = served.extras["simulator"]
    assert isinstance(simulator, AmiSimulator)
    async with world.sessions() as session:
        stored = await session.scalar(
            select(CallAttempt).where(CallAttempt.call_id == call["call_id"])
        )
    assert stored is not None
    async with asyncio.timeout(10):
        while not any(
            channel.application == "ChanSpy"
            and channel.app_data == f"{stored.volunteer_channel},ESq"
            for channel in list(simulator._channels.values())
        ):
            await asyncio.sleep(0.05)
    async with world.sessions() as session:
        audited = await session.scalar(select(AuditEntry).where(AuditEntry.action == "call.listen"))
    assert audited is not None and audited.actor_id == world.users["olivia"]
    await row.locator("[data-hangup]").click()
    await organizer.locator('#hangup-confirm button[value="hangup"]').click()
    await expect(organizer.locator("#calls tr[data-call]")).to_have_count(0, timeout=10_000)
