"""Cross-process wake-ups through PostgreSQL LISTEN/NOTIFY.

Rows are the truth (the call-request outbox, hang-up requests, recorded
or skipped outcomes); a
notification only says "look now", so a worker in another process acts
within milliseconds instead of at its next poll.  A lost notification costs
one poll interval, never a request: the worker keeps polling as a backstop,
and looks again after every reconnection of the listener.

On SQLite (the embedded demo) there is one process and no NOTIFY; the
service wakes the in-process worker directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

CALL_REQUESTS = "dialer_call_requests"
HANGUP_REQUESTS = "dialer_hangup_requests"
# An organizer asked to listen, whisper or barge (dialer.services.calling).
SUPERVISION_REQUESTS = "dialer_supervision_requests"
# An outcome was recorded or skipped for one of the PBX's calls: its worker,
# which publishes live state to every process, shows the volunteer available.
OUTCOMES_SETTLED = "dialer_outcomes_settled"
# A power session was started, paused, resumed, asked to end (dialer.services.power).
POWER_SESSIONS = "dialer_power_sessions"

# The payload is the PBX name; a listener acts on its own PBX's only.
Handler = Callable[[str], None]


async def notify(session: AsyncSession, channel: str, pbx: str) -> None:
    """Queue a notification, delivered when (and only if) the transaction commits."""
    if session.get_bind().dialect.name != "postgresql":
        return
    await session.execute(
        text("SELECT pg_notify(:channel, :pbx)"), {"channel": channel, "pbx": pbx}
    )


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL (``postgresql+asyncpg://...``) as a plain libpq DSN."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgListener:
    """One dedicated connection LISTENing on a few channels, reconnecting forever."""

    def __init__(
        self,
        dsn: str,
        handlers: dict[str, Handler],
        *,
        pbx: str,
        check_interval: float = 10.0,
        reconnect_max_delay: float = 30.0,
    ) -> None:
        self._dsn = dsn
        self.handlers = handlers
        self.pbx = pbx
        self.check_interval = check_interval
        self.reconnect_max_delay = reconnect_max_delay
        self.connected = False
        self.reconnects = 0

    def _dispatch(self, channel: str, payload: str) -> None:
        if payload == self.pbx:
            self.handlers[channel](payload)

    def _on_notification(
        self, _connection: object, _pid: int, channel: str, payload: object
    ) -> None:
        self._dispatch(channel, str(payload))

    async def run(self) -> None:
        delay = 0.5
        while True:
            connection: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(
                    self._dsn,
                    timeout=10,
                    # Named, so a DBA sees what this idle connection is for.
                    server_settings={"application_name": f"dialer-listener-{self.pbx}"},
                )
                connection.add_termination_listener(functools.partial(_set_on_close, lost))
                for channel in self.handlers:
                    await connection.add_listener(channel, self._on_notification)
                if self.reconnects or delay > 0.5:
                    log.info("listening for call requests again")
                self.connected = True
                delay = 0.5
                # Whatever was notified while we were not listening is in the
                # rows: look at them now.
                for channel in self.handlers:
                    self._dispatch(channel, self.pbx)
                await self._watch(connection, lost)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
                log.warning(
                    "cannot listen for call requests (%s); polling meanwhile, retrying in %.1fs",
                    type(error).__name__,
                    delay,
                )
            finally:
                if self.connected:
                    self.reconnects += 1
                self.connected = False
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), 2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_delay)

    async def _watch(self, connection: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Return when the connection is gone; a periodic query notices a silent loss."""
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a
            # cancellation that arrives as the event is set.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.check_interval):
                    await lost.wait()
            if lost.is_set():
                log.warning("the call-request listener lost its connection")
                return
            await asyncio.wait_for(connection.fetchval("SELECT 1"), 5)


def _set_on_close(lost: asyncio.Event, _connection: object) -> None:
    lost.set()
