"""Listen, whisper and barge: who may, what is audited, what the worker sends.

``CallService.supervise`` against the real schema (PostgreSQL), then the
worker's pass over the queued requests with a fake PBX port of our own that
records what it is asked, and ``AmiPbx.spy_on_call`` over the AMI simulator:
the channel spied on is always the tracker's, never the request's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.client import AmiClient
from ami_bridge.pbx import AmiPbx
from ami_bridge.simulator import AmiSimulator
from dialer.domain.ports import (
    CallPbx,
    OriginateRejected,
    OriginateRequest,
    PbxError,
    SpyRequest,
    SpyStart,
)
from dialer.domain.vocabulary import CallState, Role, VolunteerPhone
from dialer.services.calling import SupervisionRefused
from dialer.services.common import NotAllowed
from dialer.store.models import (
    AuditEntry,
    CallAttempt,
    SupervisionRequest,
    TeamMember,
    User,
)
from dialer.worker.call_worker import CallWorker
from tests.integration.conftest import SECRET
from tests.integration.world import CALLER_ID, World, build_world

Sessions = async_sessionmaker[AsyncSession]
CALL = "c-supervised"


@dataclass
class SpyRecorder:
    """The PBX port, reduced to what supervision asks of it."""

    answer: SpyStart = "rung"
    asked: list[SpyRequest] = field(default_factory=list)
    connected: bool = True
    refusal: PbxError | None = None

    async def spy_on_call(self, request: SpyRequest) -> SpyStart:
        self.asked.append(request)
        if self.refusal is not None:
            raise self.refusal
        return self.answer


@pytest.fixture
async def world(sessions: Sessions) -> World:
    world = await build_world(sessions)
    async with sessions.begin() as session:
        olivia = await session.get(User, world.users["olivia"])
        assert olivia is not None
        olivia.sip_extension = "1007"
        others = {
            "oscar": (Role.ORGANIZER, "1009", world.other_team_id),
            "adam": (Role.ADMIN, "1008", None),
            "nora": (Role.ORGANIZER, "+15145550166", world.team_id),
        }
        for username, (role, phone, team) in others.items():
            own = phone.startswith("+")
            user = User(
                username=username,
                display_name=username.title(),
                role=role,
                password_hash="x",
                sip_extension=None if own else phone,
                phone=VolunteerPhone.OWN_NUMBER if own else VolunteerPhone.DESK,
                own_number=phone if own else None,
            )
            session.add(user)
            await session.flush()
            if team is not None:
                session.add(TeamMember(team_id=team, user_id=user.id))
            world.users[username] = user.id
    await _call(world, CallState.TALKING)
    return world


async def _call(
    world: World,
    state: CallState,
    call_id: str = CALL,
    *,
    volunteer: str = "alice",
    contact: str = "montreal",
) -> None:
    # One live call per contact and per volunteer: others take others.
    async with world.sessions.begin() as session:
        session.add(
            CallAttempt(
                call_id=call_id,
                campaign_id=world.campaign_id,
                contact_id=world.contacts[contact],
                number_e164="+15145550184",
                volunteer_id=world.users[volunteer],
                caller_id=CALLER_ID,
                state=state,
                requested_at=world.clock.now,
                originate_sent_at=world.clock.now,
                volunteer_channel="PJSIP/1001-00000001",
            )
        )


async def _queued(world: World) -> list[tuple[str, str, int | None]]:
    async with world.sessions() as session:
        rows = await session.scalars(select(SupervisionRequest).order_by(SupervisionRequest.id))
        return [(row.call_id, row.mode, row.actor_id) for row in rows]


async def _audited(world: World) -> list[tuple[str, str | None, int | None, dict[str, object]]]:
    async with world.sessions() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action.in_(["call.listen", "call.whisper", "call.barge"]))
            .order_by(AuditEntry.id)
        )
        return [(row.action, row.entity_id, row.actor_id, row.changes) for row in rows]


@pytest.mark.parametrize("who", ["olivia", "adam"])
@pytest.mark.parametrize("mode", ["listen", "whisper", "barge"])
async def test_the_teams_organizer_or_an_admin_queues_it_and_it_is_audited(
    world: World, who: str, mode: str
) -> None:
    woken: list[bool] = []
    service = world.service(on_supervision_request=lambda: woken.append(True))
    await service.supervise(world.users[who], CALL, mode)  # type: ignore[arg-type]
    assert await _queued(world) == [(CALL, mode, world.users[who])]
    [(action, entity, actor, changes)] = await _audited(world)
    assert (action, entity, actor) == (f"call.{mode}", CALL, world.users[who])
    assert changes["mode"] == mode and changes["volunteer_id"] == world.users["alice"]
    assert woken == [True]


@pytest.mark.parametrize(
    "who",
    [
        "alice",  # the call's own volunteer
        "bob",  # a volunteer of the same team
        "carol",  # another team's volunteer
        "oscar",  # another team's organizer, with a phone
    ],
)
async def test_nobody_else_may_and_nothing_is_written(world: World, who: str) -> None:
    with pytest.raises(NotAllowed):
        await world.service().supervise(world.users[who], CALL, "listen")
    assert await _queued(world) == []
    assert await _audited(world) == []


async def test_not_on_their_own_call_even_as_an_organizer(world: World) -> None:
    await _call(world, CallState.TALKING, "c-olivias-own", volunteer="olivia", contact="vancouver")
    with pytest.raises(NotAllowed):
        await world.service().supervise(world.users["olivia"], "c-olivias-own", "listen")


async def test_a_deactivated_organizer_may_not(world: World) -> None:
    async with world.sessions.begin() as session:
        olivia = await session.get(User, world.users["olivia"])
        assert olivia is not None
        olivia.is_active = False
    with pytest.raises(NotAllowed):
        await world.service().supervise(world.users["olivia"], CALL, "listen")


@pytest.mark.parametrize(
    "state", [CallState.REQUESTED, CallState.RINGING_VOLUNTEER, CallState.ENDED]
)
async def test_only_once_the_volunteer_has_answered(world: World, state: CallState) -> None:
    await _call(world, state, "c-early", volunteer="bob", contact="vancouver")
    with pytest.raises(SupervisionRefused) as refused:
        await world.service().supervise(world.users["olivia"], "c-early", "listen")
    assert refused.value.code == "not_live"
    assert await _queued(world) == []


async def test_an_organizer_without_a_phone_is_told(world: World) -> None:
    async with world.sessions.begin() as session:
        olivia = await session.get(User, world.users["olivia"])
        assert olivia is not None
        olivia.sip_extension = None
    with pytest.raises(SupervisionRefused) as refused:
        await world.service().supervise(world.users["olivia"], CALL, "barge")
    assert refused.value.code == "no_phone"
    assert await _audited(world) == []


async def test_a_mode_is_one_of_three(world: World) -> None:
    with pytest.raises(SupervisionRefused):
        await world.service().supervise(world.users["olivia"], CALL, "spy")  # type: ignore[arg-type]


async def test_the_worker_rings_the_organizers_own_phone_once(world: World) -> None:
    service = world.service()
    await service.supervise(world.users["olivia"], CALL, "whisper")
    await service.supervise(world.users["nora"], CALL, "barge")
    pbx = SpyRecorder()
    worker = CallWorker(service, _port(pbx), originate_timeout_ms=15000, supervision_beep=True)
    assert await worker.handle_supervision_requests() == 2
    desk, own = pbx.asked
    assert (desk.call_id, desk.mode, desk.channel) == (CALL, "whisper", "PJSIP/1007")
    assert (desk.context, desk.timeout_ms, desk.beep) == ("dialer-supervise", 15000, True)
    # The call's caller ID, for an organizer rung over the trunk like a contact.
    assert desk.caller_id_number == CALLER_ID.lstrip("+")
    assert (own.mode, own.channel) == ("barge", "Local/15145550166@dialer-outbound/n")
    # Claimed once: a second pass (another worker, a restart) finds nothing.
    assert await worker.handle_supervision_requests() == 0
    assert len(pbx.asked) == 2


async def test_a_request_the_pbx_cannot_serve_is_dropped_not_retried(world: World) -> None:
    service = world.service()
    await service.supervise(world.users["olivia"], CALL, "listen")
    pbx = SpyRecorder(answer="no_live_leg")
    worker = CallWorker(service, _port(pbx), originate_timeout_ms=15000)
    assert await worker.handle_supervision_requests() == 1
    assert await worker.handle_supervision_requests() == 0
    assert len(pbx.asked) == 1


async def test_a_refusal_by_the_pbx_is_logged_and_the_rest_go_on(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    service = world.service()
    await service.supervise(world.users["olivia"], CALL, "listen")
    await service.supervise(world.users["adam"], CALL, "whisper")
    pbx = SpyRecorder(refusal=OriginateRejected("Extension does not exist."))
    worker = CallWorker(service, _port(pbx), originate_timeout_ms=15000)
    assert await worker.handle_supervision_requests() == 2
    assert [request.mode for request in pbx.asked] == ["listen", "whisper"]
    assert "refused by the PBX: Extension does not exist." in caplog.text
    assert await worker.handle_supervision_requests() == 0


async def test_a_request_older_than_the_expiry_rings_nobody(world: World) -> None:
    """The worker was down: a click from minutes ago is not served late."""
    service = world.service()
    await service.supervise(world.users["olivia"], CALL, "listen")
    world.clock.now += timedelta(minutes=5)
    pbx = SpyRecorder()
    worker = CallWorker(
        service, _port(pbx), originate_timeout_ms=15000, request_expiry=timedelta(seconds=60)
    )
    assert await worker.handle_supervision_requests() == 1
    assert pbx.asked == []
    assert await worker.handle_supervision_requests() == 0


async def test_nothing_is_claimed_while_the_pbx_is_down(world: World) -> None:
    service = world.service()
    await service.supervise(world.users["olivia"], CALL, "listen")
    pbx = SpyRecorder(connected=False)
    worker = CallWorker(service, _port(pbx), originate_timeout_ms=15000)
    assert await worker.handle_supervision_requests() == 0
    assert await _queued(world) == [(CALL, "listen", world.users["olivia"])]
    pbx.connected = True
    assert await worker.handle_supervision_requests() == 1


def _port(recorder: SpyRecorder) -> CallPbx:
    # The worker only reads `connected` and calls spy_on_call here.
    return recorder  # type: ignore[return-value]


async def test_the_ami_port_spies_on_the_tracked_leg_only(simulator: AmiSimulator) -> None:
    client = AmiClient("127.0.0.1", simulator.port, "dialer", SecretStr(SECRET), action_timeout=2.0)
    pbx = AmiPbx(client)
    await pbx.start(wait=True)
    try:
        spy = SpyRequest(
            request_id=1,
            call_id="c-unknown",
            mode="listen",
            channel="PJSIP/1007",
            context="dialer-supervise",
            caller_id_name="Listen",
            caller_id_number="15145550000",
            timeout_ms=5000,
        )
        # A call the tracker does not follow: nothing is sent at all.
        before = simulator.action_counts["Originate"]
        assert await pbx.spy_on_call(spy) == "no_live_leg"
        assert simulator.action_counts["Originate"] == before
        await pbx.originate(
            OriginateRequest(
                call_id="c-known",
                channel="PJSIP/1001",
                context="dialer-outbound",
                exten="15145550184",
                caller_id_name="Ada",
                caller_id_number="15145550184",
                timeout_ms=5000,
                variables={"DIALER_CALL_ID": "c-known", "DIALER_CALLERID": "15145550000"},
            )
        )
        updates = pbx.updates()
        async for update in updates:
            if update.call_id == "c-known" and update.state is CallState.TALKING:
                leg = update.volunteer_channel
                break
        assert leg is not None and leg.startswith("PJSIP/1001-")
        assert (
            await pbx.spy_on_call(
                SpyRequest(**{**_fields(spy), "call_id": "c-known", "request_id": 2})
            )
            == "rung"
        )
        # A PBX without [dialer-supervise] (not copied from asterisk-config).
        with pytest.raises(OriginateRejected, match="Extension does not exist"):
            await pbx.spy_on_call(
                SpyRequest(
                    **{  # type: ignore[arg-type]
                        **_fields(spy),
                        "call_id": "c-known",
                        "context": "from-phones",
                        "channel": "PJSIP/1009",
                    }
                )
            )
        [sent] = [a for a in simulator.actions if a.get("Context") == "dialer-supervise"]
        assert sent.get("Channel") == "PJSIP/1007"
        assert sent.get("Exten") == "listen"
        assert sent.get("ChannelId") == "c-known-spy2"
        assert sent.get("ActionID") == "spy-2"
        assert set(sent.getall("Variable")) >= {
            f"DIALER_SPY_CHANNEL={leg}",
            "DIALER_SPY_BEEP=no",
        }
    finally:
        await pbx.close()


def _fields(request: SpyRequest) -> dict[str, object]:
    return {name: getattr(request, name) for name in SpyRequest.__slots__}


async def _talking(pbx: AmiPbx, call_id: str, volunteer: str) -> str:
    """Place ``call_id`` from ``volunteer``'s phone; its volunteer leg once it talks."""
    await pbx.originate(
        OriginateRequest(
            call_id=call_id,
            channel=volunteer,
            context="dialer-outbound",
            exten="15145550184",
            caller_id_name="Ada",
            caller_id_number="15145550184",
            timeout_ms=5000,
            variables={"DIALER_CALL_ID": call_id, "DIALER_CALLERID": "15145550000"},
        )
    )
    async with asyncio.timeout(10):
        async for update in pbx.updates():
            if update.call_id == call_id and update.state is CallState.TALKING:
                assert update.volunteer_channel is not None
                return update.volunteer_channel
    raise AssertionError(f"{call_id} never talked")


async def _leg_up(pbx: AmiPbx, call_id: str, phone: str) -> str:
    """The organizer's leg's channel, once Asterisk made it."""
    async with asyncio.timeout(10):
        while (leg := pbx.spies.on_call(call_id, phone)) is None or leg.channel is None:
            await asyncio.sleep(0.01)
    return leg.channel


async def test_an_organizer_on_the_call_is_not_rung_again_and_another_mode_replaces_the_leg(
    simulator: AmiSimulator,
) -> None:
    client = AmiClient("127.0.0.1", simulator.port, "dialer", SecretStr(SECRET), action_timeout=2.0)
    pbx = AmiPbx(client)
    await pbx.start(wait=True)
    olivia = "PJSIP/1007"
    try:
        await _talking(pbx, "c-watched", "PJSIP/1001")
        base = SpyRequest(
            request_id=10,
            call_id="c-watched",
            mode="listen",
            channel=olivia,
            context="dialer-supervise",
            caller_id_name="Listen",
            caller_id_number="15145550000",
            timeout_ms=5000,
        )

        def asked(request_id: int, **changes: object) -> SpyRequest:
            return SpyRequest(**{**_fields(base), "request_id": request_id, **changes})  # type: ignore[arg-type]

        def originates() -> list[str]:
            return [
                f"{a.get('ChannelId')} {a.get('Exten')}"
                for a in simulator.actions
                if a.get("Context") == "dialer-supervise"
            ]

        assert await pbx.spy_on_call(asked(10)) == "rung"
        # Clicked again while the phone still rings, and once on the call.
        assert await pbx.spy_on_call(asked(11)) == "already_on"
        listening = await _leg_up(pbx, "c-watched", olivia)
        assert await pbx.spy_on_call(asked(12)) == "already_on"
        assert originates() == ["c-watched-spy10 listen"]
        # Another organizer's phone is rung in beside it.
        assert await pbx.spy_on_call(asked(13, channel="PJSIP/1009")) == "rung"
        # Barge instead: the listening leg is hung up, then the phone rung back in.
        hangups_before = simulator.action_counts["Hangup"]
        assert await pbx.spy_on_call(asked(14, mode="barge")) == "rung"
        assert simulator.action_counts["Hangup"] == hangups_before + 1
        [hung_up] = [a for a in simulator.actions if a.get("Action") == "Hangup"][-1:]
        assert hung_up.get("Channel") == listening
        assert originates()[-1] == "c-watched-spy14 barge"
        barging = await _leg_up(pbx, "c-watched", olivia)
        assert barging != listening
        # The organizer hangs up: the next click rings them in again.
        await client.hangup(barging)
        async with asyncio.timeout(10):
            while pbx.spies.on_call("c-watched", olivia) is not None:
                await asyncio.sleep(0.01)
        assert await pbx.spy_on_call(asked(15)) == "rung"
        assert originates()[-1] == "c-watched-spy15 listen"
    finally:
        await pbx.close()
