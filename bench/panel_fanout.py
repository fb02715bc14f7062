"""Live-panel fan-out: AMI event -> tracker -> worker (PostgreSQL) -> hub -> SSE line at clients.

Runs the AMI simulator, the real AMI client, the worker and the web app in
this process, 200 calls (one per volunteer), and N Server-Sent-Events
clients of the live panel in a separate process.  The latency of each
(call, state) change is measured from the moment our AMI client decoded
the event (the tracker's update) to the moment each client read the SSE
line for it.  Baseline, in the same run: the same calls with one client.

    .venv/bin/python bench/panel_fanout.py [--clients 500] [--calls 200]

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
from pydantic import SecretStr

from ami_bridge.client import AmiClient
from ami_bridge.pbx import AmiPbx
from ami_bridge.simulator import AmiSimulator
from dialer import db
from dialer.bootstrap import build_runtime
from dialer.domain import CampaignStatus, Role
from dialer.models import CallingListEntry, Campaign, Contact, ContactPhone, Team, TeamMember, User
from dialer.passwords import hash_password
from dialer.settings import Settings
from dialer.survey import CallingHours, TimeWindow
from web.app import create_app
from web.config import WebConfig

PG = os.environ.get("DIALER_TEST_PG", "postgres@127.0.0.1:5432")
SECRET = "bench-secret"
PASSWORD = "bench-password-1"


# -- the clients (a separate process) ---------------------------------------------


_CALL_STATE = re.compile(r'"call_id":"([^"]+)".*?"state":"([a-z_]+)"')


async def run_clients(url: str, cookie: str, count: int, seconds: float) -> None:
    """Open ``count`` SSE streams; print the first arrival time of each (call, state)."""
    arrivals: list[tuple[str, str, float]] = []
    ready = 0
    all_ready = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookies={"pb_session": cookie}) as http:

        async def one() -> None:
            nonlocal ready
            seen: set[tuple[str, str]] = set()
            async with http.get(
                url + "/api/live/events", timeout=aiohttp.ClientTimeout(total=None)
            ) as response:
                event = ""
                async for raw in response.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        if event == "snapshot":
                            ready += 1
                            if ready >= count:
                                all_ready.set()
                        elif event == "change" and '"kind":"call"' in line:
                            # Browsers run elsewhere; this one process plays
                            # 500 of them on the server's two cores, so it
                            # reads only what the measurement needs.
                            found = _CALL_STATE.search(line)
                            if found is not None:
                                key = (found.group(1), found.group(2))
                                if key not in seen:
                                    seen.add(key)
                                    arrivals.append((key[0], key[1], time.time()))

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        async with asyncio.timeout(60):
            await all_ready.wait()
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"arrivals": arrivals}), flush=True)


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
    app = create_app(
        runtime, WebConfig(_env_file=None, public_url="http://127.0.0.1", sse_client_backlog=2000)
    )
    from aiohttp import web

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
        "14",
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await process.stdout.readline()
    assert json.loads(line)["ready"]
    started = time.perf_counter()
    for volunteer_id, contact_id, campaign_id in rows[:calls]:
        await runtime.service.start_call(
            volunteer_id=volunteer_id, contact_id=contact_id, campaign_id=campaign_id
        )
        await asyncio.sleep(2.0 / calls)  # 200 calls within about 2 s
    ramp = time.perf_counter() - started
    output = await process.stdout.read()
    await process.wait()
    arrivals = json.loads(output)["arrivals"]
    latencies = [
        (at - stamps[(call_id, state)]) * 1000
        for call_id, state, at in arrivals
        if (call_id, state) in stamps
    ]
    fanout = [
        (at - published[(call_id, state)]) * 1000
        for call_id, state, at in arrivals
        if (call_id, state) in published
    ]
    info = {
        "fanout": fanout,
        "clients": clients,
        "calls": calls,
        "ramp_s": ramp,
        "changes": len(stamps),
        "deliveries": len(arrivals),
        "hub_snapshots": app[__import__("web.keys", fromlist=["hub_key"]).hub_key].snapshots_sent,
    }
    await runner.cleanup()
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    await pbx.close()
    await simulator.stop()
    await runtime.close()
    return latencies, info


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


async def main(clients: int, calls: int) -> None:
    name = f"dialer_bench_{uuid.uuid4().hex[:8]}"
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
        print()
        print(
            f"{'SSE clients':>11} {'calls':>5} {'changes':>7} {'lines read':>10} "
            f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}   (AMI event -> SSE line)"
        )
        for count, latencies, info in rows:
            print(
                f"{count:>11} {info['calls']:>5} {info['changes']:>7} {info['deliveries']:>10} "
                f"{statistics.median(latencies) if latencies else float('nan'):>7.1f} "
                f"{percentile(latencies, 0.90):>7.1f} {percentile(latencies, 0.99):>7.1f} "
                f"{max(latencies) if latencies else float('nan'):>7.1f}"
            )
        print()
        print(
            f"{'SSE clients':>11} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}"
            "   (worker publish -> SSE line)"
        )
        for count, _latencies, info in rows:
            fan = info["fanout"]
            print(
                f"{count:>11} {statistics.median(fan) if fan else float('nan'):>7.1f} "
                f"{percentile(fan, 0.90):>7.1f} {percentile(fan, 0.99):>7.1f} "
                f"{max(fan) if fan else float('nan'):>7.1f}"
            )
        print("latency: from our AMI client decoding the event to the SSE line read by a client")
        print("(baseline: the first row, one client; target p99 < 250 ms with 500 clients)")
    finally:
        admin = await asyncpg.connect(f"postgresql://{PG}/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


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
