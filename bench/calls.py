"""Complete calls through one worker against the AMI simulator.

N simulated volunteers (N = 50, 200, 1000) each place calls one after the
other: start_call -> the worker's Originate -> the simulator rings, the
contact answers and talks -> the call ends -> the volunteer records the
outcome -> next.  Three processes, as in production: the PBX simulator,
the worker (one per PBX), and the driver playing the web tier.

Prints, per N: calls/second, p50/p99 from the request to the Originate
leaving the worker, p99 from an AMI event arriving to its state being
committed, and the worker's CPU and memory.  The baseline, measured in the
same run at N=200, is the same worker persisting one update per
transaction (max_batch=1) instead of batching what arrived meanwhile.

Run: .venv/bin/python bench/calls.py [--sizes 50,200,1000] [--calls-per-volunteer 2]
Target: 1,000 concurrent calls on one worker, p99 event-to-persisted < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from datetime import time as clock_time
from typing import Any

import asyncpg
from pydantic import SecretStr
from sqlalchemy import insert, select

from dialer import db
from dialer.domain import CampaignStatus, Role
from dialer.models import CallingListEntry, Campaign, Contact, ContactPhone, Team, TeamMember, User
from dialer.outcomes import parse_submission
from dialer.survey import CallingHours, TimeWindow

PG_SERVER = os.environ.get("DIALER_TEST_PG", "postgres@127.0.0.1:5432")
SECRET = "bench-secret"
ALWAYS = CallingHours(
    weekday=TimeWindow(start=clock_time(0), end=clock_time(23, 59, 59)),
    weekend=TimeWindow(start=clock_time(0), end=clock_time(23, 59, 59)),
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- the worker process ---------------------------------------------------------


async def worker_main(url: str, ami_port: int, max_batch: int) -> None:
    from ami_bridge.client import AmiClient
    from ami_bridge.pbx import AmiPbx
    from dialer.bootstrap import build_runtime
    from dialer.ports import OriginateRequest
    from dialer.settings import Settings

    settings = Settings(
        _env_file=None,
        database_url=SecretStr(url),
        ami_port=ami_port,  # type: ignore[call-arg]
        ami_username="dialer",
        ami_secret=SecretStr(SECRET),
        allowed_destinations="CA",
    )
    client = AmiClient.from_settings(settings)
    pbx = AmiPbx(client)
    runtime = build_runtime(settings, pbx, pool_size=40)
    worker = runtime.worker
    assert worker is not None
    worker.poll_interval = 0.01
    worker.max_batch = max_batch
    worker.writers = 1 if max_batch == 1 else 2
    lags: list[float] = []
    originated: dict[str, float] = {}
    worker.on_persisted = lambda _snapshot, lag: lags.append(lag)
    send = pbx.originate

    async def timed_originate(request: OriginateRequest) -> None:
        originated[request.call_id] = time.time()
        await send(request)

    pbx.originate = timed_originate  # type: ignore[method-assign]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    cpu_start = time.process_time()
    task = asyncio.create_task(worker.run())
    await stop.wait()
    cpu = time.process_time() - cpu_start
    task.cancel()
    await pbx.close()
    await runtime.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"lags": lags, "originated": originated, "cpu": cpu, "rss_mb": rss_mb}))


# -- the driver -----------------------------------------------------------------


async def seed(
    url: str, volunteers: int, calls_each: int
) -> tuple[int, list[int], list[list[int]]]:
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
            calling_hours=ALWAYS,
            max_attempts=5,
            retry_delay_minutes=0,
        )
        session.add(campaign)
        await session.flush()
        now = datetime.now(UTC)
        user_rows = [
            {
                "username": f"v{i}",
                "display_name": f"V{i}",
                "role": Role.VOLUNTEER,
                "password_hash": "x",
                "sip_extension": str(20000 + i),
                "is_active": True,
                "created_at": now,
            }
            for i in range(volunteers)
        ]
        user_ids = list(
            (
                await session.execute(
                    insert(User).returning(User.id, sort_by_parameter_order=True), user_rows
                )
            ).scalars()
        )
        await session.execute(
            insert(TeamMember),
            [{"team_id": team.id, "user_id": uid, "joined_at": now} for uid in user_ids],
        )
        contact_ids: list[list[int]] = []
        for index, uid in enumerate(user_ids):
            mine = []
            for k in range(calls_each):
                # Last digit 7: rings 1 s, answers, talks 3 s (simulated seconds).
                number = f"+1514{200_000 + index * calls_each + k:06d}7"
                contact = Contact(first_name="C", last_name=str(index), tags=[], notes="")
                contact.phones = [ContactPhone(e164=number)]
                session.add(contact)
                await session.flush()
                session.add(
                    CallingListEntry(
                        campaign_id=campaign.id, contact_id=contact.id, volunteer_id=uid
                    )
                )
                mine.append(contact.id)
            contact_ids.append(mine)
    await engine.dispose()
    return campaign.id, user_ids, contact_ids


async def drive(
    url: str, campaign_id: int, user_ids: list[int], contact_ids: list[list[int]]
) -> tuple[dict[str, float], int, float]:
    from dialer.bootstrap import build_runtime
    from dialer.domain import CallState
    from dialer.models import CallAttempt
    from dialer.settings import Settings

    settings = Settings(
        _env_file=None,
        database_url=SecretStr(url),  # type: ignore[call-arg]
        allowed_destinations="CA",
    )
    runtime = build_runtime(settings, pool_size=40)
    service = runtime.service
    requested: dict[str, float] = {}
    committed: dict[str, float] = {}
    completed = 0
    waiting: dict[str, asyncio.Future[None]] = {}

    async def watch_calls() -> None:
        # One query for every call in progress, like one live panel would
        # see them, rather than each volunteer polling its own row.
        while True:
            # Gentle on the database the worker is writing to: the driver is
            # a stand-in for browsers, not the thing measured.
            await asyncio.sleep(0.2)
            if not waiting:
                continue
            async with runtime.sessions() as session:
                ended = await session.scalars(
                    select(CallAttempt.call_id).where(
                        CallAttempt.call_id.in_(list(waiting)),
                        CallAttempt.state == CallState.ENDED,
                    )
                )
                for call_id in ended:
                    waiting.pop(call_id).set_result(None)

    async def volunteer(uid: int, contacts: list[int]) -> None:
        nonlocal completed
        for contact_id in contacts:
            started = time.time()
            call = await service.start_call(
                volunteer_id=uid, contact_id=contact_id, campaign_id=campaign_id
            )
            requested[call.call_id] = started
            committed[call.call_id] = time.time()
            done = asyncio.get_running_loop().create_future()
            waiting[call.call_id] = done
            await done
            await service.record_outcome(
                uid,
                parse_submission(
                    {
                        "submission_id": uuid.uuid4().hex,
                        "call_id": call.call_id,
                        "contact_id": contact_id,
                        "outcome": "answered",
                        "consent": False,
                    }
                ),
            )
            completed += 1

    watcher = asyncio.create_task(watch_calls())
    began = time.perf_counter()
    await asyncio.gather(
        *(volunteer(uid, mine) for uid, mine in zip(user_ids, contact_ids, strict=True))
    )
    elapsed = time.perf_counter() - began
    watcher.cancel()
    await runtime.close()
    return requested, committed, completed, elapsed


async def one_run(
    volunteers: int, calls_each: int, max_batch: int, time_scale: float
) -> dict[str, Any]:
    name = f"dialer_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"postgresql://{PG_SERVER}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://{PG_SERVER}/{name}"
    ami_port = free_port()
    simulator = worker = None
    try:
        await db.upgrade_async(url)
        campaign_id, user_ids, contact_ids = await seed(url, volunteers, calls_each)
        simulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dialer",
                "simulate-pbx",
                "--port",
                str(ami_port),
                "--username",
                "dialer",
                "--secret",
                SECRET,
                "--least-privilege",
                "--time-scale",
                str(time_scale),
            ],
            stderr=subprocess.DEVNULL,
        )
        await asyncio.sleep(1.0)
        worker = subprocess.Popen(
            [sys.executable, __file__, "--worker", url, str(ami_port), str(max_batch)],
            stdout=subprocess.PIPE,
            text=True,
        )
        await asyncio.sleep(1.5)
        requested, committed, completed, elapsed = await drive(
            url, campaign_id, user_ids, contact_ids
        )
        worker.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(worker.communicate, timeout=60)
        metrics = json.loads(out.strip().splitlines()[-1])
    finally:
        for process in (worker, simulator):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    to_wire = [
        (metrics["originated"][cid] - t) * 1000
        for cid, t in requested.items()
        if cid in metrics["originated"]
    ]
    lags = [lag * 1000 for lag in metrics["lags"]]
    checks = [(committed[cid] - t) * 1000 for cid, t in requested.items()]
    return {
        "volunteers": volunteers,
        "calls": completed,
        "seconds": elapsed,
        "calls_per_s": completed / elapsed,
        "wire_p50": percentile(to_wire, 0.5),
        "wire_p99": percentile(to_wire, 0.99),
        "persist_p50": percentile(lags, 0.5),
        "persist_p99": percentile(lags, 0.99),
        "check_p50": percentile(checks, 0.5),
        "check_p99": percentile(checks, 0.99),
        "cpu_s": metrics["cpu"],
        "cpu_share": metrics["cpu"] / elapsed,
        "rss_mb": metrics["rss_mb"],
        "max_batch": max_batch,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200,1000")
    parser.add_argument("--calls-per-volunteer", type=int, default=2)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=0.5,
        help="simulated seconds per real second (0.5: a 1 s ring takes 0.5 s)",
    )
    args = parser.parse_args()
    rows = [
        await one_run(n, args.calls_per_volunteer, 500, args.time_scale)
        for n in (int(size) for size in args.sizes.split(","))
    ]
    rows.append(await one_run(200, args.calls_per_volunteer, 1, args.time_scale))
    header = (
        f"{'volunteers':>10} {'persist':>12} {'calls':>6} {'calls/s':>8} "
        f"{'req->wire p50':>13} {'p99':>7} {'event->stored p50':>17} {'p99':>7} "
        f"{'worker CPU':>10} {'busy':>5} {'RSS MB':>7}"
    )
    print(header)
    for row in rows:
        mode = "batched" if row["max_batch"] > 1 else "1/txn (base)"
        print(
            f"{row['volunteers']:>10} {mode:>12} {row['calls']:>6} {row['calls_per_s']:>8.1f} "
            f"{row['wire_p50']:>11.1f}ms {row['wire_p99']:>5.1f}ms "
            f"{row['persist_p50']:>15.1f}ms {row['persist_p99']:>5.1f}ms "
            f"{row['cpu_s']:>9.1f}s {row['cpu_share']:>5.0%} {row['rss_mb']:>7.0f}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        asyncio.run(worker_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        asyncio.run(main())
