"""Power mode against click-to-call, through one worker and the AMI simulator.

N volunteers (200) call for a simulated window (10 minutes) in power mode:
each starts a session, the worker calls their phone once into a conference
of its own and dials their list's contacts one after the other; the driver
(playing the volunteers and the web tier) records each answered call's
outcome after a wrap-up of a few simulated seconds, and asks for a "last
call" when the window closes.  The baseline, in the same run, is the same N
volunteers on the same kind of campaign and contacts in click-to-call: each
asks for the next contact, clicks Call (their phone rings each time),
records the outcome of an answered call after the same wrap-up, and clicks
again.  Each mode gets a fresh database, a fresh simulator and a fresh
worker: three processes, as in production.

The simulator runs at ``--time-scale`` real seconds per simulated second
(default 0.25: the 10 simulated minutes take 2.5 real minutes per mode, and
the worker carries 4x the real load).  ``--time-scale 1`` plays it in real
time.  Durations of the simulated world (rings, talk, wrap-ups, the window,
calls per volunteer-hour) are in simulated time; latencies are real time.

The contacts (the same numbers in both modes, the same behaviour for each
number, drawn from the number): 35% answer after 5-20 s of ringing and talk
30-150 s, 35% ring out (the dialplan's 30 s), 10% busy, 5% decline, 5%
congestion, 10% unreachable.  A volunteer's desk phone answers
``--phone-answer`` seconds after it starts ringing (each call in
click-to-call, once per session in power mode).

Measured:

* calls and answered calls per volunteer-hour, in both modes (calls
  requested inside the window over N x the window);
* contact answered -> bridged to the volunteer, from the AMI events an
  observer (a second, full-read AMI user) receives: answered is the DialEnd
  ANSWER of the ;1 half's Dial() of the contact; bridged is the moment the
  contact is in a bridge with the ;1 half AND the ;2 half is in the
  session's conference with the volunteer in it (target p99 < 300 ms);
* contacts bridged to nobody (target 0): bridged with the ;1 half while the
  session's volunteer was not in the conference, or whose ;2 half stayed in
  the conference without the volunteer after the contact answered;
* the dialer's own latency: contact answered (the observer) -> the call's
  "talking" state committed (the worker's ``on_persisted`` hook);
* the wait between calls in power mode: the volunteer free (outcome saved,
  or the unanswered call over) -> the next contact's Originate sent;
* the worker's CPU and memory, and its power passes (how long each took).

Run: .venv/bin/python bench/power.py [--volunteers 200] [--minutes 10]
     [--time-scale 0.25] [--wrap-up 5] [--phone-answer 3] [--click-delay 0]
Small, while developing: --volunteers 20 --minutes 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import asyncpg
from common import ALWAYS, PG_SERVER, SECRET, desk_extensions, free_port, percentile, process_cpu
from pydantic import SecretStr
from sqlalchemy import insert, select

from ami_bridge.codec import Action, Decoder, Message, encode_action
from ami_bridge.simulator.behaviour import ContactBehaviour, VolunteerBehaviour, number_key
from dialer.domain.outcomes import parse_submission
from dialer.domain.vocabulary import CampaignStatus, DialingMode, Role
from dialer.store import engine as db
from dialer.store.models import (
    CallAttempt,
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    PowerSession,
    Team,
    TeamMember,
    User,
)

OBSERVER = "observer"
OBSERVER_SECRET = "observer-secret"
TARGET_BRIDGE_P99_MS = 300.0
# The dialplan's DIALER_RING_TIMEOUT (the simulator's ring_timeout).
RING_OUT_S = 30.0
# The longest a contact talks (contact_behaviour): how long a "last call"
# may take to wrap up before the driver hangs the session up.
LONGEST_CALL_S = 20.0 + 150.0


# -- the simulator process ------------------------------------------------------


def contact_behaviour(number: str) -> ContactBehaviour:
    """What a contact does, drawn from its number: the same in both modes."""
    draw = random.Random(number_key(number))
    roll = draw.random()
    if roll < 0.35:
        return ContactBehaviour.answers(
            after=draw.uniform(5.0, 20.0), hangs_up_after=draw.uniform(30.0, 150.0)
        )
    if roll < 0.70:
        return ContactBehaviour.no_answer()
    if roll < 0.80:
        return ContactBehaviour.busy()
    if roll < 0.85:
        return ContactBehaviour.rejected()
    if roll < 0.90:
        return ContactBehaviour.congestion()
    return ContactBehaviour.unreachable()


async def simulator_main(port: int, time_scale: float, phone_answer: float) -> None:
    """`dialer simulate-pbx` with a second, full-read AMI user for the observer
    (the command has no option for one) and the bench's contacts and phones."""
    from ami_bridge.simulator.server import AmiSimulator
    from ami_bridge.simulator.users import AmiUser

    def volunteer_behaviour(_extension: str) -> VolunteerBehaviour:
        return VolunteerBehaviour(answer_after=phone_answer)

    sim = AmiSimulator(
        port=port,
        username="dialer",
        secret=SECRET,
        # As the production AMI user; the observer sees everything.
        least_privilege=True,
        users=(AmiUser(OBSERVER, OBSERVER_SECRET),),
        time_scale=time_scale,
        contact_rule=contact_behaviour,
        volunteer_rule=volunteer_behaviour,
    )
    await sim.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await sim.stop()


# -- the worker process ---------------------------------------------------------


async def worker_main(url: str, ami_port: int) -> None:
    from sqlalchemy import event

    from ami_bridge.pbx import AmiPbx
    from dialer.domain.vocabulary import CallState
    from dialer.runtime.bootstrap import ami_client, build_runtime
    from dialer.runtime.settings import Settings

    settings = Settings(
        _env_file=None,
        database_url=SecretStr(url),
        ami_port=ami_port,  # type: ignore[call-arg]
        ami_username="dialer",
        ami_secret=SecretStr(SECRET),
        allowed_destinations="CA",
    )
    pbx = AmiPbx(ami_client(settings))
    # The production pool (DIALER_DATABASE_POOL_SIZE, 10 + 10 overflow): the
    # server's 100 connections are shared with the driver and other jobs.
    runtime = build_runtime(settings, pbx)
    worker = runtime.worker
    assert worker is not None
    talking: dict[str, float] = {}
    lags: list[float] = []

    def persisted(snapshot: Any, lag: float) -> None:
        lags.append(lag)
        if snapshot.state is CallState.TALKING:
            talking.setdefault(snapshot.call_id, time.time())

    worker.on_persisted = persisted
    passes: list[tuple[float, float]] = []  # (started, seconds)
    statements = {"all": 0, "in_passes": 0}
    in_pass = False
    power = worker.power
    if power is not None:
        run_pass = power.run_pass

        async def timed_pass() -> None:
            nonlocal in_pass
            began = time.perf_counter()
            in_pass = True
            try:
                await run_pass()
            finally:
                in_pass = False
                passes.append((time.time(), time.perf_counter() - began))

        power.run_pass = timed_pass  # type: ignore[method-assign]

    # Where a pass's time goes: each PowerService call the worker makes.
    spans: dict[str, list[float]] = {}
    if power is not None:
        service = power.service
        for method in (
            "claim_new",
            "to_hang_up",
            "never_answered",
            "live",
            "refresh",
            "dial_next",
            "leg_changed",
        ):
            original = getattr(service, method)

            def timed(
                *args: Any, _original: Any = original, _name: str = method, **kwargs: Any
            ) -> Any:
                async def call() -> Any:
                    began = time.perf_counter()
                    try:
                        return await _original(*args, **kwargs)
                    finally:
                        spans.setdefault(_name, []).append(time.perf_counter() - began)

                return call()

            setattr(service, method, timed)

    kinds: dict[str, int] = {}

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # Only an approximation inside passes: other tasks run meanwhile.
        statements["all"] += 1
        if in_pass:
            statements["in_passes"] += 1
            kind = " ".join(statement.split())[:90]
            kinds[kind] = kinds.get(kind, 0) + 1

    lag: list[float] = []

    async def tick() -> None:
        # How late a 5 ms sleep wakes: the loop busy (a long pass step) or starved.
        while True:
            began = time.perf_counter()
            await asyncio.sleep(0.005)
            lag.append(time.perf_counter() - began - 0.005)

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", count)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    cpu_start = time.process_time()
    task = asyncio.create_task(worker.run())
    ticker = asyncio.create_task(tick())
    listener = runtime.listener
    listening = asyncio.create_task(listener.run()) if listener is not None else None
    await stop.wait()
    cpu = time.process_time() - cpu_start
    if listening is not None:
        listening.cancel()
    task.cancel()
    ticker.cancel()
    await pbx.close()
    await runtime.close()
    print(
        json.dumps(
            {
                "talking": talking,
                "lags": lags,
                "passes": passes,
                "statements": statements,
                "spans": spans,
                "kinds": sorted(kinds.items(), key=lambda item: -item[1])[:12],
                "loop_lag": [percentile(lag, 0.5), percentile(lag, 0.99), max(lag, default=0.0)],
                "cpu": cpu,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


# -- the AMI observer -----------------------------------------------------------


@dataclass
class ContactLeg:
    """One power call as the observer sees it, keyed by its ;1 half's name."""

    call_id: str
    conference: str
    answered_at: float | None = None
    # The contact in a bridge with the ;1 half.
    with_half_at: float | None = None
    bridged_at: float | None = None
    ended: bool = False
    # The volunteer not in the conference when the contact met the ;1 half.
    bridged_without_volunteer: bool = False
    # Its ;2 half in the conference without the volunteer, after the answer:
    # since when, and for how long (None while still there).
    alone_since: float | None = None
    alone_for: list[float] = field(default_factory=list)


class Observer:
    """Follows every bridge and conference on a full-read AMI connection.

    Timestamps are the arrival of the bytes at this process: the worker
    reads the same stream at the same moment.
    """

    def __init__(self) -> None:
        self.bridges: dict[str, set[str]] = {}
        self.conference_of_bridge: dict[str, str] = {}
        self.volunteer_in: dict[str, str] = {}  # conference -> the volunteer's channel
        self.half_in: dict[str, str] = {}  # ;2 half -> its conference
        self.legs: dict[str, ContactLeg] = {}  # ;1 half -> its call
        # Every call's contact answer (DialEnd ANSWER of a Dial() by a leg),
        # by call id, in both modes.
        self.answered: dict[str, float] = {}
        self.events = 0
        self._decoder = Decoder()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self._writer = writer
        # Only the call class: the dialplan's VarSet/Newexten flood is not needed.
        writer.write(
            encode_action(
                Action.build(
                    "Login",
                    {"Username": OBSERVER, "Secret": OBSERVER_SECRET, "Events": "call"},
                    action_id="observer-login",
                )
            )
        )
        self._task = asyncio.create_task(self._read(reader))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(262144):
            now = time.time()
            for message in self._decoder.feed(data):
                if not message.is_banner:
                    self.on_message(message, now)

    def on_message(self, message: Message, now: float) -> None:
        name = message.get("Event")
        if name is None:
            if message.get("ActionID") == "observer-login" and message.get("Response") != "Success":
                raise RuntimeError(f"observer login refused: {message.get('Message')}")
            return
        self.events += 1
        handler = self._handlers.get(name)
        if handler is not None:
            handler(self, message, now)

    def _dial_end(self, message: Message, now: float) -> None:
        channel = message.get("Channel") or ""
        # An Originate's own dial has no Channel: only a leg's Dial() of the contact.
        if not channel or message.get("DialStatus") != "ANSWER":
            return
        call_id = (message.get("Linkedid") or "").removesuffix("-v")
        self.answered.setdefault(call_id, now)
        leg = self._leg(channel, message)
        if leg is not None and leg.answered_at is None:
            leg.answered_at = now
            room = self.half_in.get(channel[:-1] + "2")
            if room is not None and room not in self.volunteer_in:
                leg.alone_since = now
            self._check_bridged(channel, leg, now)

    def _leg(self, channel: str, message: Message) -> ContactLeg | None:
        """The power call whose ;1 half is ``channel`` (None for any other channel)."""
        if not channel.endswith(";1") or "@dialer-power-join-" not in channel:
            return None
        leg = self.legs.get(channel)
        if leg is None:
            session = channel.split("/", 1)[1].split("@", 1)[0]
            call_id = (message.get("Uniqueid") or "").removesuffix("-v")
            leg = self.legs[channel] = ContactLeg(call_id, f"dialer-power-{session}")
        return leg

    def _bridge_enter(self, message: Message, now: float) -> None:
        bridge = message.get("BridgeUniqueid") or ""
        channel = message.get("Channel") or ""
        members = self.bridges.setdefault(bridge, set())
        members.add(channel)
        if message.get("BridgeTechnology") == "softmix" or message.get("BridgeCreator") == (
            "ConfBridge"
        ):
            conference = message.get("BridgeName") or ""
            self.conference_of_bridge[bridge] = conference
            if channel.endswith(";2") and channel.startswith("Local/"):
                self.half_in[channel] = conference
                leg = self.legs.get(channel[:-1] + "1")
                if leg is not None:
                    if leg.answered_at is not None and conference not in self.volunteer_in:
                        leg.alone_since = now
                    self._check_bridged(channel[:-1] + "1", leg, now)
            elif message.get("Context") == "dialer-power":
                self.volunteer_in[conference] = channel
                for half, where in self.half_in.items():
                    if where == conference:
                        leg = self.legs.get(half[:-1] + "1")
                        if leg is not None:
                            if leg.alone_since is not None:
                                leg.alone_for.append(now - leg.alone_since)
                                leg.alone_since = None
                            self._check_bridged(half[:-1] + "1", leg, now)
            return
        # A two-party bridge: a ;1 half and its contact, once both are in.
        if len(members) < 2:
            return
        for member in members:
            leg = self._leg(member, message) if member == channel else self.legs.get(member)
            if leg is None or leg.with_half_at is not None:
                continue
            leg.with_half_at = now
            if leg.conference not in self.volunteer_in:
                leg.bridged_without_volunteer = True
            self._check_bridged(member, leg, now)

    def _check_bridged(self, half1: str, leg: ContactLeg, now: float) -> None:
        if leg.bridged_at is not None or leg.with_half_at is None:
            return
        if self.half_in.get(half1[:-1] + "2") != leg.conference:
            return
        if leg.conference in self.volunteer_in:
            leg.bridged_at = now

    def _bridge_leave(self, message: Message, now: float) -> None:
        bridge = message.get("BridgeUniqueid") or ""
        channel = message.get("Channel") or ""
        self.bridges.get(bridge, set()).discard(channel)
        conference = self.conference_of_bridge.get(bridge)
        if conference is None:
            return
        if self.volunteer_in.get(conference) == channel:
            del self.volunteer_in[conference]
            for half, where in self.half_in.items():
                leg = self.legs.get(half[:-1] + "1")
                if where == conference and leg is not None and leg.answered_at is not None:
                    if not leg.ended:
                        leg.alone_since = now
        elif self.half_in.get(channel) == conference:
            del self.half_in[channel]
            leg = self.legs.get(channel[:-1] + "1")
            if leg is not None and leg.alone_since is not None:
                leg.alone_for.append(now - leg.alone_since)
                leg.alone_since = None

    def _bridge_destroy(self, message: Message, _now: float) -> None:
        bridge = message.get("BridgeUniqueid") or ""
        self.bridges.pop(bridge, None)
        self.conference_of_bridge.pop(bridge, None)

    def _hangup(self, message: Message, _now: float) -> None:
        leg = self.legs.get(message.get("Channel") or "")
        if leg is not None:
            leg.ended = True

    _handlers: ClassVar[dict[str, Callable[[Observer, Message, float], None]]] = {
        "DialEnd": _dial_end,
        "BridgeEnter": _bridge_enter,
        "BridgeLeave": _bridge_leave,
        "BridgeDestroy": _bridge_destroy,
        "Hangup": _hangup,
    }


# -- seeding --------------------------------------------------------------------


def contact_numbers(volunteers: int, per_volunteer: int) -> list[list[str]]:
    """Each volunteer's list, the same numbers in both modes."""
    return [
        [f"+1514{2_000_000 + index * per_volunteer + k:07d}" for k in range(per_volunteer)]
        for index in range(volunteers)
    ]


async def seed(url: str, mode: DialingMode, numbers: list[list[str]]) -> tuple[int, list[int]]:
    engine = db.create_engine(url)
    sessions = db.session_factory(engine)
    async with sessions.begin() as session:
        team = Team(name="bench")
        session.add(team)
        await session.flush()
        campaign = Campaign(
            title="bench",
            status=CampaignStatus.ACTIVE,
            team_id=team.id,
            allowed_caller_ids=["+15145550000"],
            calling_hours=ALWAYS,
            dialing_mode=mode,
            # One attempt per contact in the window: both modes go down the
            # list alike, and no retry depends on how fast a mode got there.
            max_attempts=1,
            retry_delay_minutes=24 * 60,
        )
        session.add(campaign)
        await session.flush()
        now = datetime.now(UTC)
        user_ids = list(
            (
                await session.execute(
                    insert(User).returning(User.id, sort_by_parameter_order=True),
                    [
                        {
                            "username": f"v{i}",
                            "display_name": f"V{i}",
                            "role": Role.VOLUNTEER,
                            "password_hash": "x",
                            "sip_extension": extension,
                            "is_active": True,
                            "created_at": now,
                        }
                        for i, extension in enumerate(desk_extensions(len(numbers)))
                    ],
                )
            ).scalars()
        )
        await session.execute(
            insert(TeamMember),
            [{"team_id": team.id, "user_id": uid, "joined_at": now} for uid in user_ids],
        )
        flat = [
            (uid, number) for uid, mine in zip(user_ids, numbers, strict=True) for number in mine
        ]
        contact_ids = list(
            (
                await session.execute(
                    insert(Contact).returning(Contact.id, sort_by_parameter_order=True),
                    [
                        {"first_name": "C", "last_name": number[-4:], "tags": [], "notes": ""}
                        for _, number in flat
                    ],
                )
            ).scalars()
        )
        await session.execute(
            insert(ContactPhone),
            [
                {"contact_id": cid, "e164": number}
                for cid, (_, number) in zip(contact_ids, flat, strict=True)
            ],
        )
        await session.execute(
            insert(CallingListEntry),
            [
                {"campaign_id": campaign.id, "contact_id": cid, "volunteer_id": uid}
                for cid, (uid, _) in zip(contact_ids, flat, strict=True)
            ],
        )
    await engine.dispose()
    return campaign.id, user_ids


# -- the driver -----------------------------------------------------------------


@dataclass
class Options:
    volunteers: int
    minutes: float
    time_scale: float
    wrap_up: float
    phone_answer: float
    click_delay: float
    per_volunteer: int

    def real(self, simulated: float) -> float:
        return simulated * self.time_scale


@dataclass
class Run:
    mode: DialingMode
    window_start: float = 0.0
    window_end: float = 0.0
    elapsed: float = 0.0
    sessions: int = 0
    end_reasons: dict[str, int] = field(default_factory=dict)
    forced_leaves: int = 0
    lists_ran_out: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    answered: int = 0
    outcomes: int = 0
    waits: list[float] = field(default_factory=list)  # free -> next Originate, real s
    waited_seconds: float = 0.0  # the sessions' own count, real s
    session_calls: int = 0
    observer: Observer | None = None
    worker: dict[str, Any] = field(default_factory=dict)
    simulator_cpu: float = 0.0
    driver_cpu: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)


def _runtime(url: str) -> Any:
    from dialer.runtime.bootstrap import build_runtime
    from dialer.runtime.settings import Settings

    settings = Settings(
        _env_file=None,
        database_url=SecretStr(url),  # type: ignore[call-arg]
        allowed_destinations="CA",
    )
    # 15 + 15 overflow: a stand-in for web processes, kept clear of the
    # server's connection limit; 200 volunteers at once queue for them.
    return build_runtime(settings, pool_size=15, pool_timeout=300)


def _submission(call_id: str, contact_id: int) -> Any:
    return parse_submission(
        {
            "submission_id": uuid.uuid4().hex,
            "call_id": call_id,
            "contact_id": contact_id,
            "outcome": "answered",
            "consent": False,
        }
    )


async def drive_power(
    url: str, campaign_id: int, user_ids: list[int], options: Options, run: Run
) -> None:
    from dialer.domain.compliance import CallRefused
    from dialer.domain.vocabulary import CallState
    from dialer.services.common import NotAllowed

    runtime = _runtime(url)
    power = runtime.power
    recorded: set[str] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def wrap_up(volunteer_id: int, call_id: str, contact_id: int) -> None:
        await asyncio.sleep(options.real(options.wrap_up))
        await runtime.outcomes.record_outcome(volunteer_id, _submission(call_id, contact_id))
        run.outcomes += 1

    async def watch() -> None:
        # One query for every outcome owed, as a panel would; each volunteer
        # starts their wrap-up when their call is seen over.
        while True:
            await asyncio.sleep(0.1)
            async with runtime.sessions() as session:
                owed = await session.execute(
                    select(
                        CallAttempt.call_id, CallAttempt.volunteer_id, CallAttempt.contact_id
                    ).where(
                        CallAttempt.campaign_id == campaign_id,
                        CallAttempt.state == CallState.ENDED,
                        CallAttempt.contact_answered_at.is_not(None),
                        CallAttempt.outcome_recorded_at.is_(None),
                        CallAttempt.outcome_skipped_at.is_(None),
                    )
                )
                for call_id, volunteer_id, contact_id in owed:
                    if call_id not in recorded:
                        recorded.add(call_id)
                        task = asyncio.create_task(wrap_up(volunteer_id, call_id, contact_id))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)

    async def start(volunteer_id: int) -> None:
        try:
            await power.start(volunteer_id, campaign_id)
        except CallRefused as refused:
            code = refused.refusal.code.value
            run.refused[code] = run.refused.get(code, 0) + 1

    async def drained(within: float) -> bool:
        """Whether every session ended within ``within`` seconds."""
        deadline = time.time() + within
        while time.time() < deadline:
            async with runtime.sessions() as session:
                live = await session.scalar(
                    select(PowerSession.id).where(PowerSession.ended_at.is_(None)).limit(1)
                )
            if live is None:
                return True
            await asyncio.sleep(0.5)
        return False

    watcher = asyncio.create_task(watch())
    run.window_start = time.time()
    await asyncio.gather(*(start(uid) for uid in user_ids))
    await asyncio.sleep(
        max(0.0, run.window_start + options.real(options.minutes * 60) - time.time())
    )
    run.window_end = time.time()

    async def last_call(volunteer_id: int) -> None:
        # NotAllowed: the session is over already (its list done, or its leg gone).
        with contextlib.suppress(NotAllowed):
            await power.last_call(volunteer_id)

    await asyncio.gather(*(last_call(uid) for uid in user_ids))
    # The calls still up ring out or talk to their end, then their wrap-up.
    if not await drained(options.real(LONGEST_CALL_S + options.wrap_up) + 15.0):
        for uid in user_ids:
            with contextlib.suppress(NotAllowed):
                await power.leave(uid)
                run.forced_leaves += 1
        await drained(30.0)
    run.elapsed = time.time() - run.window_start
    watcher.cancel()
    for task in list(tasks):
        await task
    await runtime.close()


async def drive_click(
    url: str, campaign_id: int, user_ids: list[int], options: Options, run: Run
) -> None:
    from dialer.domain.compliance import CallRefused
    from dialer.domain.vocabulary import CallState

    runtime = _runtime(url)
    waiting: dict[str, asyncio.Future[bool]] = {}

    async def watch() -> None:
        while True:
            await asyncio.sleep(0.1)
            if not waiting:
                continue
            async with runtime.sessions() as session:
                ended = await session.execute(
                    select(CallAttempt.call_id, CallAttempt.contact_answered_at).where(
                        CallAttempt.call_id.in_(list(waiting)),
                        CallAttempt.state == CallState.ENDED,
                    )
                )
                for call_id, answered_at in ended:
                    waiting.pop(call_id).set_result(answered_at is not None)

    async def volunteer(uid: int) -> None:
        while time.time() < run.window_end:
            found = await runtime.lists.next_contact(uid, campaign_id)
            if found.contact is None:
                run.lists_ran_out += 1
                return
            try:
                call = await runtime.service.start_call(
                    volunteer_id=uid, contact_id=found.contact.id, campaign_id=campaign_id
                )
            except CallRefused as refused:
                code = refused.refusal.code.value
                run.refused[code] = run.refused.get(code, 0) + 1
                await asyncio.sleep(options.real(1.0))
                continue
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            waiting[call.call_id] = done
            if await done:
                await asyncio.sleep(options.real(options.wrap_up))
                await runtime.outcomes.record_outcome(
                    uid, _submission(call.call_id, found.contact.id)
                )
                run.outcomes += 1
            await asyncio.sleep(options.real(options.click_delay))

    watcher = asyncio.create_task(watch())
    run.window_start = time.time()
    run.window_end = run.window_start + options.real(options.minutes * 60)
    await asyncio.gather(*(volunteer(uid) for uid in user_ids))
    run.elapsed = time.time() - run.window_start
    watcher.cancel()
    await runtime.close()


async def tally(url: str, campaign_id: int, run: Run) -> None:
    """What the database says of the run: calls in the window, waits, sessions."""
    engine = db.create_engine(url)
    sessions = db.session_factory(engine)
    window_start = datetime.fromtimestamp(run.window_start, UTC)
    window_end = datetime.fromtimestamp(run.window_end, UTC)
    async with sessions() as session:
        rows = (
            await session.execute(
                select(
                    CallAttempt.power_session_id,
                    CallAttempt.requested_at,
                    CallAttempt.originate_sent_at,
                    CallAttempt.contact_answered_at,
                    CallAttempt.ended_at,
                    CallAttempt.outcome_recorded_at,
                )
                .where(CallAttempt.campaign_id == campaign_id)
                .order_by(CallAttempt.power_session_id, CallAttempt.requested_at)
            )
        ).all()
        inside = [row for row in rows if window_start <= row.requested_at < window_end]
        run.calls = len(inside)
        run.answered = sum(1 for row in inside if row.contact_answered_at is not None)
        previous: Any = None
        for row in rows:
            if (
                previous is not None
                and previous.power_session_id == row.power_session_id
                and row.power_session_id is not None
                and row.originate_sent_at is not None
            ):
                free = (
                    previous.outcome_recorded_at
                    if previous.contact_answered_at is not None
                    else previous.ended_at
                )
                if free is not None:
                    run.waits.append((row.originate_sent_at - free).total_seconds())
            previous = row
        for reason, waited, dialed in (
            await session.execute(
                select(PowerSession.end_reason, PowerSession.waited_seconds, PowerSession.calls)
            )
        ).all():
            run.session_calls += dialed
            run.sessions += 1
            key = reason or "(live)"
            run.end_reasons[key] = run.end_reasons.get(key, 0) + 1
            run.waited_seconds += waited
    await engine.dispose()


async def one_run(mode: DialingMode, options: Options, numbers: list[list[str]]) -> Run:
    name = f"dialer_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"postgresql://{PG_SERVER}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://{PG_SERVER}/{name}"
    ami_port = free_port()
    simulator = worker = None
    observer = Observer()
    run = Run(mode, observer=observer)
    try:
        await db.upgrade_async(url)
        campaign_id, user_ids = await seed(url, mode, numbers)
        simulator = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--simulator",
                str(ami_port),
                str(options.time_scale),
                str(options.phone_answer),
            ],
        )
        await wait_for_port(ami_port)
        await observer.start(ami_port)
        worker = subprocess.Popen(
            [sys.executable, __file__, "--worker", url, str(ami_port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        await asyncio.sleep(2.0)
        load_before = os.getloadavg()[0]
        simulator_cpu = process_cpu(simulator.pid)
        driver_cpu = time.process_time()
        drive = drive_power if mode is DialingMode.POWER else drive_click
        await drive(url, campaign_id, user_ids, options, run)
        run.driver_cpu = time.process_time() - driver_cpu
        run.simulator_cpu = process_cpu(simulator.pid) - simulator_cpu
        run.load = (load_before, os.getloadavg()[0])
        # The last events (hang-ups, the last commits) before stopping.
        await asyncio.sleep(1.0)
        worker.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(worker.communicate, timeout=60)
        run.worker = json.loads(out.strip().splitlines()[-1])
        await tally(url, campaign_id, run)
    finally:
        await observer.stop()
        for process in (worker, simulator):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return run


async def wait_for_port(port: int, within: float = 30.0) -> None:
    """Until the simulator listens (its imports take seconds on a busy machine)."""
    deadline = time.time() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.time() > deadline:
                raise
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return


# -- the table ------------------------------------------------------------------


def _ms(values: list[float], share: float) -> str:
    return f"{percentile(values, share) * 1000:.1f} ms" if values else "-"


def report(options: Options, power: Run, click: Run | None) -> dict[str, Any]:
    hours = options.volunteers * options.minutes / 60

    observer = power.observer
    assert observer is not None
    legs = list(observer.legs.values())
    answered = [leg for leg in legs if leg.answered_at is not None]
    to_bridge = [
        leg.bridged_at - leg.answered_at
        for leg in answered
        if leg.bridged_at is not None and leg.answered_at is not None
    ]
    never_bridged = sum(1 for leg in answered if leg.bridged_at is None)
    without_volunteer = sum(1 for leg in legs if leg.bridged_without_volunteer)
    # Put out with the volunteer (ConfBridge's end_marked) is one burst of
    # events; a ;2 half still there a simulated second later sat alone.
    alone_limit = options.real(1.0)
    alone = sum(
        1
        for leg in answered
        if any(span >= alone_limit for span in leg.alone_for) or leg.alone_since is not None
    )
    put_out = sum(
        1 for leg in answered if leg.alone_for and all(span < alone_limit for span in leg.alone_for)
    )

    def dialer_latency(run: Run) -> list[float]:
        assert run.observer is not None
        talking: dict[str, float] = run.worker["talking"]
        return [
            talking[call_id] - at
            for call_id, at in run.observer.answered.items()
            if call_id in talking
        ]

    def passes(run: Run) -> list[float]:
        return [seconds for _, seconds in run.worker["passes"]]

    lines: list[tuple[str, str, str, str]] = []

    def line(what: str, value: str, base: str = "", target: str = "") -> None:
        lines.append((what, value, base, target))

    def both(getter: Callable[[Run], str]) -> tuple[str, str]:
        return getter(power), getter(click) if click is not None else "-"

    line("volunteers", str(options.volunteers), str(options.volunteers) if click else "-")
    line("power sessions", str(power.sessions))
    line("calls requested in the window", *both(lambda r: f"{r.calls:,}"))
    line("  answered", *both(lambda r: f"{r.answered:,}"))
    line("  outcomes recorded (all of the run)", *both(lambda r: f"{r.outcomes:,}"))
    line("calls per volunteer-hour", *both(lambda r: f"{r.calls / hours:.1f}"))
    line("answered calls per volunteer-hour", *both(lambda r: f"{r.answered / hours:.1f}"))
    line(
        "wait between calls (free -> next Originate) mean",
        f"{sum(power.waits) / len(power.waits) * 1000:.0f} ms" if power.waits else "-",
    )
    line("  p50 / p99", f"{_ms(power.waits, 0.5)} / {_ms(power.waits, 0.99)}")
    line(
        "  the sessions' own count (waited_seconds / calls)",
        f"{power.waited_seconds / max(1, power.session_calls) * 1000:.0f} ms",
    )
    line(
        "contact answered -> bridged to the volunteer p50",
        _ms(to_bridge, 0.5),
    )
    line(
        "  p99 (AMI, observer)",
        _ms(to_bridge, 0.99),
        "",
        f"< {TARGET_BRIDGE_P99_MS:.0f} ms  "
        + ("pass" if to_bridge and percentile(to_bridge, 0.99) * 1000 < 300 else "MISS"),
    )
    line("  contacts answered / bridged (observer)", f"{len(answered):,} / {len(to_bridge):,}")
    nobody = without_volunteer + alone
    line(
        "contacts bridged to nobody",
        str(nobody),
        "",
        "0  " + ("pass" if nobody == 0 else "MISS"),
    )
    line("  bridged while the volunteer was not in the room", str(without_volunteer))
    line("  ;2 half alone in the room after the answer (>= 1 sim s)", str(alone))
    line("  answered, never bridged to the volunteer", str(never_bridged))
    line("  put out with the volunteer's leg (cut mid-call)", str(put_out))
    power_lat = dialer_latency(power)
    click_lat = dialer_latency(click) if click is not None else []
    line(
        "contact answered -> 'talking' committed p50",
        _ms(power_lat, 0.5),
        _ms(click_lat, 0.5) if click else "-",
    )
    line("  p99 (dialer: observer -> on_persisted)", _ms(power_lat, 0.99), _ms(click_lat, 0.99))
    line(
        "worker CPU (share of the run)",
        *both(lambda r: f"{r.worker['cpu']:.1f} s ({r.worker['cpu'] / r.elapsed:.0%})"),
    )
    line("worker peak RSS", *both(lambda r: f"{r.worker['rss_mb']:.0f} MB"))
    power_passes = passes(power)
    line(
        "power passes: n, p50 / p99 / max",
        f"{len(power_passes):,}, {_ms(power_passes, 0.5)} / {_ms(power_passes, 0.99)} / "
        f"{max(power_passes, default=0) * 1000:.0f} ms",
    )
    line(
        "  their time, share of the run",
        f"{sum(power_passes):.1f} s ({sum(power_passes) / power.elapsed:.0%})",
    )
    line(
        "worker SQL statements (in power passes)",
        *both(
            lambda r: f"{r.worker['statements']['all']:,} ({r.worker['statements']['in_passes']:,})"
        ),
    )

    for name, values in sorted(power.worker.get("spans", {}).items()):
        line(
            f"  PowerService.{name}: n, p50 / p99 / max",
            f"{len(values):,}, {_ms(values, 0.5)} / {_ms(values, 0.99)} / "
            f"{max(values, default=0) * 1000:.0f} ms",
        )

    scale = options.time_scale
    speed = (
        "real time"
        if scale == 1
        else f"simulated time at {scale:g} real s per simulated s: "
        f"{options.real(options.minutes * 60):.0f} real s per mode, "
        f"{1 / scale:g}x the real load"
    )
    print(
        f"\nbench/power.py: {options.volunteers} volunteers, {options.minutes:g} simulated "
        f"minutes ({speed}); wrap-up {options.wrap_up:g} s, phone answers after "
        f"{options.phone_answer:g} s, click delay {options.click_delay:g} s (simulated); "
        f"{os.cpu_count()} CPUs\n"
    )
    widths = [max(len(row[i]) for row in lines) for i in range(4)]
    widths[0] = max(widths[0], 4)
    header = ("what", "power", "click (baseline)", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    print(
        f"{header[0]:<{widths[0]}}  {header[1]:>{widths[1]}}  {header[2]:>{widths[2]}}  {header[3]}"
    )
    print("-" * (sum(widths) + 6))
    for what, value, base, target in lines:
        print(f"{what:<{widths[0]}}  {value:>{widths[1]}}  {base:>{widths[2]}}  {target}")
    print()
    for run in (power, click):
        if run is None:
            continue
        print(
            f"{run.mode.value}: {run.elapsed:.0f} real s; driver CPU {run.driver_cpu:.1f} s, "
            f"simulator CPU {run.simulator_cpu:.1f} s; load {run.load[0]:.2f} -> "
            f"{run.load[1]:.2f}; observer saw {run.observer.events if run.observer else 0:,} "
            f"events; refused {run.refused or 'none'}; lists ran out {run.lists_ran_out}"
        )
    print(
        f"power sessions ended: {power.end_reasons}; hung up by the driver: {power.forced_leaves}"
    )
    for run in (power, click):
        if run is not None and "loop_lag" in run.worker:
            p50, p99, worst = run.worker["loop_lag"]
            print(
                f"{run.mode.value}: worker event-loop lag (5 ms sleep overshoot) p50 "
                f"{p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {worst * 1000:.0f} ms"
            )
    print("statements the worker sent during power passes (approximate), most frequent:")
    for kind, times in power.worker.get("kinds", [])[:10]:
        print(f"  {times:>7,}  {kind}")
    return {
        "options": options.__dict__,
        "lines": lines,
        "power_passes": power_passes,
        "to_bridge": to_bridge,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--volunteers", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10.0, help="simulated minutes of calling")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=0.25,
        help="real seconds per simulated second (1: real time)",
    )
    parser.add_argument(
        "--wrap-up",
        type=float,
        default=5.0,
        help="simulated s from an answered call's end to its outcome",
    )
    parser.add_argument(
        "--phone-answer",
        type=float,
        default=3.0,
        help="simulated s a desk phone rings before the volunteer answers",
    )
    parser.add_argument(
        "--click-delay",
        type=float,
        default=0.0,
        help="simulated s a click-to-call volunteer takes to click again (calls.py: none)",
    )
    parser.add_argument(
        "--contacts-per-volunteer",
        type=int,
        help="list length (default: enough for the window: 8 per simulated minute + 20)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the click-to-call run")
    parser.add_argument("--json", metavar="FILE", help="append the table's lines to FILE")
    args = parser.parse_args()
    per_volunteer = args.contacts_per_volunteer or int(args.minutes * 8) + 20
    options = Options(
        volunteers=args.volunteers,
        minutes=args.minutes,
        time_scale=args.time_scale,
        wrap_up=args.wrap_up,
        phone_answer=args.phone_answer,
        click_delay=args.click_delay,
        per_volunteer=per_volunteer,
    )
    numbers = contact_numbers(args.volunteers, per_volunteer)
    power = await one_run(DialingMode.POWER, options, numbers)
    click = None if args.no_baseline else await one_run(DialingMode.CLICK, options, numbers)
    result = report(options, power, click)
    if args.json:
        _append_json(args.json, result)


def _append_json(path: str, result: dict[str, Any]) -> None:
    with open(path, "a") as out:
        out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--simulator":
        asyncio.run(simulator_main(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])))
    elif len(sys.argv) > 1 and sys.argv[1] == "--worker":
        asyncio.run(worker_main(sys.argv[2], int(sys.argv[3])))
    else:
        asyncio.run(main())
