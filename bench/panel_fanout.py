"""Live-panel fan-out: AMI event -> tracker -> worker (PostgreSQL) -> hub -> SSE line at clients.

Runs the AMI simulator, the real AMI client, the worker and the web app in
this process, 200 calls (one per volunteer), and N Server-Sent-Events
clients of the live panel in a separate process.  The latency of each
(call, state) change is measured from the moment our AMI client decoded
the event (the tracker's update) to the moment each client read the SSE
line for it.  Baseline, in the same run: the same calls with one client.

    .venv/bin/python bench/panel_fanout.py [--clients 500] [--calls 200]

The clients are raw sockets (HTTP/1.1, chunked, SSE) that time each line
when its bytes reach the client process: browsers run on other machines,
and one Python process playing 500 of them through a full HTTP client
library would measure itself more than the server.  Every client is an
organizer, so each must read every call change published while it
listens: the tables count the lines due and read, the snapshots sent
instead of lines, and the time spent in each stage of the fan-out.
BENCH_PROFILE=DIR writes cProfile statistics of the server (500-client
phase) and of the clients to DIR.

Needs PostgreSQL (DIALER_TEST_PG, default postgres@127.0.0.1:5432); a
scratch database is created and dropped.  Target: p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from datetime import time as dt_time
from typing import Any

import aiohttp
import asyncpg
from common import SECRET, SseBody, percentile
from pydantic import SecretStr

from ami_bridge.client import AmiClient
from ami_bridge.pbx import AmiPbx
from ami_bridge.simulator import AmiSimulator
from dialer.domain.passwords import hash_password
from dialer.domain.survey import CallingHours, TimeWindow
from dialer.domain.vocabulary import CampaignStatus, Role
from dialer.runtime.bootstrap import build_runtime, web_app
from dialer.runtime.settings import Settings
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
from web.config import WebConfig

PG = os.environ.get("DIALER_TEST_PG", "postgres@127.0.0.1:5432")
WINDOW = 14.0  # seconds of calls measured, from when every client is ready
GRACE = 3.0  # seconds more the clients listen: a line later than that is missed
PASSWORD = "bench-password-1"


# -- the clients (a separate process) ---------------------------------------------


# A call change as the hub encodes it: the event name, then the data line
# whose payload starts with the call id and its state.
_CHANGE = re.compile(
    rb'event: change\ndata: \{"kind":"call"[^\n]*?"call_id":"([^"]+)"[^\n]*?"state":"([a-z_]+)"'
)
_SNAPSHOT = b"event: snapshot\n"


class SseReader(asyncio.Protocol):
    """One live-panel client on a raw socket: HTTP/1.1, chunked, SSE.

    Browsers run elsewhere; this one process plays hundreds of them on the
    server's two cores, so it does the least work that still reads every
    byte: it de-chunks, cuts the text at event boundaries and scans the
    complete events for call changes.  Every change is timestamped when its
    bytes arrived in this process (``data_received``), the moment a browser
    would read it.
    """

    def __init__(self, request: bytes, on_ready: Any, arrivals: list[tuple[bytes, bytes, float]]):
        self.request = request
        self.on_ready = on_ready
        self.arrivals = arrivals
        self.seen: set[tuple[bytes | Any, ...]] = set()
        self.head = b""
        self.status = 0
        self.body = SseBody(chunked=True)
        self.snapshots = 0
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4 :]
            self.status = int(head.split(b" ", 2)[1])
            assert self.status == 200, head
            assert b"transfer-encoding: chunked" in head.lower(), head
        events = self.body.feed(data)
        if events:
            self.scan(events, 0, len(events), now)

    def scan(self, events: bytes, start: int, end: int, now: float) -> None:
        """Complete events in ``events[start:end]``, read at ``now``."""
        seen = self.seen
        for found in _CHANGE.finditer(events, start, end):
            key = found.groups()
            if key not in seen:
                seen.add(key)
                self.arrivals.append((key[0], key[1], now))
        snapshots = events.count(_SNAPSHOT, start, end)
        if snapshots:
            if not self.snapshots:
                self.on_ready()
            self.snapshots += snapshots


async def run_clients(url: str, cookie: str, count: int, seconds: float) -> None:
    """Open ``count`` SSE streams; print the first arrival time of each (call, state).

    They listen for ``seconds`` after all are ready, then GRACE more so that
    a change published just before the end is still read (or counted missed).
    """
    profiler = _profiler()
    started_cpu = time.process_time()
    arrivals: list[tuple[bytes, bytes, float]] = []
    ready = 0
    all_ready = asyncio.Event()

    def on_ready() -> None:
        nonlocal ready
        ready += 1
        if ready >= count:
            all_ready.set()

    host, port = url.removeprefix("http://").split(":")
    request = (
        f"GET /api/live/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Accept: text/event-stream\r\nCookie: pb_session={cookie}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    readers: list[SseReader] = []
    transports: list[asyncio.BaseTransport] = []

    async def one() -> None:
        reader = SseReader(request, on_ready, arrivals)
        readers.append(reader)
        transport, _ = await loop.create_connection(lambda: reader, host, int(port))
        transports.append(transport)

    # Connect in waves: the listen backlog is finite, as with real browsers.
    for first in range(0, count, 100):
        await asyncio.gather(*(one() for _ in range(first, min(count, first + 100))))
    async with asyncio.timeout(60):
        await all_ready.wait()
    print(json.dumps({"ready": True, "at": time.time()}), flush=True)
    await asyncio.sleep(seconds + GRACE)
    dropped = sum(1 for reader in readers if reader.lost.done())
    closed_at = time.time()
    for transport in transports:
        transport.close()
    _dump(profiler, "reader")
    print(
        json.dumps(
            {
                "arrivals": [(call.decode(), state.decode(), at) for call, state, at in arrivals],
                "reader_cpu_s": time.process_time() - started_cpu,
                "snapshots": [reader.snapshots for reader in readers],
                "dropped": dropped,
                "closed_at": closed_at,
            }
        ),
        flush=True,
    )


def _profiler() -> Any:
    if not os.environ.get("BENCH_PROFILE"):
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _dump(profiler: Any, name: str) -> None:
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.path.join(os.environ["BENCH_PROFILE"], f"{name}.pstats"))


# -- the server side ----------------------------------------------------------------


async def seed(url: str, calls: int) -> tuple[list[int], list[int], int]:
    sessions = db.session_factory(db.create_engine(url))
    digest = hash_password(PASSWORD)
    everyday = TimeWindow(start=dt_time(0), end=dt_time(23, 59, 59))
    async with sessions.begin() as session:
        team = Team(name="Bench")
        session.add(team)
        await session.flush()
        organizer = User(username="boss", role=Role.ORGANIZER, password_hash=digest)
        session.add(organizer)
        campaign = Campaign(
            title="Bench",
            status=CampaignStatus.ACTIVE,
            team_id=team.id,
            allowed_caller_ids=["+15145550000"],
            calling_hours=CallingHours(weekday=everyday, weekend=everyday),
        )
        session.add(campaign)
        await session.flush()
        volunteers, contacts = [], []
        for index in range(calls):
            user = User(
                username=f"v{index}",
                role=Role.VOLUNTEER,
                password_hash=digest,
                sip_extension=f"{3000 + index}",
            )
            session.add(user)
            # Last digit 7: the simulator answers after 1 s, talks 3 s, hangs up.
            contact = Contact(first_name="Bench", last_name=str(index), timezone="UTC")
            contact.phones = [ContactPhone(e164=f"+1514555{index * 10 + 7:04d}")]
            session.add(contact)
            await session.flush()
            session.add(TeamMember(team_id=team.id, user_id=user.id))
            session.add(
                CallingListEntry(
                    campaign_id=campaign.id, contact_id=contact.id, volunteer_id=user.id
                )
            )
            volunteers.append(user.id)
            contacts.append(contact.id)
    return volunteers, contacts, campaign.id


async def phase(url: str, clients: int, calls: int) -> tuple[list[float], dict[str, Any]]:
    # The least-privilege AMI user of production: no VarSet/Newexten noise.
    simulator = AmiSimulator(secret=SECRET, time_scale=1.0, least_privilege=True)
    await simulator.start()
    settings = Settings(
        _env_file=None,
        database_url=SecretStr(url),
        ami_port=simulator.port,
        ami_secret=SecretStr(SECRET),
        allowed_destinations="CA",
        originate_timeout_ms=10_000,
    )
    client = AmiClient("127.0.0.1", simulator.port, "dialer", SecretStr(SECRET), max_in_flight=256)
    pbx = AmiPbx(client)
    stamps: dict[tuple[str, str], float] = {}
    emit = pbx._emit

    def stamped(updates: list[Any]) -> None:
        now = time.time()
        for update in updates:
            stamps.setdefault((update.call_id, update.state.value), now)
        emit(updates)

    pbx._emit = stamped  # type: ignore[method-assign]
    runtime = build_runtime(settings, pbx)
    published: dict[tuple[str, str], float] = {}
    publish = runtime.broadcaster.publish

    def stamped_publish(kind: Any, key: str, payload: dict[str, Any], **options: Any) -> Any:
        if kind == "call":
            published.setdefault((key, payload["state"]), time.time())
        return publish(kind, key, payload, **options)

    runtime.broadcaster.publish = stamped_publish  # type: ignore[method-assign]
    assert runtime.worker is not None
    runtime.worker.poll_interval = 0.05
    worker = asyncio.create_task(runtime.worker.run())  # it starts the PBX link
    async with asyncio.timeout(10):
        while not pbx.connected:  # noqa: ASYNC110 - a property, no event to wait on
            await asyncio.sleep(0.02)
    app = web_app(
        runtime, WebConfig(_env_file=None, public_url="http://127.0.0.1", sse_client_backlog=2000)
    )
    from aiohttp import web

    from web.deps import hub_key

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            base + "/api/session", json={"username": "boss", "password": PASSWORD}
        ) as response:
            cookie = response.cookies["pb_session"].value
    async with runtime.sessions() as session:
        from sqlalchemy import select

        rows = (
            await session.execute(
                select(User.id, CallingListEntry.contact_id, CallingListEntry.campaign_id).join(
                    CallingListEntry, CallingListEntry.volunteer_id == User.id
                )
            )
        ).all()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--run-clients",
        base,
        cookie,
        str(clients),
        str(WINDOW),
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await process.stdout.readline()
    ready = json.loads(line)
    assert ready["ready"]
    # The changes measured: those published in the window; the clients keep
    # reading for GRACE after it, so none of them is cut off by the end.
    window_end = ready["at"] + WINDOW
    hub = app[hub_key]
    snapshots_before = hub.snapshots_sent
    stages = _trace_hub(hub)
    profiler = _profiler() if clients > 1 else None
    started_cpu = time.process_time()
    started = time.perf_counter()
    for volunteer_id, contact_id, campaign_id in rows[:calls]:
        await runtime.service.start_call(
            volunteer_id=volunteer_id, contact_id=contact_id, campaign_id=campaign_id
        )
        await asyncio.sleep(2.0 / calls)  # 200 calls within about 2 s
    ramp = time.perf_counter() - started
    output = await process.stdout.read()
    await process.wait()
    server_cpu = time.process_time() - started_cpu
    wall = time.perf_counter() - started
    _dump(profiler, "server")
    report = json.loads(output)
    due = {pair for pair, at in published.items() if at <= window_end}
    arrivals = [
        (call_id, state, at) for call_id, state, at in report["arrivals"] if (call_id, state) in due
    ]
    latencies = [
        (at - stamps[(call_id, state)]) * 1000
        for call_id, state, at in arrivals
        if (call_id, state) in stamps
    ]
    fanout = [(at - published[(call_id, state)]) * 1000 for call_id, state, at in arrivals]
    # Every client is staff: each must read every call change published in
    # the window (a snapshot from the hub would stand in for lines it missed).
    missed = len(due) * clients - len(arrivals)
    # The part before the hub, once per change: AMI event -> worker publish.
    persist = [(published[pair] - stamps[pair]) * 1000 for pair in due if pair in stamps]
    accepted, flushes = stages
    flushed: dict[tuple[str, str], tuple[float, float]] = {}
    for start, end, pairs in flushes:
        for pair in pairs:
            flushed.setdefault(pair, (start, end))
    info = {
        "stages": {
            "publish -> hub": [
                (at - published[pair]) * 1000 for pair, at in accepted.items() if pair in due
            ],
            "hub -> flush": [
                (flushed[pair][0] - at) * 1000
                for pair, at in accepted.items()
                if pair in due and pair in flushed
            ],
            "flush (wall)": [(end - start) * 1000 for start, end, _ in flushes],
            "flush -> line": [
                (at - flushed[(call_id, state)][0]) * 1000
                for call_id, state, at in arrivals
                if (call_id, state) in flushed
            ],
        },
        "fanout": fanout,
        "persist": persist,
        "clients": clients,
        "calls": calls,
        "ramp_s": ramp,
        "changes": len(stamps),
        "published": len(due),
        "expected": len(due) * clients,
        "missed": missed,
        "deliveries": len(arrivals),
        "resyncs": sum(report["snapshots"]) - clients,
        "resynced_clients": sum(1 for count in report["snapshots"] if count > 1),
        "hub_snapshots": hub.snapshots_sent - snapshots_before,
        "dropped": report["dropped"],
        "server_cpu": server_cpu / wall,
        "reader_cpu": report["reader_cpu_s"] / wall,
    }
    await runner.cleanup()
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    await pbx.close()
    await simulator.stop()
    await runtime.close()
    return latencies, info


def _trace_hub(hub: Any) -> tuple[dict[tuple[str, str], float], list[Any]]:
    """When each call change entered the hub, and each flush's start, end and changes."""
    accepted: dict[tuple[str, str], float] = {}
    flushes: list[tuple[float, float, list[tuple[str, str]]]] = []
    pending: list[tuple[str, str]] = []
    if not hasattr(hub, "_write_slices"):  # a hub without flushes: no stages to show
        return accepted, flushes
    accept, start_flush, write_slices = hub._accept, hub._start_flush, hub._write_slices

    def traced_accept(event: Any) -> None:
        if event.kind == "call":
            pair = (event.key, event.payload["state"])
            accepted.setdefault(pair, time.time())
            pending.append(pair)
        accept(event)

    def traced_start_flush() -> None:
        flushes.append((time.time(), 0.0, pending[:]))
        pending.clear()
        start_flush()

    def traced_write_slices(**options: Any) -> None:
        write_slices(**options)
        if hub._jobs is None and flushes:
            start, _, pairs = flushes[-1]
            flushes[-1] = (start, time.time(), pairs)

    hub._accept = traced_accept
    hub._start_flush = traced_start_flush
    hub._write_slices = traced_write_slices
    return accepted, flushes


async def main(clients: int, calls: int) -> None:
    name = f"dialer_bench_{uuid.uuid4().hex[:8]}"
    load_before = os.getloadavg()
    admin = await asyncpg.connect(f"postgresql://{PG}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = f"postgresql+asyncpg://{PG}/{name}"
    try:
        await db.upgrade_async(url)
        await seed(url, calls)
        rows = []
        for count in (1, clients):
            latencies, info = await phase(url, count, calls)
            rows.append((count, latencies, info))
            # Let every call end and the rows settle before the next phase.
            engine = db.create_engine(url)
            async with engine.begin() as connection:
                from sqlalchemy import text

                await connection.execute(text("TRUNCATE call_attempts, dispositions CASCADE"))
                await connection.execute(
                    text(
                        "UPDATE calling_list_entries SET attempts = 0, done = false, "
                        "last_attempt_at = NULL, next_attempt_at = NULL"
                    )
                )
            await engine.dispose()
        nan = float("nan")
        print()
        print(
            f"{'SSE clients':>11} {'calls':>5} {'changes':>7} {'lines due':>9} {'lines read':>10} "
            f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}   (AMI event -> SSE line)"
        )
        for count, latencies, info in rows:
            print(
                f"{count:>11} {info['calls']:>5} {info['changes']:>7} {info['expected']:>9} "
                f"{info['deliveries']:>10} "
                f"{statistics.median(latencies) if latencies else nan:>7.1f} "
                f"{percentile(latencies, 0.90):>7.1f} {percentile(latencies, 0.99):>7.1f} "
                f"{max(latencies) if latencies else nan:>7.1f}"
            )
        print()
        print(
            f"{'SSE clients':>11} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}"
            "   (worker publish -> SSE line)"
        )
        for count, _latencies, info in rows:
            fan = info["fanout"]
            print(
                f"{count:>11} {statistics.median(fan) if fan else nan:>7.1f} "
                f"{percentile(fan, 0.90):>7.1f} {percentile(fan, 0.99):>7.1f} "
                f"{max(fan) if fan else nan:>7.1f}"
            )
        print()
        print(
            f"{'SSE clients':>11} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}"
            "   (AMI event -> worker publish, once per change)"
        )
        for count, _latencies, info in rows:
            part = info["persist"]
            print(
                f"{count:>11} {statistics.median(part) if part else nan:>7.1f} "
                f"{percentile(part, 0.90):>7.1f} {percentile(part, 0.99):>7.1f} "
                f"{max(part) if part else nan:>7.1f}"
            )
        print()
        print(
            f"{'SSE clients':>11} {'stage':>14} {'count':>7} {'p50 ms':>7} {'p90 ms':>7} "
            f"{'p99 ms':>7} {'max ms':>7}   (inside the fan-out)"
        )
        for count, _latencies, info in rows:
            for stage, values in info["stages"].items():
                print(
                    f"{count:>11} {stage:>14} {len(values):>7} "
                    f"{statistics.median(values) if values else nan:>7.1f} "
                    f"{percentile(values, 0.90):>7.1f} {percentile(values, 0.99):>7.1f} "
                    f"{max(values) if values else nan:>7.1f}"
                )
        print()
        print(
            f"{'SSE clients':>11} {'missed':>6} {'resyncs':>7} {'resynced':>8} {'dropped':>7} "
            f"{'server CPU':>10} {'reader CPU':>10}"
        )
        for count, _latencies, info in rows:
            print(
                f"{count:>11} {info['missed']:>6} {info['resyncs']:>7} "
                f"{info['resynced_clients']:>8} {info['dropped']:>7} "
                f"{info['server_cpu']:>10.2f} {info['reader_cpu']:>10.2f}"
            )
        print(
            "load average before: {:.2f} {:.2f} {:.2f}; after: {:.2f} {:.2f} {:.2f}".format(
                *load_before, *os.getloadavg()
            )
        )
        print("latency: from our AMI client decoding the event to the SSE line read by a client")
        print("(baseline: the first row, one client; target p99 < 250 ms with 500 clients)")
        print(
            f"lines due: call changes published in the {WINDOW:.0f} s window, times clients;"
            f" missed: those not read {GRACE:.0f} s after it"
        )
        print("resyncs: snapshots after the first (resynced: clients that got one);")
        print("dropped: streams the server ended; CPU: cores busy over the phase")
    finally:
        # PostgreSQL may be short of connections (other benchmarks): retry the drop.
        for attempt in range(30):
            try:
                admin = await asyncpg.connect(f"postgresql://{PG}/postgres")
            except asyncpg.exceptions.TooManyConnectionsError:
                if attempt == 29:
                    print(f"could not drop the scratch database {name}", file=sys.stderr)
                    raise
                await asyncio.sleep(2)
                continue
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
            break


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--run-clients":
        _, _, base_url, session_cookie, how_many, duration = sys.argv
        asyncio.run(run_clients(base_url, session_cookie, int(how_many), float(duration)))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--clients", type=int, default=500)
        parser.add_argument("--calls", type=int, default=200)
        options = parser.parse_args()
        asyncio.run(main(options.clients, options.calls))
