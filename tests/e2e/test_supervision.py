"""POST /api/calls/{id}/supervise, browser-free, with the worker and the AMI simulator.

The simulator plays the shipped ``[dialer-supervise]`` as the real Asterisk
does (tests/pbx/test_supervision.py is the real one): the organizer's desk
phone is rung and answers, and its channel runs ChanSpy() on the volunteer
leg the worker tracked, whatever the request says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator
from ami_bridge.simulator.channels import Channel
from dialer.store.models import AuditEntry, CallAttempt, SupervisionRequest, User
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.webworld import Served, WebWorld, serve

ORGANIZER_PHONE = "1005"


@pytest.fixture
async def served(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with serve(pg_url, with_simulator=True, time_scale=0.1) as running:
        yield running


def simulator(served: Served) -> AmiSimulator:
    found = served.extras["simulator"]
    assert isinstance(found, AmiSimulator)
    return found


async def _give_phone(world: WebWorld, username: str, extension: str) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(User).where(User.username == username).values(sip_extension=extension)
        )


async def _talking_call(alice: Browser, world: WebWorld) -> str:
    # Marie's number ends in 4: the simulated contact stays until hung up.
    status, body = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["marie"], "campaign_id": world.campaign_id},
    )
    assert status == 201, body
    call_id = str(body["call_id"])
    await _until_state(alice, call_id, "talking")
    return call_id


async def _until_state(browser: Browser, call_id: str, state: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            status, body = await browser.api("GET", f"/api/calls/{call_id}")
            assert status == 200, body
            if body["state"] == state:
                return dict(body)
            await asyncio.sleep(0.05)


async def _spy_channel(served: Served, call_id: str) -> Channel:
    async with asyncio.timeout(10):
        while True:
            for channel in list(simulator(served)._channels.values()):
                if (
                    channel.uniqueid.startswith(f"{call_id}-spy")
                    and channel.application == "ChanSpy"
                ):
                    return channel
            await asyncio.sleep(0.02)


async def test_an_organizer_listens_to_a_live_call_of_their_team(
    client: ClientFactory,
    world: WebWorld,
    served: Served,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    alice, olivia = await client("alice"), await client("olivia")
    call_id = await _talking_call(alice, world)
    # Olivia has no phone yet: nothing to ring, refused before any row.
    status, body = await olivia.api("POST", f"/api/calls/{call_id}/supervise", {"mode": "listen"})
    assert (status, body["error"]["code"]) == (409, "no_phone")
    await _give_phone(world, "olivia", ORGANIZER_PHONE)
    # A channel in the body is not read: the worker spies on the call's own leg.
    status, body = await olivia.api(
        "POST",
        f"/api/calls/{call_id}/supervise",
        {"mode": "listen", "channel": "PJSIP/1002-00000000"},
    )
    assert status == 202, body
    assert body == {"call_id": call_id, "mode": "listen", "ringing": True}
    spy = await _spy_channel(served, call_id)
    async with sessions() as session:
        row = await session.scalar(select(CallAttempt).where(CallAttempt.call_id == call_id))
    assert row is not None and row.volunteer_channel is not None
    assert spy.name.startswith(f"PJSIP/{ORGANIZER_PHONE}-")
    assert spy.app_data == f"{row.volunteer_channel},ESq"
    [originate] = [
        action
        for action in simulator(served).actions
        if action.get("Action") == "Originate" and action.get("Context") == "dialer-supervise"
    ]
    assert originate.get("Channel") == f"PJSIP/{ORGANIZER_PHONE}"
    assert originate.get("Exten") == "listen"
    assert f"DIALER_SPY_CHANNEL={row.volunteer_channel}" in originate.getall("Variable")
    # The call ends: ChanSpy's E option hangs the organizer's phone up too.
    status, _ = await olivia.api("POST", f"/api/calls/{call_id}/hangup")
    assert status == 202
    await _until_state(alice, call_id, "ended")
    async with asyncio.timeout(5):
        while spy.name in simulator(served)._channels:
            await asyncio.sleep(0.02)
    async with sessions() as session:
        [entry] = list(
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "call.listen"))
        )
    assert (entry.actor_id, entry.entity_type, entry.entity_id) == (
        world.users["olivia"],
        "call",
        call_id,
    )
    assert entry.changes["mode"] == "listen"
    assert entry.at is not None


@pytest.mark.parametrize("mode", ["whisper", "barge"])
async def test_whisper_and_barge_run_chanspy_with_their_option(
    client: ClientFactory, world: WebWorld, served: Served, mode: str
) -> None:
    await _give_phone(world, "olivia", ORGANIZER_PHONE)
    alice, olivia = await client("alice"), await client("olivia")
    call_id = await _talking_call(alice, world)
    status, body = await olivia.api("POST", f"/api/calls/{call_id}/supervise", {"mode": mode})
    assert status == 202, body
    spy = await _spy_channel(served, call_id)
    assert spy.app_data.endswith({"whisper": ",wESq", "barge": ",BESq"}[mode])
    await olivia.api("POST", f"/api/calls/{call_id}/hangup")
    await _until_state(alice, call_id, "ended")


@pytest.mark.parametrize(
    ("who", "expected"),
    [("alice", 403), ("bob", 404), ("oscar", 404), ("carol", 404)],
)
async def test_only_the_teams_organizers_and_admins_may(
    client: ClientFactory,
    world: WebWorld,
    served: Served,
    sessions: async_sessionmaker[AsyncSession],
    who: str,
    expected: int,
) -> None:
    """The call's own volunteer, a teammate, another team's organizer (who has a
    phone) and another team's volunteer: refused, nothing queued, nothing sent."""
    alice = await client("alice")
    call_id = await _talking_call(alice, world)
    someone = alice if who == "alice" else await client(who)
    status, body = await someone.api("POST", f"/api/calls/{call_id}/supervise", {"mode": "barge"})
    assert status == expected, body
    await _give_phone(world, "adam", ORGANIZER_PHONE)
    adam = await client("adam")
    status, body = await adam.api("POST", f"/api/calls/{call_id}/supervise", {"mode": "listen"})
    assert status == 202, body
    await _spy_channel(served, call_id)
    async with sessions() as session:
        queued = list(await session.scalars(select(SupervisionRequest)))
        audited = list(
            await session.scalars(
                select(AuditEntry).where(
                    AuditEntry.action.in_(["call.listen", "call.whisper", "call.barge"])
                )
            )
        )
    assert [(r.actor_id, r.mode) for r in queued] == [(world.users["adam"], "listen")]
    assert [(a.actor_id, a.action) for a in audited] == [(world.users["adam"], "call.listen")]
    supervise = [
        a
        for a in simulator(served).actions
        if a.get("Action") == "Originate" and a.get("Context") == "dialer-supervise"
    ]
    assert len(supervise) == 1
    await adam.api("POST", f"/api/calls/{call_id}/hangup")
    await _until_state(alice, call_id, "ended")


@pytest.mark.parametrize("mode", ["spy", "listen\r\nAction: Originate", "", None, ["listen"]])
async def test_a_mode_that_is_not_one_of_the_three_is_refused(
    client: ClientFactory, world: WebWorld, served: Served, mode: Any
) -> None:
    await _give_phone(world, "olivia", ORGANIZER_PHONE)
    alice, olivia = await client("alice"), await client("olivia")
    call_id = await _talking_call(alice, world)
    status, body = await olivia.api("POST", f"/api/calls/{call_id}/supervise", {"mode": mode})
    assert status == 422, body
    assert "mode" in body["error"]["fields"]
    await olivia.api("POST", f"/api/calls/{call_id}/hangup")
    await _until_state(alice, call_id, "ended")


async def test_a_call_not_answered_yet_cannot_be_joined(
    client: ClientFactory, world: WebWorld, served: Served
) -> None:
    await _give_phone(world, "olivia", ORGANIZER_PHONE)
    alice, olivia = await client("alice"), await client("olivia")
    status, body = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["marie"], "campaign_id": world.campaign_id},
    )
    assert status == 201
    call_id = str(body["call_id"])
    await olivia.api("POST", f"/api/calls/{call_id}/hangup")
    await _until_state(alice, call_id, "ended")
    status, body = await olivia.api("POST", f"/api/calls/{call_id}/supervise", {"mode": "listen"})
    assert (status, body["error"]["code"]) == (409, "call_not_live")


@pytest.mark.parametrize(
    ("language", "labels"),
    [("en", ["Listen", "Whisper", "Barge"]), ("fr", ["Écouter", "Souffler", "Intervenir"])],
)
async def test_the_live_panel_offers_the_three_buttons_in_each_language(
    client: ClientFactory, language: str, labels: list[str]
) -> None:
    # Olivia reads English, Oscar French (their own choice, over the browser's).
    organizer = await client("olivia" if language == "en" else "oscar")
    status, html = await organizer.page("/ops/live")
    assert status == 200
    for mode, label in zip(["listen", "whisper", "barge"], labels, strict=True):
        assert f'data-supervise="{mode}"' in html
        assert f">{label}</button>" in html


async def test_with_the_notice_on_the_simulator_still_spies(
    client: ClientFactory, world: WebWorld, served: Served
) -> None:
    """DIALER_SUPERVISION_NOTICE: the Originate tells the dialplan to whisper
    tones to the volunteer; the simulator shows the dialplan step (not the
    Local channel of the tones) and goes on to ChanSpy."""
    worker = served.runtime.worker
    assert worker is not None
    worker.supervision_notice = True
    await _give_phone(world, "olivia", ORGANIZER_PHONE)
    alice, olivia = await client("alice"), await client("olivia")
    call_id = await _talking_call(alice, world)
    status, body = await olivia.api("POST", f"/api/calls/{call_id}/supervise", {"mode": "listen"})
    assert status == 202, body
    spy = await _spy_channel(served, call_id)
    assert spy.app_data.endswith(",ESq")
    [originate] = [
        a
        for a in simulator(served).actions
        if a.get("Action") == "Originate" and a.get("Context") == "dialer-supervise"
    ]
    assert "DIALER_SPY_NOTICE=yes" in originate.getall("Variable")
    await olivia.api("POST", f"/api/calls/{call_id}/hangup")
    await _until_state(alice, call_id, "ended")
