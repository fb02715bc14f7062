"""The AMI client: one connection, one ordered stream, actions with timeouts.

It runs on panoramisk's ``AMIProtocol`` (the asyncio protocol class) but not
on its ``Manager``, whose machinery conflicts with what a dialer needs:

* ``Manager`` re-sends unanswered actions after a reconnect (its
  ``awaiting_actions``, flushed on ``FullyBooted``).  A re-sent Originate
  rings a volunteer twice; here nothing is ever re-sent, and an Originate
  whose answer was lost fails with :class:`OriginateOutcomeUnknown`.
* It waits for ``FullyBooted``, which a least-privilege user never gets.
* It runs coroutine callbacks as separate tasks, so events lose their order.
* Its pinger never times out, and it reconnects after a fixed delay.
* It writes actions with its own serializer; every byte we send must come
  from :func:`ami_bridge.codec.encode_action`.

So the protocol subclass feeds our sans-I/O :class:`~ami_bridge.codec.Decoder`
and routes each message synchronously in ``data_received``: responses
resolve the awaiting action, list items are collected, everything else is
put on one unbounded queue (never awaited, so the reader never stalls and
Asterisk never drops us for being slow).  One supervisor task owns the
connection: connect, log in, resync from ``CoreShowChannels``, ping, and on
any failure reconnect with capped exponential backoff and jitter.

The consumer reads ``async for item in client.stream()`` and gets, in wire
order: :class:`~ami_bridge.stream.Received` for each event,
:class:`~ami_bridge.stream.ConnectionLost` when a logged-in connection ends,
and one :class:`~ami_bridge.stream.Resynced` after every login.

With ``trace_file`` set, every byte each connection reads and writes also
goes to a wire trace in the ``.ami`` recording format
(:mod:`ami_bridge.wiretrace`), secrets masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from os import PathLike
from typing import Final

from panoramisk.ami_protocol import AMIProtocol
from pydantic import SecretStr

from ami_bridge.codec import Action, AmiEncodingError, Decoder, Message, encode_action
from ami_bridge.stream import ConnectionLost, Received, Resynced, StreamItem
from ami_bridge.wiretrace import TraceFiles, WireTrace

log = logging.getLogger(__name__)

__all__ = [
    "AmiActionError",
    "AmiActionTimeout",
    "AmiAuthenticationError",
    "AmiClient",
    "AmiConnectionLost",
    "AmiEncodingError",
    "AmiError",
    "AmiNotConnected",
    "ClientStats",
    "OriginateOutcomeUnknown",
    "backoff_delay",
]


class AmiError(Exception):
    """Base of the client's errors."""


class AmiNotConnected(AmiError):
    """No logged-in connection: the action was not sent."""


class AmiAuthenticationError(AmiError):
    """The PBX refused the username or secret.  The client stops: retrying a
    wrong secret cannot succeed, so this is a configuration error."""


class AmiConnectionLost(AmiError):
    """The action was sent, but the connection ended before its response."""


class AmiActionTimeout(AmiError):
    """No response in time.  ``sent`` tells whether the action left at all
    (``False`` when it was still waiting for a free in-flight slot)."""

    def __init__(self, action: str, timeout: float, *, sent: bool) -> None:
        where = "no response" if sent else "not sent: too many actions in flight"
        super().__init__(f"{action}: {where} within {timeout:g} s")
        self.action = action
        self.sent = sent


class AmiActionError(AmiError):
    """The PBX answered ``Response: Error`` (``message`` is its Message)."""

    def __init__(self, action: str, response: Message) -> None:
        self.response = response
        self.message = response.get("Message") or ""
        super().__init__(f"{action} refused: {self.message or response.response}")


class OriginateOutcomeUnknown(AmiError):
    """The Originate was sent but its response never came (timeout or lost
    connection): the call may or may not be ringing.  It is not retried; the
    resync after the reconnect, or the call's events, will tell."""

    def __init__(self, action_id: str, channel_id: str | None, reason: str) -> None:
        super().__init__(f"Originate {action_id}: outcome unknown ({reason})")
        self.action_id = action_id
        self.channel_id = channel_id
        self.reason = reason


@dataclass(slots=True)
class ClientStats:
    logins: int = 0
    reconnects: int = 0
    """Successful logins after the first one."""
    connection_losses: int = 0
    ping_timeouts: int = 0
    action_timeouts: int = 0
    originates_unknown: int = 0
    unparsable_messages: int = 0
    stream_high_water: int = 0
    """The longest the stream queue has been: how far the consumer fell behind."""


def backoff_delay(
    attempt: int, *, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): exponential,
    capped, with "equal jitter" so that many dialers restarting together do
    not reconnect in lockstep yet none waits less than half the step."""
    step = min(maximum, initial * 2.0 ** min(attempt, 32))
    return step / 2 + (rng or _rng).uniform(0, step / 2)


_rng = random.Random()  # noqa: S311 - jitter, not security


class _End:
    """Marks the end of the stream."""


_END: Final = _End()


@dataclass(slots=True)
class _Pending:
    name: str
    future: asyncio.Future[_Reply]
    response: Message | None = None
    items: list[Message] = field(default_factory=list)
    is_resync: bool = False
    is_login: bool = False
    sent_at: float = 0.0
    """``time.monotonic()`` when the action was written."""


@dataclass(frozen=True, slots=True)
class _Reply:
    response: Message
    items: tuple[Message, ...] = ()
    seconds: float = 0.0
    """From writing the action to reading its response (the list's end, for a list)."""


class _Connection(AMIProtocol):  # type: ignore[misc]  # panoramisk is untyped
    """panoramisk's protocol with our decoder, encoder and routing."""

    transport: asyncio.Transport

    def __init__(self, client: AmiClient) -> None:
        super().__init__()
        self.client = client
        self.decoder = Decoder()
        self.pending: dict[str, _Pending] = {}
        loop = asyncio.get_running_loop()
        self.banner: asyncio.Future[str] = loop.create_future()
        self.lost: asyncio.Future[str] = loop.create_future()
        self.lost_reason: str | None = None
        self.logged_in = False
        self.closed = False
        self.trace: WireTrace | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.client._trace_files is not None:
            self.trace = self.client._trace_files.open()

    def data_received(self, data: bytes) -> None:
        # Runs for every read: nothing here may block or await.
        if self.trace is not None:
            self.trace.received(data)
        for message in self.decoder.feed(data):
            self.client._route(self, message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._end_trace(by_client=False)
        reason = self.lost_reason or (f"connection lost: {exc}" if exc else "closed by the PBX")
        if not self.banner.done():
            self.banner.set_exception(ConnectionError(reason))
        if not self.lost.done():
            self.lost.set_result(reason)
        for pending in self.pending.values():
            if not pending.future.done():
                pending.future.set_exception(AmiConnectionLost(f"{pending.name}: {reason}"))
        self.pending.clear()

    def send(self, action: Action) -> None:
        # Encoding first means a refused action writes nothing at all.
        data = encode_action(action)
        self.transport.write(data)
        if self.trace is not None:
            self.trace.sent(data)

    def abort(self, reason: str) -> None:
        if self.lost_reason is None:
            self.lost_reason = reason
        if not self.closed:
            self._end_trace(by_client=True)
            self.transport.abort()

    def close(self) -> None:
        if not self.closed:
            self._end_trace(by_client=True)
            self.transport.close()

    def _end_trace(self, *, by_client: bool) -> None:
        # Ended here rather than in connection_lost, which runs a loop turn
        # later: the transport reads nothing more once closed, and the file
        # is then complete by the time AmiClient.close() returns.
        if self.trace is not None:
            self.trace.end(by_client=by_client)
            self.trace = None


class AmiClient:
    """A supervised AMI connection.

    ``await start()`` launches the connection loop; ``await close()`` ends it
    and the stream.  Actions sent while not logged in fail at once with
    :class:`AmiNotConnected` (nothing is queued for later).
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: SecretStr,
        *,
        action_timeout: float = 10.0,
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
        reconnect_initial_delay: float = 0.5,
        reconnect_max_delay: float = 30.0,
        max_in_flight: int = 64,
        connect_timeout: float = 5.0,
        events: str | None = None,
        trace_file: str | PathLike[str] | None = None,
    ) -> None:
        """``events`` is sent as the Login's ``Events`` header, e.g.
        ``"call,system"`` to skip the dialplan class (VarSet, Newexten: half
        of all traffic); ``None`` keeps the PBX's default (everything).

        ``trace_file`` switches the raw wire trace on: every connection
        writes its own file named after that path (see
        :mod:`ami_bridge.wiretrace`); ``None`` or empty leaves it off."""
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.reconnect_initial_delay = reconnect_initial_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.connect_timeout = connect_timeout
        self._events = events
        self._trace_files = (
            TraceFiles(trace_file, secrets=(secret.get_secret_value(),)) if trace_file else None
        )
        self._limit = asyncio.Semaphore(max_in_flight)
        self._queue: asyncio.Queue[StreamItem | _End] = asyncio.Queue()
        self._conn: _Connection | None = None
        self._ready = False
        self._connected_event = asyncio.Event()
        self._resync_buffer: list[StreamItem] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._first_login: asyncio.Future[None] | None = None
        self._closing = False
        self._streaming = False
        self._error: AmiError | None = None
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(3)
        self.stats = ClientStats()
        # Told, for each Originate the PBX answered (Success or Error), the
        # seconds from writing it to reading the response (metrics).
        self.on_originate_answered: Callable[[float], None] | None = None

    def __repr__(self) -> str:
        return (
            f"AmiClient({self.host!r}, {self.port}, {self.username!r}, connected={self.connected})"
        )

    # -- lifecycle -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Logged in and resynced: actions can be sent."""
        return self._ready

    @property
    def reconnects(self) -> int:
        return self.stats.reconnects

    @property
    def error(self) -> AmiError | None:
        """The fatal error that stopped the client (a refused login), if any."""
        return self._error

    async def start(self, *, wait: bool = True) -> None:
        """Start the connection loop.  With ``wait``, return once logged in
        and resynced, or raise :class:`AmiAuthenticationError`; while the PBX
        is unreachable this keeps waiting (wrap it in ``asyncio.timeout``)."""
        if self._supervisor is not None:
            raise RuntimeError("AmiClient.start() called twice")
        first_login: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Nobody awaits it with wait=False; its error is also in self.error.
        first_login.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._first_login = first_login
        self._supervisor = asyncio.create_task(self._supervise(), name="ami-client")
        if wait:
            await asyncio.shield(self._first_login)

    async def wait_connected(self) -> None:
        """Wait until logged in and resynced (raises the fatal error, if any)."""
        while not self._ready:
            if self._error is not None:
                raise self._error
            if self._supervisor is None or self._supervisor.done():
                raise AmiNotConnected("the client is not running")
            waiter = asyncio.ensure_future(self._connected_event.wait())
            await asyncio.wait({waiter, self._supervisor}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    async def close(self) -> None:
        """Log off (best effort), stop reconnecting and end the stream."""
        if self._closing:
            return
        self._closing = True
        conn = self._conn
        if conn is not None and self._ready:
            conn.lost_reason = "client closed"
            with contextlib.suppress(AmiError, OSError):
                await self._request(conn, Action("Logoff"), min(self.action_timeout, 1.0))
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._queue.put_nowait(_END)

    async def __aenter__(self) -> AmiClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the stream --------------------------------------------------------------

    async def stream(self) -> AsyncIterator[StreamItem]:
        """Every item, in order, until the client is closed.  One consumer only."""
        if self._streaming:
            raise RuntimeError("the AMI stream has a single consumer")
        self._streaming = True
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, _End):
                    return
                yield item
        finally:
            self._streaming = False

    def _put(self, item: StreamItem) -> None:
        if self._resync_buffer is not None:
            self._resync_buffer.append(item)
            return
        self._queue.put_nowait(item)
        depth = self._queue.qsize()
        if depth > self.stats.stream_high_water:
            self.stats.stream_high_water = depth

    # -- reading ---------------------------------------------------------------

    def _route(self, conn: _Connection, message: Message) -> None:
        """Synchronous and O(1): called from ``data_received``."""
        if message.is_banner:
            if not conn.banner.done():
                conn.banner.set_result(message.banner or "")
            return
        action_id = message.action_id
        event = message.event
        pending = conn.pending.get(action_id) if action_id is not None else None
        if event is None:
            if pending is None or action_id is None or message.response is None:
                # Garbage, or the answer to an action we gave up on.
                if message.response is None:
                    self.stats.unparsable_messages += 1
                log.debug("AMI: dropping an unexpected message (ActionID %s)", action_id)
                return
            if (message.get("EventList") or "").lower() == "start":
                pending.response = message
                if pending.is_resync:
                    # Events interleaved with the list happened during the
                    # snapshot: they go after the Resynced item.
                    self._resync_buffer = []
                return
            del conn.pending[action_id]
            if pending.is_login and message.response == "Success":
                # Set here, not when the login coroutine resumes: events in
                # the same read as the response must not be dropped.
                conn.logged_in = True
            if not pending.future.done():
                pending.future.set_result(_Reply(message, seconds=_since(pending.sent_at)))
            return
        if pending is not None and action_id is not None and pending.response is not None:
            if (message.get("EventList") or "").lower() != "complete":
                pending.items.append(message)
                return
            del conn.pending[action_id]
            if pending.is_resync:
                self._finish_resync(tuple(pending.items))
            if not pending.future.done():
                pending.future.set_result(
                    _Reply(pending.response, tuple(pending.items), _since(pending.sent_at))
                )
            return
        if conn.logged_in:
            self._put(Received(message, datetime.now(UTC)))

    def _finish_resync(self, channels: tuple[Message, ...]) -> None:
        buffered, self._resync_buffer = self._resync_buffer or [], None
        self._put(Resynced(channels, datetime.now(UTC)))
        for item in buffered:
            self._put(item)

    # -- the connection loop ---------------------------------------------------------

    async def _supervise(self) -> None:
        attempt = 0
        try:
            while not self._closing:
                logged_in = False
                try:
                    logged_in = await self._run_connection()
                except AmiAuthenticationError as exc:
                    self._fail(exc)
                    return
                except (OSError, TimeoutError, AmiError) as exc:
                    log.warning(
                        "AMI connection to %s:%d failed: %s", self.host, self.port, exc or type(exc)
                    )
                if self._closing:
                    return
                if logged_in:
                    attempt = 0
                delay = backoff_delay(
                    attempt, initial=self.reconnect_initial_delay, maximum=self.reconnect_max_delay
                )
                attempt += 1
                log.info("AMI: reconnecting in %.2f s", delay)
                await asyncio.sleep(delay)
        finally:
            if self._first_login is not None and not self._first_login.done():
                self._first_login.set_exception(
                    self._error or AmiNotConnected("the client was closed before logging in")
                )

    def _fail(self, exc: AmiError) -> None:
        log.error("AMI: %s; giving up (fix the AMI user or secret and restart)", exc)
        self._error = exc
        self._queue.put_nowait(_END)

    async def _run_connection(self) -> bool:
        """One connection, from connect to loss.  Returns whether it logged in."""
        loop = asyncio.get_running_loop()
        conn = _Connection(self)
        async with asyncio.timeout(self.connect_timeout):
            await loop.create_connection(lambda: conn, self.host, self.port)
        self._conn = conn
        pinger: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(self.action_timeout):
                banner = await conn.banner
            log.info("AMI connected to %s:%d (%s)", self.host, self.port, banner)
            await self._login(conn)
            self.stats.logins += 1
            if self.stats.logins > 1:
                self.stats.reconnects += 1
            await self._resync(conn)
            self._ready = True
            self._connected_event.set()
            if self._first_login is not None and not self._first_login.done():
                self._first_login.set_result(None)
            pinger = asyncio.create_task(self._ping_forever(conn), name="ami-ping")
            reason = await asyncio.shield(conn.lost)
            log.warning("AMI connection to %s:%d ended: %s", self.host, self.port, reason)
            return True
        finally:
            self._ready = False
            self._connected_event.clear()
            # A list cut short by the loss: its interleaved events still count.
            buffered, self._resync_buffer = self._resync_buffer or [], None
            for item in buffered:
                self._put(item)
            if pinger is not None:
                pinger.cancel()
            conn.abort(conn.lost_reason or ("client closed" if self._closing else "reset"))
            self._conn = None
            if conn.logged_in:
                self.stats.connection_losses += 1
                reason = conn.lost.result() if conn.lost.done() else conn.lost_reason or "closed"
                self._put(ConnectionLost(reason, datetime.now(UTC)))

    async def _login(self, conn: _Connection) -> None:
        headers = {"Username": self.username, "Secret": self._secret.get_secret_value()}
        if self._events is not None:
            headers["Events"] = self._events
        reply = await self._request(
            conn, Action.build("Login", headers), self.action_timeout, is_login=True
        )
        if reply.response.response != "Success":
            message = reply.response.get("Message") or "login refused"
            raise AmiAuthenticationError(f"AMI login as {self.username!r} refused: {message}")
        log.info("AMI logged in as %r", self.username)

    async def _resync(self, conn: _Connection) -> None:
        reply = await self._request(
            conn, Action("CoreShowChannels"), self.action_timeout, is_resync=True
        )
        if reply.response.response != "Success":
            raise AmiActionError("CoreShowChannels", reply.response)
        log.info("AMI resynced: %d channel(s) up", len(reply.items))

    async def _ping_forever(self, conn: _Connection) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            try:
                await self._request(conn, Action("Ping"), self.ping_timeout)
            except AmiActionTimeout:
                self.stats.ping_timeouts += 1
                log.warning("AMI: no Pong within %g s; dropping the connection", self.ping_timeout)
                conn.abort("ping timeout")
                return
            except AmiError:
                return

    # -- sending -----------------------------------------------------------------

    def _next_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    async def _request(
        self,
        conn: _Connection,
        action: Action,
        limit: float,
        *,
        is_resync: bool = False,
        is_login: bool = False,
    ) -> _Reply:
        """Write ``action`` on ``conn`` and await its reply (no in-flight slot)."""
        if action.action_id is None:
            action = dataclasses.replace(action, action_id=self._next_id())
        action_id = action.action_id
        assert action_id is not None
        if action_id in conn.pending:
            raise AmiError(f"ActionID {action_id!r} is already in flight")
        if conn.closed:
            raise AmiNotConnected(f"{action.name}: not connected")
        future: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        pending = _Pending(action.name, future, is_resync=is_resync, is_login=is_login)
        conn.send(action)
        pending.sent_at = time.monotonic()
        conn.pending[action_id] = pending
        # An Originate's ActionID is its call id (see ami_bridge.pbx).
        call = {"call_id": action_id} if action.name == "Originate" else None
        log.debug("AMI -> %s (%s)", action.name, action_id, extra=call)
        try:
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError:
            conn.pending.pop(action_id, None)
            self.stats.action_timeouts += 1
            raise AmiActionTimeout(action.name, limit, sent=True) from None

    async def _send(self, action: Action, time_limit: float | None) -> _Reply:
        encode_action(action)  # refuse bad input before waiting for anything
        limit = self.action_timeout if time_limit is None else time_limit
        if self._error is not None:
            raise self._error
        if not self._ready or self._conn is None:
            raise AmiNotConnected(f"{action.name}: not connected to the PBX")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        try:
            async with asyncio.timeout(limit):
                await self._limit.acquire()
        except TimeoutError:
            raise AmiActionTimeout(action.name, limit, sent=False) from None
        try:
            conn = self._conn
            if not self._ready or conn is None:
                raise AmiNotConnected(f"{action.name}: not connected to the PBX")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AmiActionTimeout(action.name, limit, sent=False)
            return await self._request(conn, action, remaining)
        finally:
            self._limit.release()

    async def send(self, action: Action, *, time_limit: float | None = None) -> Message:
        """Send ``action`` and return its response (``Response: Error`` included).

        An action that starts an event list returns once the list is
        complete; use :meth:`send_list` to get its items.
        """
        return (await self._send(action, time_limit)).response

    async def send_list(
        self, action: Action, *, time_limit: float | None = None
    ) -> tuple[Message, ...]:
        """Send an event-list action; return its items (not the Complete event)."""
        reply = await self._send(action, time_limit)
        if reply.response.response != "Success":
            raise AmiActionError(action.name, reply.response)
        return reply.items

    async def ping(self) -> Message:
        return await self.send(Action("Ping"))

    async def originate(
        self,
        channel: str,
        *,
        context: str,
        exten: str,
        priority: int = 1,
        caller_id_name: str | None = None,
        caller_id_num: str | None = None,
        timeout_ms: int = 30_000,
        channel_id: str | None = None,
        other_channel_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        action_id: str | None = None,
    ) -> Message:
        """Queue an asynchronous Originate; returns the "successfully queued" response.

        The outcome arrives later in the stream (``OriginateResponse`` with
        this ActionID).  Raises :class:`AmiEncodingError` before anything is
        written if a value could inject headers, :class:`AmiActionError` if
        the PBX refuses it, :class:`OriginateOutcomeUnknown` if it was sent
        but not answered.  It is never sent twice.
        """
        headers: dict[str, str | int | bool] = {
            "Channel": channel,
            "Context": context,
            "Exten": exten,
            "Priority": priority,
        }
        if caller_id_name is not None or caller_id_num is not None:
            headers["CallerID"] = format_caller_id(caller_id_name, caller_id_num)
        headers["Timeout"] = timeout_ms
        headers["Async"] = True
        if channel_id is not None:
            headers["ChannelId"] = channel_id
        if other_channel_id is not None:
            headers["OtherChannelId"] = other_channel_id
        action = Action.build(
            "Originate",
            headers,
            variables=variables,
            action_id=action_id or self._next_id(),
        )
        assert action.action_id is not None
        try:
            reply = await self._send(action, None)
        except AmiActionTimeout as exc:
            if not exc.sent:
                raise
            self.stats.originates_unknown += 1
            raise OriginateOutcomeUnknown(action.action_id, channel_id, str(exc)) from exc
        except AmiConnectionLost as exc:
            self.stats.originates_unknown += 1
            raise OriginateOutcomeUnknown(action.action_id, channel_id, str(exc)) from exc
        if self.on_originate_answered is not None:
            try:
                self.on_originate_answered(reply.seconds)
            except Exception:  # an observer must never fail a call
                log.exception("on_originate_answered failed; ignored")
        if reply.response.response != "Success":
            raise AmiActionError("Originate", reply.response)
        return reply.response

    async def hangup(self, channel: str, *, cause: int = 16) -> tuple[str, ...]:
        """Hang up ``channel`` (a name, or ``/regex/``); returns the names hung up.
        Raises :class:`AmiActionError` ("No such channel") when there was none."""
        reply = await self._send(Action.build("Hangup", {"Channel": channel, "Cause": cause}), None)
        if reply.response.response != "Success":
            raise AmiActionError("Hangup", reply.response)
        if reply.response.get("EventList"):
            return tuple(item["Channel"] for item in reply.items if "Channel" in item)
        return (channel,)

    async def core_show_channels(self) -> tuple[Message, ...]:
        """The ``CoreShowChannel`` events: every channel up now."""
        return await self.send_list(Action("CoreShowChannels"))


def _since(started: float) -> float:
    return time.monotonic() - started if started else 0.0


def format_caller_id(name: str | None, number: str | None) -> str:
    """``"Name" <number>``; refuses what would change how Asterisk splits it."""
    if name is not None and any(char in name for char in '"<>\\'):
        raise AmiEncodingError("CallerID", "the name may not contain quotes or angle brackets")
    if number is not None and not all(char.isdigit() or char in "+*#" for char in number):
        raise AmiEncodingError("CallerID", "the number may only contain digits, +, * and #")
    number_part = f"<{number}>" if number else ""
    if name:
        return f'"{name}" {number_part}'.rstrip()
    return number_part
