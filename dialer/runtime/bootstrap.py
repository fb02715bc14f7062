"""Composition root: the one place that builds and wires every part.

Nothing is built at import time.  ``dialer serve`` runs the worker and the
web app in one process; the same pieces run apart as ``dialer worker`` and
``dialer web``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dialer.domain.ports import CallPbx
from dialer.live.broadcaster import Broadcaster
from dialer.live.mailer import Mailer, SmtpSettings
from dialer.live.metrics import Metrics
from dialer.live.mqtt import MqttLiveFeed, MqttPublisher, NotificationPublisher
from dialer.runtime.metrics import install
from dialer.runtime.settings import Settings
from dialer.services.calling import CallService
from dialer.services.lists import CallingLists
from dialer.services.live_calls import CallPublisher
from dialer.services.notifications import NotificationDispatcher
from dialer.services.outcomes import OutcomeService
from dialer.services.power import PowerService
from dialer.store import engine as db
from dialer.store import heartbeats
from dialer.store.heartbeats import WorkerPresence
from dialer.store.notify import (
    CALL_REQUESTS,
    HANGUP_REQUESTS,
    OUTCOMES_SETTLED,
    POWER_SESSIONS,
    SUPERVISION_REQUESTS,
    PgListener,
    asyncpg_dsn,
)
from dialer.worker.call_worker import CallWorker
from dialer.worker.power_worker import PowerWorker

if TYPE_CHECKING:
    from aiohttp import web as aiohttp_web

    from ami_bridge.client import AmiClient
    from web.config import WebConfig
    from web.deps import WebDeps

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    broadcaster: Broadcaster
    # Starting and hanging up calls.
    service: CallService
    outcomes: OutcomeService
    lists: CallingLists
    # Power sessions: started by volunteers, carried out by the worker.
    power: PowerService | None = None
    worker: CallWorker | None = None
    # The worker publishes live state; a web process without a worker reads it.
    mqtt: MqttPublisher | MqttLiveFeed | None = None
    listener: PgListener | None = None
    metrics: Metrics | None = None
    # A process without a worker: what it last learned of each PBX's worker.
    workers: dict[str, WorkerPresence] = field(default_factory=dict)
    # Sends notifications out (MQTT, email); runs in web processes only.
    notifier: NotificationDispatcher | None = None

    async def close(self) -> None:
        await self.engine.dispose()

    def pbx_reachable(self, pbx: str) -> bool | None:
        """Can ``pbx``'s worker reach it?  None when nobody has said."""
        if self.worker is not None and pbx == self.settings.pbx_name:
            return self.worker.pbx.connected
        # Workers elsewhere say it on MQTT (docs/mqtt.md, workers/<name>/status).
        event = self.broadcaster.current("health", pbx)
        if event is None:
            return None
        if event.payload.get("status") == "offline":
            return False
        ami = event.payload.get("ami")
        return None if ami is None else ami == "connected"

    async def refresh_workers(self) -> dict[str, WorkerPresence]:
        """Read the workers' heartbeats: this process's PBX, users' PBXs, any seen."""
        async with asyncio.timeout(2.0):
            async with self.sessions() as session:
                found = await heartbeats.presence(session, [self.settings.pbx_name])
        for pbx, seen in found.items():
            before = self.workers.get(pbx)
            if seen.up and before is not None and not before.up:
                log.info("the worker for PBX %s is back (%s, pid %s)", pbx, seen.host, seen.pid)
            elif not seen.up and (before is None or before.up):
                log.warning(
                    "PBX %s: %s; calls on it wait and then expire; "
                    "start `dialer worker` with DIALER_PBX_NAME=%s",
                    pbx,
                    _absence(seen),
                    pbx,
                )
        self.workers = found
        return found

    async def watch_workers(self, interval: float = heartbeats.BEAT_SECONDS) -> None:
        """Keep ``workers`` current for metrics and the log, even with nobody asking."""
        while True:
            try:
                await self.refresh_workers()
            except Exception as error:  # the database check reports an outage
                log.debug("cannot read the worker heartbeats: %s", type(error).__name__)
            await asyncio.sleep(interval)

    def workers_up(self) -> dict[str, bool]:
        return {pbx: seen.up for pbx, seen in self.workers.items()}

    async def health(self) -> dict[str, dict[str, object]]:
        """What this process depends on, each with ``ok`` and a ``detail``.

        A check with ``"required": False`` does not make the process
        unhealthy, only degraded: a web process whose PBX has no worker still
        serves pages and records outcomes, and taking every web process out of
        a load balancer for it would turn a calling outage into a full one.
        """
        checks: dict[str, dict[str, object]] = {}
        try:
            async with asyncio.timeout(2.0):
                async with self.sessions() as session:
                    await session.execute(text("SELECT 1"))
            checks["database"] = {"ok": True, "detail": "reachable"}
        except Exception as error:  # any failure is the answer here, not a crash
            checks["database"] = {"ok": False, "detail": type(error).__name__}
        if self.mqtt is not None:
            # Live state only: calls work without the broker, but whoever
            # watches MQTT should know it is stale.
            checks["mqtt"] = {
                "ok": self.mqtt.connected,
                "detail": "connected" if self.mqtt.connected else "disconnected",
            }
        if self.worker is not None:
            connected = self.worker.pbx.connected
            detail = "connected" if connected else "disconnected"
            if self.worker.waiting_for_database:
                detail = "not started: waiting for the database"
            checks["ami"] = {"ok": connected, "detail": detail}
        elif checks["database"]["ok"]:
            checks["workers"] = await self._workers_check()
        return checks

    async def _workers_check(self) -> dict[str, object]:
        try:
            found = await self.refresh_workers()
        except Exception as error:  # e.g. the schema behind this version
            return {"ok": False, "required": False, "detail": type(error).__name__}
        pbxs: dict[str, dict[str, object]] = {}
        problems: list[str] = []
        for pbx, seen in found.items():
            if not seen.up:
                state, problem = "down", _absence(seen)
            elif not seen.ami_connected:
                state, problem = "pbx_unreachable", "worker up, PBX unreachable"
            else:
                state, problem = "up", ""
            entry: dict[str, object] = {"state": state}
            # Host names and pids stay in the log: /healthz answers anyone.
            if seen.seen_seconds_ago is not None:
                entry.update(seen_seconds_ago=round(seen.seen_seconds_ago, 1))
            pbxs[pbx] = entry
            if problem:
                problems.append(f"{pbx}: {problem}")
        return {
            "ok": not problems,
            "required": False,
            "detail": "; ".join(problems) or "up",
            "pbxs": pbxs,
        }


def _absence(seen: WorkerPresence) -> str:
    if seen.seen_seconds_ago is None:
        return "no worker running"
    return f"no heartbeat for {seen.seen_seconds_ago:.0f}s"


def ami_client(settings: Settings) -> AmiClient:
    """The AMI client the settings describe (ami_bridge takes plain arguments)."""
    from ami_bridge.client import AmiClient

    return AmiClient(
        settings.ami_host,
        settings.ami_port,
        settings.ami_username,
        settings.ami_secret,
        action_timeout=settings.ami_action_timeout,
        ping_interval=settings.ami_ping_interval,
        ping_timeout=settings.ami_ping_timeout,
        reconnect_max_delay=settings.ami_reconnect_max_delay,
        max_in_flight=settings.ami_max_actions_in_flight,
        trace_file=settings.ami_trace_file or None,
    )


def build_runtime(settings: Settings, pbx: CallPbx | None = None, **engine_options: Any) -> Runtime:
    if settings.database_url_value.startswith("postgresql"):
        engine_options.setdefault("pool_size", settings.database_pool_size)
        engine_options.setdefault("max_overflow", settings.database_pool_size)
    engine = db.create_engine(settings.database_url_value, **engine_options)
    sessions = db.session_factory(engine)
    broadcaster = Broadcaster()
    publisher = CallPublisher(sessions, broadcaster)
    service = CallService(
        sessions,
        policy=settings.dialing_policy,
        volunteer_channel=settings.volunteer_channel,
        outbound_context=settings.outbound_context,
        default_caller_id=settings.default_caller_id,
        pbx_name=settings.pbx_name,
        publisher=publisher,
    )
    outcomes = OutcomeService(sessions, region=settings.default_region, publisher=publisher)
    lists = CallingLists(sessions, policy=settings.dialing_policy)
    runtime = Runtime(settings, engine, sessions, broadcaster, service, outcomes, lists)
    service.pbx_reachable = runtime.pbx_reachable
    service.power_join_context = settings.power_join_context
    runtime.power = PowerService(sessions, service, lists)
    if pbx is not None:
        worker = CallWorker(
            service,
            pbx,
            originate_timeout_ms=settings.originate_timeout_ms,
            request_expiry=timedelta(seconds=settings.request_expiry_seconds),
            supervision_context=settings.supervision_context,
            supervision_beep=settings.supervision_beep,
            supervision_notice=settings.supervision_notice,
        )
        service.on_request = worker.wake
        service.on_hangup_request = worker.wake_hangups
        service.on_supervision_request = worker.wake_supervisions
        worker.power = PowerWorker(
            runtime.power,
            pbx,
            pbx_name=settings.pbx_name,
            context=settings.power_context,
            originate_timeout_ms=settings.originate_timeout_ms,
            hang_up_call=worker.hang_up_for_session,
            request_expiry=timedelta(seconds=settings.request_expiry_seconds),
        )
        runtime.power.on_change = worker.power.wake
        runtime.worker = worker
        if settings.database_url_value.startswith("postgresql"):
            # Requests made by web processes elsewhere wake this worker at once.
            runtime.listener = PgListener(
                asyncpg_dsn(settings.database_url_value),
                {
                    CALL_REQUESTS: worker.wake,
                    HANGUP_REQUESTS: worker.wake_hangups,
                    SUPERVISION_REQUESTS: worker.wake_supervisions,
                    OUTCOMES_SETTLED: worker.wake_wrap_ups,
                    POWER_SESSIONS: worker.power.wake,
                },
                pbx=settings.pbx_name,
            )
    runtime.metrics = install(runtime)
    if runtime.worker is None:
        runtime.metrics.workers_up = runtime.workers_up
    runtime.notifier = NotificationDispatcher(sessions, mailer=mailer(settings))
    return runtime


def mailer(settings: Settings) -> Mailer | None:
    """The SMTP sender of notification emails, or None when DIALER_SMTP_HOST is empty."""
    if not settings.smtp_host:
        return None
    return Mailer(
        SmtpSettings(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from or f"phonebank@{settings.smtp_host}",
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )
    )


def attach_notifications(runtime: Runtime) -> NotificationDispatcher | None:
    """A web process sends notifications out: over its own MQTT link, and by email."""
    from web.config import WebConfig

    notifier = runtime.notifier
    if notifier is None:
        return None
    config = WebConfig()
    notifier.site_url = config.public_url.rstrip("/")
    notifier.default_language = config.default_language
    settings = runtime.settings
    url = settings.mqtt_url.get_secret_value()
    if url:
        notifier.mqtt = NotificationPublisher(
            url,
            prefix=settings.mqtt_topic_prefix,
            client_name=f"notifications-{socket.gethostname()}-{os.getpid()}",
            ca_file=settings.mqtt_ca_file or None,
        )
    return notifier


def attach_mqtt(runtime: Runtime, *, with_worker: bool) -> None:
    """The worker publishes live state; a web process on its own subscribes to it."""
    settings = runtime.settings
    url = settings.mqtt_url.get_secret_value()
    if not url:
        if not with_worker:
            log.warning(
                "DIALER_MQTT_URL is empty: this web process shows no live state from workers"
            )
        return
    if with_worker:
        runtime.mqtt = MqttPublisher(
            runtime.broadcaster,
            url,
            prefix=settings.mqtt_topic_prefix,
            worker_name=settings.pbx_name,
            ca_file=settings.mqtt_ca_file or None,
        )
    else:
        runtime.mqtt = MqttLiveFeed(
            runtime.broadcaster,
            url,
            prefix=settings.mqtt_topic_prefix,
            client_name=f"web-{socket.gethostname()}-{os.getpid()}",
            ended_calls=runtime.service.publisher.final_states,
            ca_file=settings.mqtt_ca_file or None,
        )


# A task that ignores its cancellation must not keep a supervisor waiting:
# after this long the process says which task hung, and exits.
SHUTDOWN_GRACE_SECONDS = 20.0


async def stuck_after(tasks: list[asyncio.Task[None]], grace: float) -> list[asyncio.Task[None]]:
    """The tasks still running ``grace`` seconds on, each logged with its stack."""
    _done, stuck = await asyncio.wait(tasks, timeout=grace)
    for task in stuck:
        frames = "".join(
            f"\n  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
            for frame in task.get_stack()
        )
        log.error("task %s did not stop within %.0fs:%s", task.get_name(), grace, frames)
    return list(stuck)


async def _wait_for_stop(stop: asyncio.Event | None) -> None:
    event = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, event.set)
    await event.wait()


def web_deps(runtime: Runtime) -> WebDeps:
    """What the web layer may use of this runtime: services, never the sessions."""
    from dialer.services.accounts import AccountService
    from dialer.services.call_history import CallHistory
    from dialer.services.campaigns import CampaignService
    from dialer.services.contacts import ContactService
    from dialer.services.dashboard import DashboardService
    from dialer.services.directory import Directory
    from dialer.services.export import ExportService
    from dialer.services.importer import ImportService
    from dialer.services.notifications import NotificationService
    from dialer.services.tasks import TaskService
    from dialer.services.teams import TeamService
    from dialer.services.users import UserService
    from dialer.services.volunteer_phones import NumberRules
    from web.deps import WebDeps

    sessions = runtime.sessions
    return WebDeps(
        service=runtime.service,
        # A runtime put together by hand (tests) may not have built one.
        power=runtime.power or PowerService(sessions, runtime.service, runtime.lists),
        outcomes=runtime.outcomes,
        lists=runtime.lists,
        accounts=AccountService(sessions),
        users=UserService(
            sessions,
            NumberRules(runtime.settings.default_region, runtime.settings.dialing_policy),
        ),
        teams=TeamService(sessions, runtime.service.fallback_zone),
        campaigns=CampaignService(sessions),
        contacts=ContactService(sessions, runtime.service.caller_ids),
        calls=CallHistory(sessions),
        dashboard=DashboardService(sessions),
        imports=ImportService(
            sessions,
            policy=runtime.service.policy,
            bulk_min_bytes=runtime.settings.import_bulk_min_bytes,
        ),
        exports=ExportService(sessions),
        directory=Directory(sessions),
        notifications=NotificationService(
            sessions,
            email_available=runtime.notifier is not None and runtime.notifier.mailer is not None,
        ),
        tasks=TaskService(sessions),
        broadcaster=runtime.broadcaster,
        metrics=runtime.metrics or install(runtime),
        health=runtime.health,
        default_region=runtime.settings.default_region,
        shares_loop_with_worker=runtime.worker is not None,
    )


def web_app(runtime: Runtime, config: WebConfig | None = None) -> aiohttp_web.Application:
    from web.app import create_app

    return create_app(web_deps(runtime), config)


async def start_web(runtime: Runtime, host: str, port: int) -> tuple[Any, int]:
    """Serve the web app; returns the runner and the port actually bound."""
    try:
        app = web_app(runtime)
    except ImportError:
        log.warning("the web app is not available in this build; serving the worker only")
        return None, 0
    return await _serve(app, host, port)


async def start_probes(runtime: Runtime, host: str, port: int) -> tuple[Any, int]:
    """A worker on its own still answers /healthz and /metrics.

    A port already taken is logged, not fatal: calls matter more than probes.
    """
    try:
        from web.routes.health import create_probe_app
    except ImportError:
        return None, 0
    try:
        metrics = runtime.metrics or install(runtime)
        return await _serve(create_probe_app(runtime.health, metrics), host, port)
    except OSError as error:
        log.error("cannot serve /healthz and /metrics on %s:%s: %s", host, port, error)
        return None, 0


async def _serve(app: Any, host: str, port: int) -> tuple[Any, int]:
    from aiohttp import web as aiohttp_web

    runner = aiohttp_web.AppRunner(app, access_log=None)
    await runner.setup()
    site = aiohttp_web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    server = getattr(site, "_server", None)
    bound = port
    if server is not None and server.sockets:
        bound = server.sockets[0].getsockname()[1]
    return runner, bound


async def run_serve(
    settings: Settings,
    *,
    with_worker: bool = True,
    with_web: bool = True,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Runtime, int], None] | None = None,
) -> None:
    """Run the worker and/or the web app until SIGINT/SIGTERM (or ``stop``).

    Shutting down leaves live calls up on the PBX: the next start follows
    them again through the resync.
    """
    from ami_bridge.pbx import AmiPbx

    pbx = AmiPbx(ami_client(settings)) if with_worker else None
    runtime = build_runtime(settings, pbx)
    attach_mqtt(runtime, with_worker=with_worker)
    runner: Any = None
    try:
        async with asyncio.TaskGroup() as group:
            tasks: list[asyncio.Task[None]] = []
            if runtime.worker is not None:
                tasks.append(group.create_task(runtime.worker.run(), name="worker"))
            if runtime.listener is not None:
                tasks.append(group.create_task(runtime.listener.run(), name="pg-listener"))
            if runtime.mqtt is not None:
                tasks.append(group.create_task(runtime.mqtt.run(), name="mqtt"))
            if runtime.worker is None:
                tasks.append(group.create_task(runtime.watch_workers(), name="worker-watch"))
            notifier = attach_notifications(runtime) if with_web else None
            if notifier is not None:
                tasks.append(group.create_task(notifier.run(), name="notifications"))
                if notifier.mqtt is not None:
                    tasks.append(group.create_task(notifier.mqtt.run(), name="notifications-mqtt"))
            port = 0
            if with_web:
                runner, port = await start_web(runtime, settings.web_host, settings.web_port)
            elif settings.worker_http:
                runner, port = await start_probes(
                    runtime, settings.web_host, settings.worker_http_port
                )
            log.info("dialer running (worker=%s, http port=%s)", with_worker, port or "-")
            if on_ready is not None:
                on_ready(runtime, port)
            await _wait_for_stop(stop)
            log.info("shutting down; live calls stay up on the PBX")
            for task in tasks:
                task.cancel()
            if await stuck_after(tasks, SHUTDOWN_GRACE_SECONDS):
                logging.shutdown()
                # Live calls are safe on the PBX; the next start re-attaches them.
                os._exit(70)
    finally:
        if runner is not None:
            await runner.cleanup()
        if pbx is not None:
            await pbx.close()
        await runtime.close()
