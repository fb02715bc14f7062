"""The simulator itself: :class:`AmiSimulator` accepts AMI clients over
TCP, one :class:`~ami_bridge.simulator.session.Session` each, sets up the
state that its calls' view of the PBX
(:class:`~ami_bridge.simulator.exchange.Exchange`) and its actions
(:class:`~ami_bridge.simulator.actions.ActionHandlers`) share, and offers
what tests drive from outside: starting and stopping, scripting contacts
and volunteers, counting clients and calls, and the faults a PBX
connection suffers (dropped clients, stalls, garbage, a connection dropped
on a given action, a clean restart, a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping

from ami_bridge.simulator.actions import ActionHandlers
from ami_bridge.simulator.behaviour import (
    ContactBehaviour,
    VolunteerBehaviour,
    default_contact_behaviour,
    default_volunteer_behaviour,
    number_key,
)
from ami_bridge.simulator.dialplan import Trunk
from ami_bridge.simulator.session import Session
from ami_bridge.simulator.users import AmiUser

log = logging.getLogger(__name__)


class AmiSimulator(ActionHandlers):
    """A scripted Asterisk.  ``await start()``, connect to ``port``, ``await stop()``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "dialer",
        secret: str = "dialer-secret",  # noqa: S107 - the simulator's documented demo login
        least_privilege: bool = False,
        users: Iterable[AmiUser] = (),
        time_scale: float = 1.0,
        default_trunk: Trunk = "carrier",
        dialplan_events: bool = True,
        ring_timeout: float = 30.0,
        contacts: Mapping[str, ContactBehaviour] | None = None,
        volunteers: Mapping[str, VolunteerBehaviour] | None = None,
        contact_rule: Callable[[str], ContactBehaviour] = default_contact_behaviour,
        volunteer_rule: Callable[[str], VolunteerBehaviour] = default_volunteer_behaviour,
        write_timeout: float | None = 0.1,
        remember_actions: int = 10_000,
        contexts: Iterable[str] | None = None,
        endpoints: Iterable[str] | None = None,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.host = host
        self.port = port
        main_user = (
            AmiUser.least_privilege(username, secret)
            if least_privilege
            else AmiUser(username, secret)
        )
        self._users = {user.username: user for user in (main_user, *users)}
        self.time_scale = time_scale
        self.default_trunk = default_trunk
        self.dialplan_events = dialplan_events
        # The shipped dialplan's DIALER_RING_TIMEOUT global, in seconds.
        self.ring_timeout = ring_timeout
        self.write_timeout = write_timeout
        # None: every context exists / every all-digit PJSIP endpoint exists.
        # A set models a PBX whose dialplan or pjsip.conf lacks something.
        self.contexts = None if contexts is None else frozenset(contexts)
        self.endpoints = None if endpoints is None else frozenset(endpoints)
        self._contacts = {number_key(n): b for n, b in (contacts or {}).items()}
        self._volunteers = dict(volunteers or {})
        self._contact_rule = contact_rule
        self._volunteer_rule = volunteer_rule
        self._server: asyncio.Server | None = None
        self._sessions = set()
        self._channels = {}
        self._uniqueids: set[str] = set()
        self._hangup_watchers: dict[str, asyncio.Event] = {}
        self._calls = {}
        self._conferences = {}
        self._pending_drops = {}
        self._started_at = time.monotonic()
        self._epoch = int(time.time())
        self._uniqueid_seq = itertools.count(1)
        self._pjsip_seq = itertools.count(1)
        self._local_seq = itertools.count(1)
        self._down_task: asyncio.Task[None] | None = None
        self.bytes_received = 0
        """Bytes read from all clients since start: lets tests prove a refused
        action never reached the socket."""
        self.action_counts = Counter()
        """Actions received, by name as sent (e.g. ``action_counts["Originate"]``)."""
        self.actions = deque(maxlen=remember_actions)
        """The last actions received, in order (secrets included: test use only)."""

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Session(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._started_at = time.monotonic()
        log.info("AMI simulator listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._down_task is not None:
            self._down_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._down_task
        await self._close_server()
        self._forget_calls()
        for session in list(self._sessions):
            session.abort()
        await asyncio.sleep(0)

    async def __aenter__(self) -> AmiSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _close_server(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # -- scripting and introspection ----------------------------------------

    def script_contact(self, number: str, behaviour: ContactBehaviour) -> None:
        """Script ``number`` (with or without its leading ``+``: dialplans
        often dial E.164 numbers without it)."""
        self._contacts[number_key(number)] = behaviour

    def script_volunteer(self, extension: str, behaviour: VolunteerBehaviour) -> None:
        self._volunteers[extension] = behaviour

    @property
    def channel_names(self) -> list[str]:
        return list(self._channels)

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    @property
    def client_count(self) -> int:
        return sum(1 for session in self._sessions if not session.closing)

    @property
    def logged_in_count(self) -> int:
        return sum(1 for s in self._sessions if s.user is not None and not s.closing)

    # -- faults ------------------------------------------------------------

    def drop_clients(self) -> None:
        """Drop every client connection at once (no Logoff, no Shutdown); calls go on."""
        for session in list(self._sessions):
            session.abort()

    def stall(self, seconds: float) -> None:
        """Stop reading from and writing to the current clients for ``seconds``
        (real time); what they are sent meanwhile is delivered afterwards."""
        for session in list(self._sessions):
            session.stall(seconds)

    def send_garbage(
        self, data: bytes = b"\x00\xff\xfe garbage: \x01\r\nno colon here\r\n\r\n"
    ) -> None:
        for session in list(self._sessions):
            session.write(data)

    def drop_on_next(self, action: str, *, after_processing: bool = True) -> None:
        """Drop the connection the next ``action`` arrives on, without a
        response: after carrying it out (the response is lost) or before."""
        self._pending_drops[action.lower()] = after_processing

    async def restart(self, *, down_for: float = 0.0) -> None:
        """A clean restart, as restart_1 recorded it: every channel gets
        SoftHangupRequest (cause 4) and is hung up, ``Shutdown`` is sent and
        the sockets close.  The port refuses connections for ``down_for``."""
        calls = list(self._calls.values())
        for call in calls:
            call.cancel_task()
        for call in calls:
            for channel in call.live_channels(contact_first=True):
                self._soft_hangup_request(channel, 4)
        for call in calls:
            call.teardown_for_restart()
        self._emit("system", "Shutdown", "Shutdown: Cleanly\r\nRestart: True\r\n")
        for session in list(self._sessions):
            session.close()
        self._forget_calls()
        await self._go_down(down_for)

    async def crash(self, *, down_for: float = 0.0) -> None:
        """Asterisk killed: the sockets just close, nothing is sent, the calls are gone."""
        self._forget_calls()
        for session in list(self._sessions):
            session.abort()
        await self._go_down(down_for)

    async def _go_down(self, down_for: float) -> None:
        self._started_at = time.monotonic()
        if down_for <= 0:
            return
        await self._close_server()

        async def come_back() -> None:
            await asyncio.sleep(down_for)
            await self.start()

        self._down_task = asyncio.create_task(come_back())

    def _forget_calls(self) -> None:
        for call in list(self._calls.values()):
            call.cancel_task()
        self._calls.clear()
        self._conferences.clear()
        self._channels.clear()
        self._uniqueids.clear()
