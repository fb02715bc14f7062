"""Listen, whisper and barge from the live panel, on a real Asterisk.

An organizer clicks on a live call; the dialer rings the organizer's own
desk phone (a SIPp UA) into ``[dialer-supervise]``, whose ChanSpy() attaches
to the volunteer's leg.  An AMI user of the test's own, reading every event
(the dialer's user filters them), sees ``ChanSpyStart`` with the spied channel
and the ``ChanSpy`` application's options; SIPp's trace shows the
organizer's phone was rung and answered.  Another team's call is refused
before anything reaches AMI: the dialer's wire trace has no Originate for it.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.vocabulary import CampaignStatus, Role, VolunteerPhone
from dialer.store.models import (
    AuditEntry,
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    SupervisionRequest,
    Team,
    TeamMember,
    User,
)
from tests.e2e.webworld import ALL_DAY, CALLER_ID, midday_zone, password_hash
from tests.pbx.conftest import STANDARD_UAS, RealPbx, pbx_running, standard_phones, start_pbx
from tests.pbx.product import (
    ORGANIZER,
    AmiObserver,
    Browser,
    World,
    dialer_running,
    seed,
    stored_call,
    truncate_all,
)
from tests.pbx.record_transcripts import recorder_user

# One xdist worker for the whole module: its module fixture starts its own
# Asterisk, which split tests would do twice.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pbx_supervision")]

ORGANIZER_PHONE = "1011"
# The carrier answers a number ending in 5 and stays up: a call to listen to.
MODES = {
    "listen": ("1010", "+15145550215", "ESq"),
    "whisper": ("1012", "+15145550225", "wESq"),
    "barge": ("1014", "+15145550235", "BESq"),
}
OTHER_TEAM_VOLUNTEER = ("victor", "1016", "+15145550245")
# An organizer whose phone is their own number, rung over the carrier like a
# contact (ends in 5: answers after 1 s and stays); volunteer 1018's call.
OWN_NUMBER_ORGANIZER = ("nadia", "+15145550255")
OWN_NUMBER_CALL = ("1018", "+15145550265")
# The organizer clicks Listen twice on volunteer 1020's call, then Barge.
CLICKED_AGAIN_CALL = ("1020", "+15145550275")


class Observer(AmiObserver):
    """Every AMI event, and the organizer's leg's among them."""

    def spying(self, call_id: str, name: str) -> list[dict[str, str]]:
        """``name`` events of the organizer's leg for ``call_id`` (ChannelId <call>-spy<n>)."""
        mine = f"{call_id}-spy"
        return [
            event
            for event in self.events
            if event.get("Event") == name
            and (event.get("SpyerUniqueid") or event.get("Uniqueid") or "").startswith(mine)
        ]

    async def spy_of(self, call_id: str, name: str, timeout: float = 15) -> dict[str, str]:
        async with asyncio.timeout(timeout):
            while not self.spying(call_id, name):
                await asyncio.sleep(0.05)
        return self.spying(call_id, name)[0]


@dataclass
class Supervised:
    pbx: RealPbx
    world: World
    observer: Observer
    dialer_trace: Path
    call_ids: dict[str, str] = field(default_factory=dict)
    own_number_call_id: str = ""
    clicked_again_call_id: str = ""
    other_call_id: str = ""
    other_refusal: tuple[int, object] = (0, None)
    volunteer_refusal: tuple[int, object] = (0, None)


async def _other_team(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """A second team with its own volunteer, campaign and contact: (campaign, contact)."""
    username, extension, number = OTHER_TEAM_VOLUNTEER
    async with sessions.begin() as session:
        team = Team(name=f"Other {uuid.uuid4().hex[:6]}")
        session.add(team)
        await session.flush()
        campaign = Campaign(
            title="Other team",
            status=CampaignStatus.ACTIVE,
            team_id=team.id,
            allowed_caller_ids=[CALLER_ID],
            calling_hours=ALL_DAY,
            max_attempts=5,
            retry_delay_minutes=0,
        )
        user = User(
            username=username,
            display_name="Victor",
            role=Role.VOLUNTEER,
            password_hash=password_hash(),
            sip_extension=extension,
        )
        contact = Contact(first_name="Other", last_name="Test", timezone=midday_zone())
        contact.phones = [ContactPhone(e164=number)]
        session.add_all([campaign, user, contact])
        await session.flush()
        session.add(TeamMember(team_id=team.id, user_id=user.id))
        session.add(
            CallingListEntry(campaign_id=campaign.id, contact_id=contact.id, volunteer_id=user.id)
        )
        return campaign.id, contact.id


@pytest.fixture(scope="module")
async def supervised(
    pbx_folder: Path, pg_url: str, session_maker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Supervised]:
    secret = f"obs{random.getrandbits(64):x}"
    asterisk, agents = await start_pbx(
        pbx_folder / "supervision",
        STANDARD_UAS,
        standard_phones(),
        database=pg_url.rsplit("/", 1)[1],
        appended={"manager.conf": recorder_user(secret)},
    )
    volunteers = {f"v{ext}": ext for ext, _number, _options in MODES.values()}
    contacts = {mode: (number, f"v{ext}") for mode, (ext, number, _opts) in MODES.items()}
    volunteers[f"v{OWN_NUMBER_CALL[0]}"] = OWN_NUMBER_CALL[0]
    contacts["own_number"] = (OWN_NUMBER_CALL[1], f"v{OWN_NUMBER_CALL[0]}")
    volunteers[f"v{CLICKED_AGAIN_CALL[0]}"] = CLICKED_AGAIN_CALL[0]
    contacts["clicked_again"] = (CLICKED_AGAIN_CALL[1], f"v{CLICKED_AGAIN_CALL[0]}")
    # Emptied even when setting up fails half-way, or the next module's
    # users would collide with these.
    try:
        world = await seed(session_maker, volunteers, contacts)
        async with session_maker.begin() as session:
            organizer = await session.scalar(select(User).where(User.username == ORGANIZER))
            assert organizer is not None
            # The organizer's own desk phone, as a volunteer's is set.
            organizer.sip_extension = ORGANIZER_PHONE
            username, number = OWN_NUMBER_ORGANIZER
            nadia = User(
                username=username,
                display_name="Nadia",
                role=Role.ORGANIZER,
                password_hash=password_hash(),
                phone=VolunteerPhone.OWN_NUMBER,
                own_number=number,
                own_number_approved_at=datetime.now(UTC),
            )
            session.add(nadia)
            await session.flush()
            team_id = await session.scalar(
                select(TeamMember.team_id).where(TeamMember.user_id == organizer.id)
            )
            assert team_id is not None
            session.add(TeamMember(team_id=team_id, user_id=nadia.id))
        other_campaign, other_contact = await _other_team(session_maker)
        trace = pbx_folder / "supervision" / "dialer-ami.ami"
        async with (
            pbx_running(asterisk, agents) as pbx,
            Observer().watching(asterisk.ami_port, secret) as observer,
        ):
            await asterisk.wait_for_contacts({"1010": "Avail", ORGANIZER_PHONE: "Avail"})
            async with dialer_running(
                pg_url,
                asterisk,
                pbx_folder,
                DIALER_AMI_TRACE_FILE=str(trace),
                # The volunteer is told: two tones whispered to them alone.
                DIALER_SUPERVISION_NOTICE="true",
            ) as dialer:
                result = Supervised(pbx, world, observer, trace)
                async with (
                    Browser.signed_in(dialer.url, ORGANIZER) as olivia,
                    Browser.signed_in(dialer.url, OTHER_TEAM_VOLUNTEER[0]) as victor,
                ):
                    # Another team's live call: refused, whoever asks from team A.
                    status, body = await victor.api(
                        "POST",
                        "/api/calls",
                        {"contact_id": other_contact, "campaign_id": other_campaign},
                    )
                    assert status == 201, body
                    result.other_call_id = str(body["call_id"])
                    await victor.wait_for(result.other_call_id, "talking")
                    result.other_refusal = await olivia.api(
                        "POST",
                        f"/api/calls/{result.other_call_id}/supervise",
                        {"mode": "listen"},
                    )
                    for mode, (extension, _number, _options) in MODES.items():
                        async with Browser.signed_in(dialer.url, f"v{extension}") as volunteer:
                            call_id = await volunteer.click_call(world, mode)
                            result.call_ids[mode] = call_id
                            await volunteer.wait_for(call_id, "talking")
                            if mode == "listen":
                                # The call's own volunteer may not spy on it.
                                result.volunteer_refusal = await volunteer.api(
                                    "POST", f"/api/calls/{call_id}/supervise", {"mode": "listen"}
                                )
                            status, body = await olivia.api(
                                "POST", f"/api/calls/{call_id}/supervise", {"mode": mode}
                            )
                            assert status == 202, body
                            await observer.spy_of(call_id, "ChanSpyStart")
                            # The organizer heard the call; now the volunteer's
                            # leg ends, and ChanSpy's E option ends the spying.
                            status, body = await olivia.api("POST", f"/api/calls/{call_id}/hangup")
                            assert status == 202, body
                            await volunteer.wait_for(call_id, "ended")
                    async with Browser.signed_in(
                        dialer.url, f"v{CLICKED_AGAIN_CALL[0]}"
                    ) as volunteer:
                        call_id = await volunteer.click_call(world, "clicked_again")
                        result.clicked_again_call_id = call_id
                        await volunteer.wait_for(call_id, "talking")
                        for _click in range(2):
                            status, body = await olivia.api(
                                "POST", f"/api/calls/{call_id}/supervise", {"mode": "listen"}
                            )
                            assert status == 202, body
                        await observer.spy_of(call_id, "ChanSpyStart")
                        await _handled(session_maker, call_id, 2)
                        status, body = await olivia.api(
                            "POST", f"/api/calls/{call_id}/supervise", {"mode": "barge"}
                        )
                        assert status == 202, body
                        async with asyncio.timeout(20):
                            while len(observer.spying(call_id, "ChanSpyStart")) < 2:
                                await asyncio.sleep(0.05)
                        await olivia.api("POST", f"/api/calls/{call_id}/hangup")
                        await volunteer.wait_for(call_id, "ended")
                        await observer.spy_of(call_id, "ChanSpyStop")
                    async with (
                        Browser.signed_in(dialer.url, f"v{OWN_NUMBER_CALL[0]}") as volunteer,
                        Browser.signed_in(dialer.url, OWN_NUMBER_ORGANIZER[0]) as nadia,
                    ):
                        call_id = await volunteer.click_call(world, "own_number")
                        result.own_number_call_id = call_id
                        await volunteer.wait_for(call_id, "talking")
                        status, body = await nadia.api(
                            "POST", f"/api/calls/{call_id}/supervise", {"mode": "listen"}
                        )
                        assert status == 202, body
                        await observer.spy_of(call_id, "ChanSpyStart", timeout=20)
                        await nadia.api("POST", f"/api/calls/{call_id}/hangup")
                        await volunteer.wait_for(call_id, "ended")
                    await victor.api("POST", f"/api/calls/{result.other_call_id}/hangup")
                    await victor.wait_for(result.other_call_id, "ended")
                yield result
    finally:
        await truncate_all(session_maker)


async def _handled(sessions: async_sessionmaker[AsyncSession], call_id: str, count: int) -> None:
    """Wait until the worker has taken ``count`` supervision requests for ``call_id``."""
    async with asyncio.timeout(20):
        while True:
            async with sessions() as session:
                handled = list(
                    await session.scalars(
                        select(SupervisionRequest.id).where(
                            SupervisionRequest.call_id == call_id,
                            SupervisionRequest.handled_at.is_not(None),
                        )
                    )
                )
            if len(handled) >= count:
                return
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_the_organizers_phone_is_rung_into_the_call_with_the_right_spy(
    supervised: Supervised, session_maker: async_sessionmaker[AsyncSession], mode: str
) -> None:
    call_id = supervised.call_ids[mode]
    row = await stored_call(session_maker, call_id)
    assert row.volunteer_channel is not None
    observer = supervised.observer
    start = await observer.spy_of(call_id, "ChanSpyStart")
    # The spied channel is the volunteer's leg the dialer tracked, and only it.
    assert start["SpyeeChannel"] == row.volunteer_channel
    assert start["SpyeeUniqueid"] == f"{call_id}-v"
    assert start["SpyerChannel"].startswith(f"PJSIP/{ORGANIZER_PHONE}-")
    [chanspy] = [e for e in observer.spying(call_id, "Newexten") if e["Application"] == "ChanSpy"]
    _extension, _number, options = MODES[mode]
    assert chanspy["AppData"] == f"{row.volunteer_channel},{options}"
    assert chanspy["Context"] == "dialer-spy"
    [entered] = [
        e
        for e in observer.spying(call_id, "Newexten")
        if e["Context"] == "dialer-supervise" and e["Priority"] == "1"
    ]
    assert entered["Exten"] == mode
    # The volunteer's leg hung up: E ended the spying and the organizer's call.
    await observer.spy_of(call_id, "ChanSpyStop")
    hangup = await observer.spy_of(call_id, "Hangup")
    assert hangup["Channel"] == start["SpyerChannel"]
    # SIPp's trace: the organizer's desk phone got the call and answered it.
    dialogs = supervised.pbx.ua_of(ORGANIZER_PHONE).dialogs(ORGANIZER_PHONE)
    answered = [d for d in dialogs if d.answered_at is not None]
    # One call per mode, and two for the call clicked on again (Listen once, then Barge).
    assert len(answered) == len(MODES) + 2
    assert all(d.bye_from() == "asterisk" for d in answered)


async def test_listen_clicked_twice_rings_once_and_barge_replaces_the_leg(
    supervised: Supervised, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    call_id = supervised.clicked_again_call_id
    row = await stored_call(session_maker, call_id)
    observer = supervised.observer
    # Two organizer legs for three clicks: Listen (the second Listen rang
    # nothing), then Barge.
    legs = [e["Uniqueid"] for e in observer.spying(call_id, "Newchannel")]
    assert len(legs) == 2, legs
    listening, barging = observer.spying(call_id, "ChanSpyStart")
    assert (listening["SpyerUniqueid"], barging["SpyerUniqueid"]) == tuple(legs)
    assert listening["SpyeeChannel"] == barging["SpyeeChannel"] == row.volunteer_channel
    options = [
        e["AppData"] for e in observer.spying(call_id, "Newexten") if e["Application"] == "ChanSpy"
    ]
    assert options == [f"{row.volunteer_channel},ESq", f"{row.volunteer_channel},BESq"]
    # The listening leg was hung up before the barging one was rung.
    [listening_ended] = [e for e in observer.spying(call_id, "Hangup") if e["Uniqueid"] == legs[0]]
    [barging_made] = [e for e in observer.spying(call_id, "Newchannel") if e["Uniqueid"] == legs[1]]
    assert observer.events.index(listening_ended) < observer.events.index(barging_made)
    # SIPp's trace: the organizer's phone was sent its BYE before the new INVITE
    # (the call clicked on again is the fourth and fifth to ring it).
    dialogs = sorted(
        supervised.pbx.ua_of(ORGANIZER_PHONE).dialogs(ORGANIZER_PHONE),
        key=lambda dialog: dialog.invite.at,
    )
    listened, barged = dialogs[len(MODES) : len(MODES) + 2]
    assert listened.bye_from() == "asterisk"
    assert listened.ended_at is not None and listened.ended_at <= barged.invite.at
    assert barged.answered_at is not None
    # All three clicks are in the audit log.
    async with session_maker() as session:
        actions = list(
            await session.scalars(
                select(AuditEntry.action)
                .where(
                    AuditEntry.entity_id == call_id,
                    AuditEntry.action.in_([f"call.{mode}" for mode in MODES]),
                )
                .order_by(AuditEntry.id)
            )
        )
    assert actions == ["call.listen", "call.listen", "call.barge"]


async def test_every_use_is_audited_with_who_which_call_and_when(
    supervised: Supervised, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    async with session_maker() as session:
        entries = list(
            await session.scalars(select(AuditEntry).where(AuditEntry.action.like("call.%")))
        )
        olivia = await session.scalar(select(User).where(User.username == ORGANIZER))
    assert olivia is not None
    supervisions = {f"call.{mode}" for mode in MODES}
    used = {entry.entity_id: entry for entry in entries if entry.action in supervisions}
    assert used.pop(supervised.own_number_call_id).action == "call.listen"
    assert {mode: used[call_id].action for mode, call_id in supervised.call_ids.items()} == {
        mode: f"call.{mode}" for mode in MODES
    }
    for call_id in supervised.call_ids.values():
        assert used[call_id].actor_id == olivia.id
        assert used[call_id].at is not None
    assert supervised.other_call_id not in used


async def test_another_teams_call_is_refused_before_anything_reaches_ami(
    supervised: Supervised, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    status, body = supervised.other_refusal
    assert status == 404, body
    async with session_maker() as session:
        waiting = list(
            await session.scalars(
                select(SupervisionRequest).where(
                    SupervisionRequest.call_id == supervised.other_call_id
                )
            )
        )
    assert waiting == []
    sent = "".join(
        path.read_text(errors="replace")
        for path in supervised.dialer_trace.parent.glob(f"{supervised.dialer_trace.stem}*")
    )
    # The dialer's own wire trace: the supervisions went out, none for it.
    originates = [
        frame
        for frame in re.split(r"^(?=(?:>>>|<<<) t=)", sent, flags=re.M)
        if frame.startswith(">>>") and "Action: Originate" in frame
    ]
    # (one per mode, the own-number organizer's, and two for the call clicked on again)
    assert sum("Context: dialer-supervise" in frame for frame in originates) == len(MODES) + 3
    assert f"{supervised.other_call_id}-spy" not in sent
    assert supervised.observer.spying(supervised.other_call_id, "Newchannel") == []


async def test_the_calls_own_volunteer_may_not_spy_on_it(supervised: Supervised) -> None:
    status, body = supervised.volunteer_refusal
    assert status in (403, 404), body


async def test_an_organizer_whose_phone_is_their_own_number_is_called_on_it(
    supervised: Supervised, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    """The same Originate with the organizer's phone as a volunteer's own
    number is built: a Local channel into the outbound context, which dials
    it over the carrier with the call's caller ID; its ;1 half spies."""
    call_id = supervised.own_number_call_id
    row = await stored_call(session_maker, call_id)
    start = await supervised.observer.spy_of(call_id, "ChanSpyStart")
    number = OWN_NUMBER_ORGANIZER[1].removeprefix("+")
    assert start["SpyerChannel"].startswith(f"Local/{number}@dialer-outbound-")
    assert start["SpyerChannel"].endswith(";1")
    assert start["SpyeeChannel"] == row.volunteer_channel
    mobile = await supervised.pbx.carrier.dialog(number)
    assert mobile.answered_at is not None
    # The organizer's phone shows the campaign's number, as a contact's does.
    assert "sip:15145550000@" in mobile.invite.headers["from"]
    await supervised.observer.spy_of(call_id, "ChanSpyStop")


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_the_volunteer_is_told_by_tones_whispered_to_them_alone(
    supervised: Supervised, session_maker: async_sessionmaker[AsyncSession], mode: str
) -> None:
    """DIALER_SUPERVISION_NOTICE: once the organizer answers, [dialer-spy]
    originates a Local channel whose ;2 half plays tones and whose ;1 half
    whispers them (ChanSpy qwES) into the volunteer's leg."""
    call_id = supervised.call_ids[mode]
    row = await stored_call(session_maker, call_id)
    observer = supervised.observer
    [originate] = [
        e for e in observer.spying(call_id, "Newexten") if e["Application"] == "Originate"
    ]
    assert originate["AppData"].startswith("Local/tone@dialer-spy-notice/n,app,ChanSpy,")
    assert f"{row.volunteer_channel}\\,qwES" in originate["AppData"]
    [notice] = [
        e
        for e in observer.named("ChanSpyStart")
        if e["SpyeeUniqueid"] == f"{call_id}-v"
        and e["SpyerChannel"].startswith("Local/tone@dialer-spy-notice-")
    ]
    assert notice["SpyerChannel"].endswith(";1")
    tones = notice["SpyerChannel"][:-1] + "2"
    assert any(
        e.get("Channel") == tones and e.get("Application") == "PlayTones"
        for e in observer.named("Newexten")
    )
    # The notice comes as the organizer joins, not while their phone rings.
    [answered] = [e for e in observer.spying(call_id, "Newstate") if e["ChannelStateDesc"] == "Up"]
    assert observer.events.index(answered) < observer.events.index(notice)
