"""The production fleet under load: one `dialer worker`, two `dialer web`, 1,000 calls, 200 panels.

Real operating-system processes, as deployed: the AMI simulator (`dialer
simulate-pbx --least-privilege`, its own process so its work does not stall
the measuring clients), one `dialer worker` and two `dialer web`, sharing a
scratch PostgreSQL database and the local Mosquitto under a topic prefix of
their own.  Volunteers sign in (POST /api/session) and request their calls
(POST /api/calls) through the JSON API, split across web A and web B; the
contact numbers' last digits pick what the simulator does (mostly answered
and talking, some busy, congestion, rejected, unreachable).  Organizers'
live panels (GET /api/live/events, Server-Sent Events) are split across the
two web processes too.

Every call state the worker publishes carries ``event_at``: when the worker
read the PBX news behind it.  This bench measures, on the same clock:

* AMI event -> MQTT: an aiomqtt subscriber here, in the driver process;
* AMI event -> SSE line: raw-socket SSE readers in a child process, which
  scan the stream for ``event_at`` and parse only those (each state counted
  once per panel; a resync snapshot counts the states it brought);
* the worker's CPU (utime + stime from /proc/<pid>/stat, % of one core) over
  the measured window (first call requested -> last call ended), its RSS,
  MQTT messages/second seen by the subscriber, calls/second and how many
  calls ended.

The baseline, in the same run against the same fleet, is a small load (50
calls, 20 panels).  Everything shares this machine's cores: PostgreSQL,
Mosquitto, the simulator, the worker, both web processes, the driver (the
volunteers' HTTP calls through a small pool, --pool connections per web
process, and the MQTT subscriber) and the SSE reader process; the CPU table
shows each one's share and the host's total, other tenants included.

Sign-in cost: argon2id with the product's default parameters costs about
0.5 s of CPU per sign-in here, so 1,200 sign-ins would take minutes of both
cores before anything is measured.  By default the users' hashes are made
with cheap argon2id parameters and the web processes are started as
`dialer web` with the same cheap hasher installed (`dialer.domain.passwords._hasher`,
so the sign-in does not re-hash); nothing else differs.  --full-argon2
keeps the product's parameters (slow).

Run: .venv/bin/python bench/fleet.py [--calls 1300] [--volunteers 1300] [--sse-clients 200]
     [--click-rate 20] [--time-scale 20] [--baseline-calls 50] [--baseline-sse-clients 20]
     [--pool 32] [--timeout 300] [--timeline] [--full-argon2]

1,000 calls up at once: volunteers make their first click 20 a second (a
busy phone bank: 1,000 calls of a minute or so need about 17 a second), and
the simulator runs at 1/20 speed, so an answered call lasts about 80 s and
is still up when the last request arrives; about 1,030 of the 1,300 calls
answer (the rest are busy, congested, rejected or unreachable and end
within seconds).  The target line checks the peak too.

The burst profile, --click-rate 0 --time-scale 12 --timeout 200, has every
volunteer click at once: the two web processes take the 1,300 requests as
fast as they can (about 24 s here), which saturates a small host.

With fewer volunteers than calls, each volunteer places the next call once
the last one ended (one live call per volunteer is the product's rule).  A
phase that runs out of time (--timeout) stops placing calls and reports what
ended within it.

Needs PostgreSQL (DIALER_TEST_PG, default postgres@127.0.0.1:5432; a scratch
database is created and dropped) and Mosquitto (BENCH_MQTT, default
127.0.0.1:1883).  Target: p99 AMI event -> live panel < 250 ms with the
worker below 50% of one core, at 1,000 concurrent calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import IO, Any

from common import (
    PG_SERVER,
    SECRET,
    SseBody,
    desk_extensions,
    free_port,
    percentile,
    simulator_command,
)

MQTT_SERVER = os.environ.get("BENCH_MQTT", "127.0.0.1:1883")
PASSWORD = "bench-password-1"
CALLER_ID = "+15145550000"
SESSION_COOKIE = "pb_session"
# Cheap argon2id for the bench's users (see the docstring): 1 pass, 1 MiB, 1 lane.
CHEAP_ARGON2 = "time_cost=1, memory_cost=1024, parallelism=1"
HERE = str(Path(__file__).resolve())
# What each contact does, by the number's last digit (ami_bridge/simulator/behaviour.py):
# 7/8/9 ring 1 s, answer, talk 3 s; 0 talks 4 s; 1 busy; 3 congestion;
# 5 rejected; 6 unreachable.  2 (ring until the Dial timeout) and 4 (stay on
# the line until hung up) are left out: they would only stretch the run.
DIGITS = "7890789078907891356"

_WEB_LAUNCHER = """
from argon2 import PasswordHasher
import dialer.domain.passwords
dialer.domain.passwords._hasher = PasswordHasher({params})
from dialer.runtime.cli import main
main(["web"], prog_name="dialer")
"""


# -- the SSE readers (a child process) ---------------------------------------------

_EVENT_AT = b'"event_at":"'
_SEQ = b'"seq":'
_SNAPSHOT = b"event: snapshot\n"


class Latencies:
    """Every (arrival - event_at), in seconds; each event_at parsed once per process."""

    def __init__(self) -> None:
        self.values = array("d")
        self._epochs: dict[bytes, float] = {}

    def add(self, stamp: bytes, now: float) -> None:
        at = self._epochs.get(stamp)
        if at is None:
            at = datetime.fromisoformat(stamp.decode()).timestamp()
            self._epochs[stamp] = at
        self.values.append(now - at)


class SseReader(asyncio.Protocol):
    """One organizer's live panel on a raw socket: HTTP/1.1, chunked, SSE.

    Does the least work that still reads every byte: de-chunks, cuts the
    text at event boundaries, finds ``"event_at":"`` and takes the string
    after it (with the event's ``seq``, to count a state once).  Only a
    snapshot (first one, or a resync after falling behind) is JSON-parsed.
    Arrival time is when the bytes reached this process.
    """

    def __init__(self, request: bytes, sink: Latencies) -> None:
        self.request = request
        self.sink = sink
        self.head = b""
        self.body: SseBody | None = None  # once the head has been read
        self.max_seq = 0
        self.seen: set[int] = set()  # sequence numbers of the call states counted
        self.snapshots = 0
        self.lines = 0  # call states counted by this panel
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"stream closed before its snapshot: {exc}"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.body is None:
            if self.ready.done():
                return  # refused (not 200): the rest of the answer does not matter
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4 :]
            status = head.split(b" ", 2)[1]
            if status != b"200":
                self.ready.set_exception(ConnectionError(head.decode(errors="replace")))
                return
            self.body = SseBody(chunked=b"transfer-encoding: chunked" in head.lower())
        events = self.body.feed(data)
        if not events:
            return
        if _SNAPSHOT in events:
            self._slow(events, now)
        else:
            self._fast(events, now)

    def _fast(self, events: bytes, now: float) -> None:
        position = 0
        while True:
            found = events.find(_EVENT_AT, position)
            if found < 0:
                return
            start = found + len(_EVENT_AT)
            end = events.find(b'"', start)
            seq_at = events.rfind(_SEQ, 0, found)
            if seq_at < 0:  # no sequence number: count it
                seq = self.max_seq + 1
            else:
                seq_at += len(_SEQ)
                seq = int(events[seq_at : events.find(b",", seq_at)])
            position = end
            self.max_seq = max(self.max_seq, seq)
            # Counted once: a change re-sent after a snapshot is not new.  By
            # sequence number, not "above the highest so far": a call's first
            # states can go out after later events of other calls, when they
            # waited for a name look-up.
            if seq not in self.seen:
                self.seen.add(seq)
                self.lines += 1
                self.sink.add(events[start:end], now)

    def _slow(self, events: bytes, now: float) -> None:
        name = b""
        for line in events.split(b"\n"):
            if line.startswith(b"event: "):
                name = line[7:]
            elif line.startswith(b"data: ") and name == b"snapshot":
                self._snapshot(json.loads(line[6:]), now)
            elif line.startswith(b"data: ") and _EVENT_AT in line:
                self._fast(line, now)

    def _snapshot(self, snapshot: dict[str, Any], now: float) -> None:
        first = self.snapshots == 0
        self.snapshots += 1
        for item in snapshot["items"]:
            seq = int(item["seq"])
            self.max_seq = max(self.max_seq, seq)
            stamp = item["payload"].get("event_at") if item["kind"] == "call" else None
            if stamp and seq not in self.seen:
                self.seen.add(seq)
                if not first:
                    self.lines += 1
                    self.sink.add(stamp.encode(), now)
        if first and not self.ready.done():
            self.ready.set_result(None)


async def sse_child() -> None:
    """Read targets from stdin, open the panels, say ready, report on 'stop'."""
    loop = asyncio.get_running_loop()
    targets: list[list[Any]] = json.loads(await asyncio.to_thread(sys.stdin.readline))
    sink = Latencies()
    readers: list[SseReader] = []
    transports: list[asyncio.BaseTransport] = []

    failed = 0

    async def attempt(request: bytes, host: str, port: int) -> bool:
        reader = SseReader(request, sink)
        try:
            transport, _ = await loop.create_connection(lambda: reader, host, port)
        except OSError:
            return False
        try:
            await reader.ready
        except ConnectionError:
            transport.close()
            return False
        readers.append(reader)
        transports.append(transport)
        return True

    async def one(host: str, port: int, cookie: str) -> None:
        nonlocal failed
        request = (
            f"GET /api/live/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Accept: text/event-stream\r\nCookie: {SESSION_COOKIE}={cookie}\r\n\r\n"
        ).encode()
        for _ in range(3):
            if await attempt(request, host, port):
                return
            await asyncio.sleep(0.5)
        failed += 1  # counted and reported, not fatal: the others still measure

    async with asyncio.timeout(90):
        # In waves: the listen backlog is finite, as with real browsers.
        for first in range(0, len(targets), 50):
            await asyncio.gather(*(one(*target) for target in targets[first : first + 50]))
    cpu_start = time.process_time()
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    dropped = sum(1 for reader in readers if reader.lost.done())
    for transport in transports:
        transport.close()
    values = sorted(sink.values)
    print(
        json.dumps(
            {
                "count": len(values),
                "p50": percentile(values, 0.50) * 1000,
                "p90": percentile(values, 0.90) * 1000,
                "p99": percentile(values, 0.99) * 1000,
                "max": (values[-1] * 1000) if values else float("nan"),
                "resyncs": sum(reader.snapshots - 1 for reader in readers),
                "dropped": dropped,
                "panels": len(readers),
                "failed": failed,
                "cpu_s": time.process_time() - cpu_start,
            }
        ),
        flush=True,
    )


# -- processes -----------------------------------------------------------------------


def _clock_ticks() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _clock_ticks()


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(rest.split()[0]) / 1024
    return found.get("VmRSS", float("nan")), found.get("VmHWM", float("nan"))


def host_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as handle:
        values = [int(value) for value in handle.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Proc:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid


async def spawn(name: str, args: list[str], env: dict[str, str], logs: Path) -> Proc:
    # Logs go to files: a pipe nobody reads would stall a chatty process.
    log_path = logs / f"{name}.log"
    log = log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env=env,
        cwd=logs,  # no stray .env file
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    return Proc(name, process, log_path, log)


async def wait_healthy(http: Any, url: str, proc: Proc) -> None:
    import aiohttp

    async with asyncio.timeout(60):
        while True:
            if proc.process.returncode is not None:
                raise RuntimeError(
                    f"{proc.name} exited early:\n" + proc.log_path.read_text(errors="replace")
                )
            try:
                async with http.get(url + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)


async def wait_port(port: int, proc: Proc) -> None:
    async with asyncio.timeout(30):
        while True:
            if proc.process.returncode is not None:
                raise RuntimeError(f"{proc.name} exited early: {proc.log_path.read_text()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


async def stop(procs: list[Proc]) -> dict[str, int | None]:
    """SIGTERM to the dialer processes, then SIGINT to the simulator (its Ctrl-C)."""
    codes: dict[str, int | None] = {}
    dialer = [proc for proc in procs if proc.name != "simulator"]
    simulator = [proc for proc in procs if proc.name == "simulator"]
    for group, signum in ((dialer, signal.SIGTERM), (simulator, signal.SIGINT)):
        for proc in group:
            if proc.process.returncode is None:
                proc.process.send_signal(signum)
        for proc in group:
            try:
                codes[proc.name] = await asyncio.wait_for(proc.process.wait(), 20)
            except TimeoutError:
                proc.process.kill()
                codes[proc.name] = await proc.process.wait()
            proc.log.close()
    return codes


# -- the scratch database ------------------------------------------------------------


@dataclass
class Seeded:
    campaign_id: int
    volunteers: list[int]
    organizers: list[str]
    volunteer_names: list[str]
    contacts: list[int]


async def seed(url: str, volunteers: int, organizers: int, contacts: int, digest: str) -> Seeded:
    from sqlalchemy import insert

    from dialer.domain.survey import CallingHours, TimeWindow
    from dialer.domain.vocabulary import CampaignStatus, Role
    from dialer.store import engine as db
    from dialer.store.models import (
        CallingListEntry,
        Campaign,
        Contact,
        ContactPhone,
        Team,
        TeamMember,
        User,
    )

    always = TimeWindow(start=clock_time(0), end=clock_time(23, 59, 59))
    engine = db.create_engine(url)
    sessions = db.session_factory(engine)
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        team = Team(name="bench")
        session.add(team)
        await session.flush()
        campaign = Campaign(
            title="bench",
            status=CampaignStatus.ACTIVE,
            team_id=team.id,
            calling_hours=CallingHours(weekday=always, weekend=always),
            max_attempts=5,
            retry_delay_minutes=0,
        )
        session.add(campaign)
        await session.flush()
        volunteer_names = [f"v{index}" for index in range(volunteers)]
        organizer_names = [f"o{index}" for index in range(organizers)]
        rows = [
            {
                "username": name,
                "display_name": name.upper(),
                "role": Role.VOLUNTEER,
                "password_hash": digest,
                "sip_extension": extension,
                "is_active": True,
                "created_at": now,
            }
            for name, extension in zip(volunteer_names, desk_extensions(volunteers), strict=True)
        ] + [
            {
                "username": name,
                "display_name": name.upper(),
                "role": Role.ORGANIZER,
                "password_hash": digest,
                "sip_extension": None,
                "is_active": True,
                "created_at": now,
            }
            for name in organizer_names
        ]
        user_ids = list(
            (
                await session.execute(
                    insert(User).returning(User.id, sort_by_parameter_order=True), rows
                )
            ).scalars()
        )
        await session.execute(
            insert(TeamMember),
            [{"team_id": team.id, "user_id": uid, "joined_at": now} for uid in user_ids],
        )
        contact_ids = list(
            (
                await session.execute(
                    insert(Contact).returning(Contact.id, sort_by_parameter_order=True),
                    [
                        {
                            "first_name": "C",
                            "last_name": str(index),
                            "tags": [],
                            "notes": "",
                            "created_at": now,
                            "updated_at": now,
                        }
                        for index in range(contacts)
                    ],
                )
            ).scalars()
        )
        await session.execute(
            insert(ContactPhone),
            [
                {
                    "contact_id": contact_id,
                    "e164": f"+1514{300_000 + index:06d}{DIGITS[index % len(DIGITS)]}",
                    "created_at": now,
                }
                for index, contact_id in enumerate(contact_ids)
            ],
        )
        await session.execute(
            insert(CallingListEntry),
            [
                {"campaign_id": campaign.id, "contact_id": contact_id, "assigned_at": now}
                for contact_id in contact_ids
            ],
        )
        campaign_id = campaign.id
    await engine.dispose()
    return Seeded(campaign_id, user_ids[:volunteers], organizer_names, volunteer_names, contact_ids)


# -- the driver: volunteers over HTTP, the MQTT subscriber --------------------------------


@dataclass
class Account:
    base: str  # the web process this user talks to
    cookie: str
    csrf: str


async def sign_in(http: Any, base: str, username: str) -> Account:
    for attempt in range(5):
        async with http.post(
            base + "/api/session",
            json={"username": username, "password": PASSWORD},
            headers={"Origin": base},
        ) as response:
            if response.status >= 500 and attempt < 4:
                await asyncio.sleep(0.2)
                continue
            if response.status != 200:
                raise RuntimeError(f"sign-in of {username}: {await response.text()}")
            body = await response.json()
            return Account(base, response.cookies[SESSION_COOKIE].value, body["csrf_token"])
    raise AssertionError("unreachable")


@dataclass
class Phase:
    started: float = 0.0
    requested: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    live: set[str] = field(default_factory=set)
    peak_live: int = 0
    ended: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    waiters: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    messages: list[float] = field(default_factory=list)  # arrival of every MQTT message
    latencies: list[float] = field(default_factory=list)  # event_at -> MQTT, ms
    keep_timeline: bool = False
    timeline: list[tuple[float, float, str]] = field(default_factory=list)
    last_request: float = 0.0
    closing: bool = False  # the phase ran out of time: no new calls

    def on_call(self, call_id: str, payload: dict[str, Any], now: float) -> None:
        stamp = payload.get("event_at")
        if stamp:
            self.latencies.append((now - datetime.fromisoformat(stamp).timestamp()) * 1000)
            if self.keep_timeline:
                self.timeline.append((now, self.latencies[-1], str(payload.get("state"))))
        if payload.get("state") == "ended" and call_id not in self.ended:
            self.ended[call_id] = now
            self.outcomes[call_id] = str(payload.get("outcome"))
            self.live.discard(call_id)
            waiter = self.waiters.pop(call_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def on_requested(self, call_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.requested += 1
        self.last_request = time.time()
        if call_id in self.ended or self.closing:
            future.set_result(None)
        else:
            self.waiters[call_id] = future
            self.live.add(call_id)
            self.peak_live = max(self.peak_live, len(self.live))
        return future


class MqttProbe:
    """Subscribes to the run's whole prefix; times call states, counts everything."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.phase: Phase | None = None
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        import aiomqtt

        host, port = MQTT_SERVER.rsplit(":", 1)
        calls = f"{self.prefix}/calls/"
        from dialer.live.mqtt import applying_queue, read_every_waiting_packet

        def take(message: Any) -> None:
            now = time.time()
            phase = self.phase
            if phase is None:
                return
            phase.messages.append(now)
            topic = message.topic.value
            raw = message.payload
            if not topic.startswith(calls) or not isinstance(raw, bytes | bytearray) or not raw:
                return
            payload = json.loads(raw)
            if isinstance(payload, dict):
                phase.on_call(topic[len(calls) :], payload, now)

        # Read as the web processes read (dialer.live.mqtt): every waiting message
        # per wake-up, each handled in the read callback, so arrival is timed
        # when the bytes come in, not when a busy loop gets round to it.
        client = aiomqtt.Client(
            host,
            int(port),
            identifier=f"bench-{uuid.uuid4().hex[:8]}",
            queue_type=applying_queue(take),
        )
        read_every_waiting_packet(client)
        async with client:
            # QoS 0: no acknowledgements from this busy process for the broker
            # to wait on, so arrival is as close to the publish as it gets.
            await client.subscribe(f"{self.prefix}/#", qos=0)
            self.subscribed.set()
            async for _ in client.messages:  # handled in take(); waits for a disconnection
                pass


@dataclass
class Row:
    label: str
    calls: int
    sse_clients: int
    completed: int = 0
    seconds: float = 0.0
    ramp: float = 0.0
    peak_live: int = 0
    mqtt_rate: float = 0.0
    mqtt_states: int = 0
    mqtt_p50: float = float("nan")
    mqtt_p99: float = float("nan")
    sse: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    worker_rss: float = 0.0
    worker_hwm: float = 0.0
    refused: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    # Per second of the phase: (second, states, p50 ms, max ms) of event -> MQTT.
    timeline: list[tuple[int, int, float, float]] = field(default_factory=list)


@dataclass
class Fleet:
    procs: dict[str, Proc]
    web: list[str]
    campaign_id: int
    volunteers: list[Account]
    organizers: list[Account]
    contacts: list[int]
    http: list[Any]  # one aiohttp session (connection pool) per web process
    probe: MqttProbe
    # Requests in flight per web process: the driver's pool, checked out
    # before a request is sent so a phase out of time sends nothing more.
    gates: list[asyncio.Semaphore] = field(default_factory=list)


async def request_call(
    fleet: Fleet, account: Account, contact_id: int, phase: Phase
) -> asyncio.Future[None] | None:
    web = fleet.web.index(account.base)
    async with fleet.gates[web]:
        if phase.closing:
            return None
        return await _post_call(fleet.http[web], fleet.campaign_id, account, contact_id, phase)


async def _post_call(
    http: Any, campaign_id: int, account: Account, contact_id: int, phase: Phase
) -> asyncio.Future[None] | None:
    headers = {
        "Cookie": f"{SESSION_COOKIE}={account.cookie}",
        "X-CSRF-Token": account.csrf,
        "Origin": account.base,
    }
    body = {"contact_id": contact_id, "campaign_id": campaign_id}
    for attempt in range(5):
        async with http.post(account.base + "/api/calls", json=body, headers=headers) as response:
            answer = await response.json()
            if response.status == 201:
                return phase.on_requested(answer["call_id"])
            code = str(answer.get("error", {}).get("code", response.status))
            if code == "retry" and attempt < 4:
                await asyncio.sleep(0.2)
                continue
            phase.refused[code] += 1
            return None
    return None


async def run_phase(
    fleet: Fleet,
    label: str,
    calls: int,
    volunteers: int,
    sse_clients: int,
    contacts: list[int],
    limit: float,
    timeline: bool = False,
    click_rate: float = 0.0,
) -> Row:
    row = Row(label, calls, sse_clients)
    panels = fleet.organizers[:sse_clients]
    targets = [
        [
            account.base.removeprefix("http://").split(":")[0],
            int(account.base.rsplit(":", 1)[1]),
            account.cookie,
        ]
        for account in panels
    ]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        HERE,
        "--sse-child",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(targets).encode() + b"\n")
    await child.stdin.drain()
    ready = await child.stdout.readline()
    if not ready or not json.loads(ready).get("ready"):
        raise RuntimeError("the SSE readers could not connect")

    phase = Phase(keep_timeline=timeline)
    fleet.probe.phase = phase
    pids = {name: proc.pid for name, proc in fleet.procs.items()}
    pids["SSE readers"] = child.pid
    pids["driver"] = os.getpid()
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    host_before = host_busy()
    mine = [contacts[index::volunteers] for index in range(volunteers)]

    async def volunteer(index: int, account: Account, todo: list[int]) -> None:
        if click_rate:
            # Volunteers start one after the other rather than all at once.
            await asyncio.sleep(index / click_rate)
        for contact_id in todo:
            if phase.closing:
                return
            ended = await request_call(fleet, account, contact_id, phase)
            if ended is not None:
                await ended

    phase.started = time.time()
    tasks = [
        asyncio.create_task(volunteer(index, account, todo))
        for index, (account, todo) in enumerate(
            zip(fleet.volunteers[:volunteers], mine, strict=True)
        )
    ]
    _, pending = await asyncio.wait(tasks, timeout=limit)
    finished = time.time()
    # The window: from the first request to the last call's end (or the
    # time limit); CPU is read right at its end.
    cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    host_after = host_busy()
    row.worker_rss, row.worker_hwm = memory_mb(fleet.procs["worker"].pid)
    seconds = max(finished - phase.started, 1e-9)
    row.cpu = {name: (cpu_after[name] - cpu_before[name]) / seconds for name in pids}
    row.cpu["host (all)"] = (
        (host_after[0] - host_before[0])
        / max(host_after[1] - host_before[1], 1)
        * (os.cpu_count() or 1)
    )
    window_end = max(phase.ended.values(), default=finished) if not pending else finished
    if pending:
        # Out of time: stop waiting for calls to end, but let requests in
        # flight get their answer (a cut connection is not what we measure).
        phase.closing = True
        for waiter in phase.waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        await asyncio.wait(pending, timeout=30)
        for task in pending:
            task.cancel()
    for task in tasks:
        error = task.exception() if task.done() and not task.cancelled() else None
        if error is not None:
            raise error
    # Stragglers: let the panels read what is still on its way, then stop them.
    await asyncio.sleep(1.0)
    fleet.probe.phase = None
    child.stdin.write(b"stop\n")
    await child.stdin.drain()
    report = await child.stdout.readline()
    await child.wait()
    row.sse = json.loads(report)

    row.seconds = window_end - phase.started
    row.completed = sum(1 for at in phase.ended.values() if at <= window_end)
    row.ramp = phase.last_request - phase.started
    row.peak_live = phase.peak_live
    in_window = [at for at in phase.messages if phase.started <= at <= window_end]
    row.mqtt_rate = len(in_window) / max(row.seconds, 1e-9)
    row.mqtt_states = len(phase.latencies)
    row.mqtt_p50 = percentile(phase.latencies, 0.50)
    row.mqtt_p99 = percentile(phase.latencies, 0.99)
    row.refused = phase.refused
    seconds_lags: dict[int, list[float]] = {}
    for at, lag, _state in phase.timeline:
        seconds_lags.setdefault(int(at - phase.started), []).append(lag)
    row.timeline = [
        (second, len(lags), percentile(lags, 0.5), max(lags))
        for second, lags in sorted(seconds_lags.items())
    ]
    row.outcomes = Counter(
        phase.outcomes[call_id] for call_id, at in phase.ended.items() if at <= window_end
    )
    return row


# -- the run --------------------------------------------------------------------------


def base_env(url: str, ami_port: int, prefix: str, pbx_name: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIALER_")}
    env.update(
        DIALER_DATABASE_URL=url,
        DIALER_AMI_HOST="127.0.0.1",
        DIALER_AMI_PORT=str(ami_port),
        DIALER_AMI_USERNAME="dialer",
        DIALER_AMI_SECRET=SECRET,
        DIALER_MQTT_URL=f"mqtt://{MQTT_SERVER}",
        DIALER_MQTT_TOPIC_PREFIX=prefix,
        # The worker's MQTT client id is "dialer-<PBX name>": a name of our own
        # keeps other runs on this broker from kicking ours off.
        DIALER_PBX_NAME=pbx_name,
        DIALER_ALLOWED_DESTINATIONS="CA",
        DIALER_DEFAULT_CALLER_ID=CALLER_ID,
        DIALER_WEB_HOST="127.0.0.1",
    )
    return env


def log_problems(procs: Sequence[Proc]) -> list[str]:
    found = []
    for proc in procs:
        text = proc.log_path.read_text(errors="replace").splitlines()
        for number, line in enumerate(text):
            if any(word in line for word in ("ERROR", "CRITICAL", "Traceback", "WARNING")):
                found.append(f"{proc.name}:{number + 1}: {line[:300]}")
    return found


async def main(args: argparse.Namespace) -> None:
    import aiohttp
    import asyncpg

    from dialer.store import engine as db

    load_before = os.getloadavg()
    volunteers = args.volunteers or args.calls
    base_volunteers = min(volunteers, args.baseline_calls)
    organizers = max(args.sse_clients, args.baseline_sse_clients)
    run = uuid.uuid4().hex[:8]
    name = f"dialer_bench_{run}"
    admin = await asyncpg.connect(f"postgresql://{PG_SERVER}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    limit = int(await admin.fetchval("SHOW max_connections"))
    used = int(await admin.fetchval("SELECT count(*) FROM pg_stat_activity"))
    await admin.close()
    if limit - used < 70:
        # Three processes with pools of DIALER_DATABASE_POOL_SIZE (10) + as many
        # in overflow, plus LISTEN connections: up to about 64.
        print(
            f"warning: PostgreSQL has {limit - used} of {limit} connections free; "
            "the fleet may need about 64",
            file=sys.stderr,
        )
    url = f"postgresql+asyncpg://{PG_SERVER}/{name}"
    logs = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    procs: list[Proc] = []
    probe_task: asyncio.Task[None] | None = None
    sessions: list[aiohttp.ClientSession] = []
    rows: list[Row] = []
    codes: dict[str, int | None] = {}
    problems: list[str] = []
    try:
        await db.upgrade_async(url)
        if args.full_argon2:
            from dialer.domain.passwords import hash_password

            digest = hash_password(PASSWORD)
        else:
            from argon2 import PasswordHasher

            digest = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
        seeded = await seed(url, volunteers, organizers, args.baseline_calls + args.calls, digest)

        ami_port, worker_port, port_a, port_b = (free_port() for _ in range(4))
        prefix = f"bench-fleet-{run}"
        env = base_env(url, ami_port, prefix, f"bench-{run}")
        simulator = await spawn(
            "simulator",
            simulator_command(ami_port, SECRET, args.time_scale),
            env | {"DIALER_LOG_LEVEL": "WARNING"},
            logs,
        )
        procs.append(simulator)
        await wait_port(ami_port, simulator)
        procs.append(
            await spawn(
                "worker",
                ["-m", "dialer", "worker"],
                env | {"DIALER_WORKER_HTTP_PORT": str(worker_port)},
                logs,
            )
        )
        web_urls = [f"http://127.0.0.1:{port}" for port in (port_a, port_b)]
        launcher = (
            ["-m", "dialer", "web"]
            if args.full_argon2
            else ["-c", _WEB_LAUNCHER.format(params=CHEAP_ARGON2)]
        )
        for label, port, web_url in zip(
            ("web A", "web B"), (port_a, port_b), web_urls, strict=True
        ):
            procs.append(
                await spawn(
                    label,
                    launcher,
                    env | {"DIALER_WEB_PORT": str(port), "DIALER_WEB_PUBLIC_URL": web_url},
                    logs,
                )
            )
        by_name = {proc.name: proc for proc in procs}
        async with aiohttp.ClientSession() as http:
            for health_url, proc_name in zip(
                [f"http://127.0.0.1:{worker_port}", *web_urls],
                ["worker", "web A", "web B"],
                strict=True,
            ):
                await wait_healthy(http, health_url, by_name[proc_name])

        probe = MqttProbe(prefix)
        probe_task = asyncio.create_task(probe.run())
        async with asyncio.timeout(10):
            await probe.subscribed.wait()
        # A modest pool per web process: the volunteers' browsers are many,
        # the driver's sockets few.  No cookie jar: each request names its user.
        sessions = [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=args.pool),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            for _ in web_urls
        ]
        signing = time.perf_counter()

        async def account(index: int, username: str) -> Account:
            web = index % 2
            return await sign_in(sessions[web], web_urls[web], username)

        volunteer_accounts = await asyncio.gather(
            *(account(i, username) for i, username in enumerate(seeded.volunteer_names))
        )
        organizer_accounts = await asyncio.gather(
            *(account(i, username) for i, username in enumerate(seeded.organizers))
        )
        signed_in = time.perf_counter() - signing
        fleet = Fleet(
            by_name,
            web_urls,
            seeded.campaign_id,
            list(volunteer_accounts),
            list(organizer_accounts),
            seeded.contacts,
            list(sessions),
            probe,
            [asyncio.Semaphore(args.pool) for _ in web_urls],
        )
        print(
            f"fleet up: {volunteers + organizers} sign-ins in {signed_in:.1f}s; "
            f"simulator time scale {args.time_scale}",
            file=sys.stderr,
        )
        rows.append(
            await run_phase(
                fleet,
                "baseline",
                args.baseline_calls,
                base_volunteers,
                args.baseline_sse_clients,
                seeded.contacts[: args.baseline_calls],
                args.timeout,
            )
        )
        await asyncio.sleep(2.0)  # campaign counters and stragglers settle
        rows.append(
            await run_phase(
                fleet,
                "fleet",
                args.calls,
                volunteers,
                args.sse_clients,
                seeded.contacts[args.baseline_calls :],
                args.timeout,
                args.timeline,
                args.click_rate,
            )
        )
    finally:
        for session in sessions:
            await session.close()
        if probe_task is not None:
            probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await probe_task
        codes = await stop(list(reversed(procs)))
        problems = log_problems(procs)
        admin = await asyncpg.connect(f"postgresql://{PG_SERVER}/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    report(rows, args, load_before, codes, problems, logs)
    if not problems and all(code == 0 for code in codes.values()):
        shutil.rmtree(logs, ignore_errors=True)


def report(
    rows: list[Row],
    args: argparse.Namespace,
    load_before: tuple[float, float, float],
    codes: dict[str, int | None],
    problems: list[str],
    logs: Path,
) -> None:
    print()
    print(
        f"{'run':>8} {'calls':>5} {'ended':>5} {'peak':>5} {'secs':>5} {'calls/s':>7} "
        f"{'MQTT/s':>6} {'ev->MQTT p50':>12} {'p99':>7} {'ev->SSE p50':>11} {'p99':>7} "
        f"{'max':>7} {'panels':>6} {'worker CPU':>10} {'RSS MB':>6} {'peak':>5}"
    )
    for row in rows:
        sse = row.sse
        print(
            f"{row.label:>8} {row.calls:>5} {row.completed:>5} {row.peak_live:>5} "
            f"{row.seconds:>5.1f} {row.completed / max(row.seconds, 1e-9):>7.1f} "
            f"{row.mqtt_rate:>6.0f} {row.mqtt_p50:>10.1f}ms {row.mqtt_p99:>5.1f}ms "
            f"{sse['p50']:>9.1f}ms {sse['p99']:>5.1f}ms {sse['max']:>5.0f}ms "
            f"{sse['panels']:>6} {row.cpu['worker']:>10.0%} {row.worker_rss:>6.0f} "
            f"{row.worker_hwm:>5.0f}"
        )
    print()
    names = ["worker", "web A", "web B", "simulator", "driver", "SSE readers", "host (all)"]
    print(
        f"{'run':>8} "
        + " ".join(f"{name:>11}" for name in names)
        + "   (CPU over the window, % of one core)"
    )
    for row in rows:
        print(f"{row.label:>8} " + " ".join(f"{row.cpu[name]:>11.0%}" for name in names))
    print()
    print(
        f"{'run':>8} {'ramp s':>6} {'states on MQTT':>14} {'SSE states read':>15} "
        f"{'due':>8} {'resyncs':>7} {'dropped':>7} {'refused':>7}  outcomes"
    )
    for row in rows:
        sse = row.sse
        outcomes = ", ".join(f"{key} {count}" for key, count in row.outcomes.most_common())
        refused = sum(row.refused.values())
        print(
            f"{row.label:>8} {row.ramp:>6.1f} {row.mqtt_states:>14} {sse['count']:>15} "
            f"{row.mqtt_states * sse['panels']:>8} {sse['resyncs']:>7} {sse['dropped']:>7} "
            f"{refused:>7}  {outcomes}"
        )
        if row.refused:
            print(f"{'':>8} refused: {dict(row.refused)}")
    fleet = rows[-1] if rows else None
    if args.timeline and fleet is not None:
        print()
        print(f"{fleet.label}: event -> MQTT by second of the phase (queueing shows as growth)")
        for second, count, p50, worst in fleet.timeline:
            print(f"  t={second:>3}s states={count:>5} p50={p50:>8.1f}ms max={worst:>8.1f}ms")
    print()
    print(
        "load average before: {:.2f} {:.2f} {:.2f}; after: {:.2f} {:.2f} {:.2f} ({} cores)".format(
            *load_before, *os.getloadavg(), os.cpu_count() or 1
        )
    )
    print(
        "latency: event_at (the worker read the PBX news) -> the MQTT message at this "
        "process's subscriber / the SSE line at a panel; peak: calls live at once; "
        "ramp: first to last call request"
    )
    print(
        f"baseline: {args.baseline_calls} calls, {args.baseline_sse_clients} panels, "
        "same fleet, same run; due = states on MQTT x panels, read = what the panels "
        "had read 1 s after the window"
    )
    if fleet is not None and fleet.sse:
        met = fleet.sse["p99"] < 250 and fleet.cpu["worker"] < 0.5 and fleet.peak_live >= 1000
        print(
            f"target: p99 event -> panel < 250 ms with the worker < 50% of one core, at 1,000 "
            f"calls up at once: {'met' if met else 'NOT met'} (p99 {fleet.sse['p99']:.0f} ms, "
            f"worker {fleet.cpu['worker']:.0%}, peak {fleet.peak_live} calls)"
        )
    for row in rows:
        if row.sse["failed"]:
            print(f"{row.label}: {row.sse['failed']} of {row.sse_clients} panels could not connect")
        if row.mqtt_states and not row.sse.get("count"):
            print(f"{row.label}: no event_at read on the panels: has the SSE format changed?")
    bad = {name: code for name, code in codes.items() if code != 0}
    if bad:
        print(f"processes that did not stop cleanly: {bad}")
    if problems:
        print(f"{len(problems)} warning/error log lines (logs kept in {logs}); first ones:")
        for line in problems[:10]:
            print("  " + line)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--calls",
        type=int,
        default=1300,
        help="calls in the measured phase (1,300: about 1,000 of them answer and are up at once)",
    )
    parser.add_argument(
        "--volunteers",
        type=int,
        default=0,
        help="volunteers sharing the calls, one live call each (default: as many as calls)",
    )
    parser.add_argument("--sse-clients", type=int, default=200)
    parser.add_argument("--baseline-calls", type=int, default=50)
    parser.add_argument("--baseline-sse-clients", type=int, default=20)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=20.0,
        help="simulator speed: 20 makes a 1 s ring last 20 s and a 3 s talk 60 s, "
        "so that every answered call is still up when the last one is requested",
    )
    parser.add_argument(
        "--click-rate",
        type=float,
        default=20.0,
        help="volunteers' first clicks per second in the measured phase (0: all at once, "
        "a burst); calls must last longer than calls / rate seconds (--time-scale) "
        "for the peak to reach 1,000",
    )
    parser.add_argument("--pool", type=int, default=32, help="driver connections per web process")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per phase at most")
    parser.add_argument(
        "--timeline", action="store_true", help="also print event -> MQTT latency per second"
    )
    parser.add_argument(
        "--full-argon2",
        action="store_true",
        help="the product's argon2 parameters for sign-in (about 0.5 s CPU per user)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--sse-child":
        asyncio.run(sse_child())
    else:
        asyncio.run(main(parse_args()))
