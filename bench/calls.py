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

Run: .venv/bin/python bench/calls.py [--sizes 50,200,1000] [--calls-per-volunteer 1]
     [--time-scale 10] [--poll-interval 1]
Target: 1,000 concurrent calls on one worker, p99 event-to-persisted < 50 ms.

Two profiles.  The default is the target's: the simulator runs at 1/10 speed,
so an answered call lasts about 40 s and all N calls are up at once (the
"calls up at once" line below shows it), and the worker runs as in
production, woken by NOTIFY and polling every second.  The churn profile,
--time-scale 0.5 --calls-per-volunteer 2 --poll-interval 0.01, is harsher on
the database: 2-second calls one after the other, about 35 calls/s, with
only 40 or so up at a time and the outbox polled every 10 ms.

Below the table: each run's driver and simulator CPU (on a small machine the
three processes share the cores), how many calls were really up at once,
and the load average.  --breakdown adds where the worker's event-to-commit
time went (waiting for a writer, the transaction, each SQL statement, event
loop lag, GC pauses); --profile PREFIX writes a CPU-time cProfile of the
worker; --repeat, --no-baseline, --writers and --json help compare runs;
--poll-interval S sets how often the worker polls the outbox besides being
woken by NOTIFY.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from common import (
    ALWAYS,
    PG_SERVER,
    SECRET,
    desk_extensions,
    free_port,
    percentile,
    simulator_command,
)
from pydantic import SecretStr
from sqlalchemy import insert, select

from dialer.domain.outcomes import parse_submission
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

# Set by --profile / --breakdown for the worker process.
PROFILE_ENV = "DIALER_BENCH_PROFILE"
BREAKDOWN_ENV = "DIALER_BENCH_BREAKDOWN"
WRITERS_ENV = "DIALER_BENCH_WRITERS"
POLL_ENV = "DIALER_BENCH_POLL"


# -- the worker process ---------------------------------------------------------


async def worker_main(url: str, ami_port: int, max_batch: int) -> None:
    from ami_bridge.pbx import AmiPbx
    from dialer.domain.ports import OriginateRequest
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
    client = ami_client(settings)
    pbx = AmiPbx(client)
    runtime = build_runtime(settings, pbx, pool_size=40)
    worker = runtime.worker
    assert worker is not None
    # As in production: the driver (another process) commits NOTIFY with
    # each request, the worker's listener wakes it, and it polls as a backstop.
    worker.poll_interval = float(os.environ.get(POLL_ENV, "1.0"))
    listener = runtime.listener
    worker.max_batch = max_batch
    worker.writers = 1 if max_batch == 1 else int(os.environ.get(WRITERS_ENV, worker.writers))
    lags: list[float] = []
    originated: dict[str, float] = {}
    worker.on_persisted = lambda _snapshot, lag: lags.append(lag)
    probe = _WorkerProbe(worker, runtime.engine) if os.environ.get(BREAKDOWN_ENV) else None
    send = pbx.originate

    async def timed_originate(request: OriginateRequest) -> None:
        originated[request.call_id] = time.time()
        await send(request)

    pbx.originate = timed_originate  # type: ignore[method-assign]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    profile_path = os.environ.get(PROFILE_ENV)
    # CPU time, not wall time: on a shared machine wall time charges whatever
    # function was running when the process lost the CPU.
    profiler = cProfile.Profile(time.process_time) if profile_path else None
    cpu_start = time.process_time()
    if profiler is not None:
        profiler.enable()
    task = asyncio.create_task(worker.run())
    listening = asyncio.create_task(listener.run()) if listener is not None else None
    await stop.wait()
    if listening is not None:
        listening.cancel()
    if profiler is not None and profile_path:
        profiler.disable()
        profiler.dump_stats(profile_path)
    cpu = time.process_time() - cpu_start
    task.cancel()
    await pbx.close()
    await runtime.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result: dict[str, Any] = {"lags": lags, "originated": originated, "cpu": cpu, "rss_mb": rss_mb}
    if probe is not None:
        result["breakdown"] = probe.summary()
    print(json.dumps(result))


class _WorkerProbe:
    """Where event-to-commit time goes, measured from outside the worker (bench only).

    * queue: from the AMI event's arrival (``snapshot.at``) to the start of
      the transaction that stores it (waiting in ``pending`` for a writer);
    * txn: the whole ``apply`` call holding it (SELECT, flush, commit, publish);
    * per SQL statement kind: time from sending it to its result;
    * loop lag: how late a 5 ms sleep wakes up (CPU starvation, long steps);
    * GC pauses.
    """

    def __init__(self, worker: Any, engine: Any) -> None:
        from sqlalchemy import event

        self.queue: list[float] = []
        self.txn: list[float] = []
        self.batch_sizes: list[int] = []
        self.sql: dict[str, list[float]] = {}
        self.loop_lag: list[float] = []
        self.gc_pauses: list[tuple[int, float]] = []
        self.gc_cpu: list[tuple[int, float]] = []
        self._gc_started = self._gc_cpu_started = 0.0
        apply = worker.apply

        async def timed_apply(snapshots: Any) -> Any:
            batch = list(snapshots)
            began = time.time()
            for snapshot in batch:
                self.queue.append(began - snapshot.at.timestamp())
            self.batch_sizes.append(len(batch))
            try:
                return await apply(batch)
            finally:
                self.txn.append(time.time() - began)

        worker.apply = timed_apply

        def before(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            conn.info.setdefault("bench_started", []).append(time.perf_counter())

        def after(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            started = conn.info["bench_started"].pop()
            kind = " ".join(statement.split()[:3])[:40]
            self.sql.setdefault(kind, []).append(time.perf_counter() - started)

        event.listen(engine.sync_engine, "before_cursor_execute", before)
        event.listen(engine.sync_engine, "after_cursor_execute", after)
        dialect = engine.sync_engine.dialect
        do_commit = dialect.do_commit

        def timed_commit(dbapi_connection: Any) -> None:
            started = time.perf_counter()
            try:
                do_commit(dbapi_connection)
            finally:
                self.sql.setdefault("COMMIT", []).append(time.perf_counter() - started)

        dialect.do_commit = timed_commit

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                self._gc_started = time.perf_counter()
                self._gc_cpu_started = time.process_time()
            else:
                generation = info["generation"]
                self.gc_pauses.append((generation, time.perf_counter() - self._gc_started))
                self.gc_cpu.append((generation, time.process_time() - self._gc_cpu_started))

        gc.callbacks.append(on_gc)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            began = time.perf_counter()
            await asyncio.sleep(0.005)
            self.loop_lag.append(time.perf_counter() - began - 0.005)

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float]:
            return {
                "n": len(values),
                "p50_ms": percentile(values, 0.5) * 1000,
                "p99_ms": percentile(values, 0.99) * 1000,
                "max_ms": max(values, default=float("nan")) * 1000,
                "sum_s": sum(values),
            }

        return {
            "queue": stats(self.queue),
            "txn": stats(self.txn),
            "batch_p50": percentile([float(n) for n in self.batch_sizes], 0.5),
            "batch_max": max(self.batch_sizes, default=0),
            "loop_lag": stats(self.loop_lag),
            "gc_frozen": gc.get_freeze_count(),
            "gc_tracked": len(gc.get_objects()),
            "gc": {
                str(generation): stats([p for g, p in self.gc_pauses if g == generation])
                for generation in (0, 1, 2)
            },
            "gc_cpu": {
                str(generation): stats([p for g, p in self.gc_cpu if g == generation])
                for generation in (0, 1, 2)
            },
            "sql": {kind: stats(values) for kind, values in sorted(self.sql.items())},
        }


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
            allowed_caller_ids=["+15145550000"],
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
                "sip_extension": extension,
                "is_active": True,
                "created_at": now,
            }
            for i, extension in enumerate(desk_extensions(volunteers))
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
) -> tuple[dict[str, float], dict[str, float], int, float, list[int]]:
    from dialer.domain.vocabulary import CallState
    from dialer.runtime.bootstrap import build_runtime
    from dialer.runtime.settings import Settings
    from dialer.store.models import CallAttempt

    settings = Settings(
        _env_file=None,
        database_url=SecretStr(url),  # type: ignore[call-arg]
        allowed_destinations="CA",
    )
    # 1,000 volunteers clicking at once queue for 50 connections; on a busy
    # 2-core machine the last one can wait longer than SQLAlchemy's default
    # 30 s, which would abort the run rather than measure it.
    runtime = build_runtime(settings, pool_size=40, pool_timeout=300)
    service = runtime.service
    requested: dict[str, float] = {}
    committed: dict[str, float] = {}
    completed = 0
    waiting: dict[str, asyncio.Future[None]] = {}
    # Calls requested and not yet seen ended, every 0.2 s: how many calls
    # were really up at once (the driver, not the worker, can be the limit).
    live: list[int] = []

    async def watch_calls() -> None:
        # One query for every call in progress, like one live panel would
        # see them, rather than each volunteer polling its own row.
        while True:
            # Gentle on the database the worker is writing to: the driver is
            # a stand-in for browsers, not the thing measured.
            await asyncio.sleep(0.2)
            live.append(len(waiting))
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
            await runtime.outcomes.record_outcome(
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
    return requested, committed, completed, elapsed, live


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live child process (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_run(
    volunteers: int,
    calls_each: int,
    max_batch: int,
    time_scale: float,
    *,
    profile: str | None = None,
    breakdown: bool = False,
    writers: int | None = None,
    poll_interval: float | None = None,
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
            [sys.executable, *simulator_command(ami_port, SECRET, time_scale)],
            stderr=subprocess.DEVNULL,
        )
        await asyncio.sleep(1.0)
        env = dict(os.environ)
        if profile:
            env[PROFILE_ENV] = f"{profile}-{volunteers}-{max_batch}-{name}.prof"
        if breakdown:
            env[BREAKDOWN_ENV] = "1"
        if writers:
            env[WRITERS_ENV] = str(writers)
        if poll_interval:
            env[POLL_ENV] = str(poll_interval)
        worker = subprocess.Popen(
            [sys.executable, __file__, "--worker", url, str(ami_port), str(max_batch)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        await asyncio.sleep(1.5)
        load_before = os.getloadavg()
        simulator_cpu = _process_cpu(simulator.pid)
        driver_cpu = time.process_time()
        requested, committed, completed, elapsed, live = await drive(
            url, campaign_id, user_ids, contact_ids
        )
        driver_cpu = time.process_time() - driver_cpu
        simulator_cpu = _process_cpu(simulator.pid) - simulator_cpu
        load_after = os.getloadavg()
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
        "writers": writers,
        "poll_interval": poll_interval,
        "live_peak": max(live, default=0),
        "live_mean": sum(live) / len(live) if live else 0.0,
        "driver_cpu_s": driver_cpu,
        "simulator_cpu_s": simulator_cpu,
        "load_before": load_before,
        "load_after": load_after,
        "breakdown": metrics.get("breakdown"),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200,1000")
    parser.add_argument("--calls-per-volunteer", type=int, default=1)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=10.0,
        help="real seconds per simulated second (10: a 1 s ring takes 10 s, a call about 40 s, "
        "so that every volunteer's call is up at once)",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the 1-update-per-transaction baseline run at N=200",
    )
    parser.add_argument("--repeat", type=int, default=1, help="run each size this many times")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also measure where event-to-commit time goes in the worker and print it",
    )
    parser.add_argument(
        "--profile", metavar="PREFIX", help="cProfile the worker to PREFIX-N-BATCH-DB.prof"
    )
    parser.add_argument("--json", metavar="FILE", help="append every run's numbers to FILE")
    parser.add_argument(
        "--writers", type=int, help="concurrent persistence transactions (default: the worker's)"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        help="the worker's outbox poll besides NOTIFY (production: 1 s)",
    )
    args = parser.parse_args()
    options: dict[str, Any] = {
        "profile": args.profile,
        "breakdown": args.breakdown,
        "writers": args.writers,
        "poll_interval": args.poll_interval,
    }
    rows = [
        await one_run(n, args.calls_per_volunteer, 500, args.time_scale, **options)
        for n in (int(size) for size in args.sizes.split(","))
        for _ in range(args.repeat)
    ]
    if not args.no_baseline:
        rows.append(await one_run(200, args.calls_per_volunteer, 1, args.time_scale, **options))
    if args.json:
        _append_json(args.json, rows)
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
    print(
        "\nper run: driver (web tier) and simulator CPU, request -> committed p99, "
        "calls up at once (every 0.2 s), load average (1 min) before -> after"
    )
    for row in rows:
        print(
            f"{row['volunteers']:>10} driver {row['driver_cpu_s']:5.1f}s "
            f"({row['driver_cpu_s'] / row['seconds']:4.0%}) "
            f"simulator {row['simulator_cpu_s']:5.1f}s "
            f"({row['simulator_cpu_s'] / row['seconds']:4.0%}) "
            f"req->committed p99 {row['check_p99']:7.1f}ms "
            f"calls up at once: peak {row['live_peak']}, mean {row['live_mean']:.0f} "
            f"load {row['load_before'][0]:.2f} -> {row['load_after'][0]:.2f}"
        )
    for row in rows:
        if row.get("breakdown"):
            _print_breakdown(row)


def _append_json(path: str, rows: list[dict[str, Any]]) -> None:
    with open(path, "a") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")


def _print_breakdown(row: dict[str, Any]) -> None:
    parts = row["breakdown"]
    print(
        f"\nN={row['volunteers']} max_batch={row['max_batch']}: "
        f"batch size p50 {parts['batch_p50']:.0f}, max {parts['batch_max']}; "
        f"objects at the end: {parts.get('gc_tracked')} tracked by the GC, "
        f"{parts.get('gc_frozen')} frozen"
    )
    lines = [
        ("queue (event -> its txn starts)", parts["queue"]),
        ("txn (apply: select, flush, commit, publish)", parts["txn"]),
        ("event-loop lag (5 ms sleep overshoot)", parts["loop_lag"]),
        *((f"gc gen {g} (wall)", parts["gc"][g]) for g in ("0", "1", "2")),
        *((f"gc gen {g} (CPU)", parts["gc_cpu"][g]) for g in ("0", "1", "2") if "gc_cpu" in parts),
        *((f"sql {kind}", stats) for kind, stats in parts["sql"].items()),
    ]
    for label, stats in lines:
        if stats["n"]:
            print(
                f"  {label:<48} n={stats['n']:>6} p50 {stats['p50_ms']:7.2f}ms "
                f"p99 {stats['p99_ms']:7.2f}ms max {stats['max_ms']:7.1f}ms "
                f"total {stats['sum_s']:6.2f}s"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        asyncio.run(worker_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        asyncio.run(main())
