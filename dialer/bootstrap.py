"""Composition root: the one place that builds and wires every part.

Nothing is built at import time.  ``dialer serve`` runs the worker and the
web app in one process; the same pieces run apart as ``dialer worker`` and
``dialer web``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dialer import db
from dialer.live import Broadcaster
from dialer.ports import CallPbx
from dialer.service import DialerService
from dialer.settings import Settings
from dialer.worker import CallWorker


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    broadcaster: Broadcaster
    service: DialerService
    worker: CallWorker | None = None
    extras: dict[str, object] = field(default_factory=dict)

    async def close(self) -> None:
        await self.engine.dispose()


def build_runtime(settings: Settings, pbx: CallPbx | None = None) -> Runtime:
    engine = db.create_engine(settings.database_url_value)
    sessions = db.session_factory(engine)
    broadcaster = Broadcaster()
    service = DialerService(
        sessions,
        policy=settings.dialing_policy,
        region=settings.default_region,
        volunteer_channel=settings.volunteer_channel,
        outbound_context=settings.outbound_context,
        default_caller_id=settings.default_caller_id,
        pbx_name=settings.pbx_name,
        broadcaster=broadcaster,
    )
    runtime = Runtime(settings, engine, sessions, broadcaster, service)
    if pbx is not None:
        worker = CallWorker(
            service,
            pbx,
            originate_timeout_ms=settings.originate_timeout_ms,
            request_expiry=timedelta(seconds=settings.request_expiry_seconds),
        )
        service.on_request = worker.wake
        service.hangup_handler = worker.hangup
        runtime.worker = worker
    return runtime
