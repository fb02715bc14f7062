"""Live state on MQTT: the one module that publishes to the broker.

It follows the in-process broadcaster, so a broker outage can never block
or fail a call: events queue (bounded) while the broker is away, and on
every (re)connection the current state is published again before the
queued changes.  Topics and payloads are documented in docs/mqtt.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import select
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.enums import MQTTErrorCode

from dialer.live.broadcaster import Broadcaster, LiveEvent, Subscription

log = logging.getLogger(__name__)


def _check_still_wanted() -> None:
    """Raise the cancellation a connect may have swallowed.

    aiomqtt connects through ``asyncio.wait_for``, which on Python 3.11
    drops a cancellation that arrives just as the connection completes; the
    task still counts it.  Without this, a publisher cancelled at start-up
    (the worker failing at once, say) carried on connected, and the task
    group waiting for it never finished (a test hung so, twice).
    """
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        raise asyncio.CancelledError


QOS = 1
OFFLINE = json.dumps({"status": "offline"})


# Given call ids, the final payload of those that have ended (from the database).
EndedCalls = Callable[[list[str]], Awaitable[dict[str, dict[str, Any]]]]


class MqttSettingsError(ValueError):
    pass


def parse_url(url: str, *, ca_file: str | None = None) -> dict[str, Any]:
    """``mqtt://user:pass@host:1883`` or ``mqtts://...:8883`` -> aiomqtt.Client options.

    ``ca_file`` trusts a private certificate authority (a self-hosted broker's)
    instead of the system's.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise MqttSettingsError("DIALER_MQTT_URL must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise MqttSettingsError("DIALER_MQTT_URL has no host")
    options: dict[str, Any] = {
        "hostname": parts.hostname,
        "port": parts.port or (8883 if parts.scheme == "mqtts" else 1883),
    }
    if parts.username:
        options["username"] = unquote(parts.username)
        options["password"] = unquote(parts.password or "")
    if parts.scheme == "mqtts":
        options["tls_context"] = ssl.create_default_context(cafile=ca_file)
    elif ca_file:
        raise MqttSettingsError("DIALER_MQTT_CA_FILE needs an mqtts:// URL")
    return options


def read_every_waiting_packet(client: aiomqtt.Client, budget: int = 1000) -> None:
    """Make ``client`` read every packet that has arrived per wake-up, not one.

    paho's ``loop_read`` reads as many packets as it has messages of its own
    in flight, so a client that only subscribes reads one per call, and
    aiomqtt calls it once per event-loop turn: a busy web process would take
    in live state slower than a worker publishes it.  Here each call goes on
    while the socket (or TLS) still holds bytes, up to ``budget`` packets, so
    other callbacks still get their turn.
    """
    inner = client._client
    read_one = inner.loop_read

    def loop_read(max_packets: int = 1) -> MQTTErrorCode:
        result = read_one()
        for _ in range(budget - 1):
            if result != MQTTErrorCode.MQTT_ERR_SUCCESS or not _bytes_waiting(inner.socket()):
                break
            result = read_one()
        return result

    # An instance attribute: aiomqtt's reader callback looks it up on each call.
    setattr(inner, "loop_read", loop_read)  # noqa: B010


def applying_queue(
    handle: Callable[[aiomqtt.Message], None],
) -> type[asyncio.Queue[aiomqtt.Message]]:
    """An incoming-message queue for aiomqtt that hands each message to ``handle`` at once.

    aiomqtt's message iterator costs a task and a wait per message, a few
    event-loop turns each; in a process whose loop is busy (a web process
    serving requests), that is slower than workers publish.  Handled in the
    read callback instead, a whole burst is taken in at once.  ``handle``
    must not block; the client's ``messages`` then only waits for a
    disconnection.
    """

    class ApplyingQueue(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            try:
                handle(item)
            except Exception:
                # Inside paho's read callback: one bad message must not end
                # the connection.
                log.exception("could not handle an MQTT message on %s", item.topic)

    return ApplyingQueue


def _bytes_waiting(sock: Any) -> bool:
    if sock is None:
        return False
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    if not isinstance(sock, socket.socket):
        return False  # a websocket wrapper: one packet per turn, as before
    try:
        # poll, not select: a web process with many browsers connected can
        # give the broker's socket a descriptor above select's limit (1024).
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False


async def _back_off(error: aiomqtt.MqttError, delay: float, max_delay: float, what: str) -> float:
    """After a lost or refused connection: wait ``delay``, then return the next one.

    aiomqtt's exit can turn our cancellation into an MqttError (a disconnect
    that timed out): a task being cancelled stops instead of retrying.
    """
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        raise asyncio.CancelledError from error
    log.warning("MQTT broker unavailable%s (%s); retrying in %.1fs", what, error, delay)
    await asyncio.sleep(delay)
    return min(delay * 2, max_delay)


class MqttPublisher:
    def __init__(
        self,
        broadcaster: Broadcaster,
        url: str,
        *,
        prefix: str = "dialer",
        worker_name: str = "default",
        reconnect_max_delay: float = 30.0,
        backlog: int = 10_000,
        ca_file: str | None = None,
        max_in_flight: int = 200,
    ) -> None:
        self.broadcaster = broadcaster
        self.options = parse_url(url, ca_file=ca_file)
        self.prefix = prefix.strip("/")
        self.worker_name = worker_name
        self.reconnect_max_delay = reconnect_max_delay
        self.backlog = backlog
        self.max_in_flight = max_in_flight
        self.connected = False
        self.publish_failures = 0
        self.published = 0
        self.reconnects = 0
        # Topics holding a retained message from us: after an outage, those
        # whose call ended meanwhile must be cleared.
        self._retained: set[str] = set()

    # -- topics ----------------------------------------------------------------

    def topic(self, event: LiveEvent) -> str:
        if event.kind == "call":
            return f"{self.prefix}/calls/{event.key}"
        if event.kind == "volunteer":
            return f"{self.prefix}/volunteers/{event.key}/status"
        if event.kind == "session":
            return f"{self.prefix}/volunteers/{event.key}/session"
        if event.kind == "campaign":
            return f"{self.prefix}/campaigns/{event.key}/counters"
        return f"{self.prefix}/workers/{event.key}/status"

    @property
    def health_topic(self) -> str:
        return f"{self.prefix}/workers/{self.worker_name}/status"

    # -- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        """Publish until cancelled, reconnecting with capped exponential backoff."""
        subscription = self.broadcaster.subscribe(maxsize=self.backlog)
        delay = 0.5
        will = aiomqtt.Will(self.health_topic, OFFLINE, QOS, True)
        try:
            while True:
                try:
                    async with aiomqtt.Client(
                        **self.options,
                        # Unique per deployment (prefix) and worker: a
                        # duplicate id makes the broker drop the other client.
                        identifier=f"dialer-{self.prefix}-{self.worker_name}",
                        will=will,
                        timeout=5,
                        max_inflight_messages=self.max_in_flight,
                    ) as client:
                        _check_still_wanted()
                        # Many publishes in flight is the design, not a problem to warn about.
                        client.pending_calls_threshold = self.max_in_flight + 10
                        self.connected = True
                        delay = 0.5
                        try:
                            await self._forward(client, subscription)
                        except asyncio.CancelledError:
                            # A clean disconnect sends no will: say it ourselves.
                            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                                async with asyncio.timeout(2):
                                    await client.publish(self.health_topic, OFFLINE, QOS, True)
                            raise
                except aiomqtt.MqttError as error:
                    if self.connected:
                        self.reconnects += 1
                    self.connected = False
                    self.publish_failures += 1
                    delay = await _back_off(error, delay, self.reconnect_max_delay, "")
        finally:
            self.connected = False
            self.broadcaster.unsubscribe(subscription)

    async def _forward(self, client: aiomqtt.Client, subscription: Subscription) -> None:
        await self._publish_state(client)
        # Publishes are not awaited one by one: waiting for each QoS 1
        # acknowledgement caps throughput at one round trip per message.
        # paho writes them in the order they are made and keeps up to
        # ``max_in_flight`` unacknowledged; a failure surfaces when its task
        # reaches the head of the window, and ends this connection.
        window: deque[asyncio.Task[None]] = deque()
        getter: asyncio.Task[LiveEvent] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.create_task(subscription.get())
                # Wake for the next event, or for the oldest publish to settle
                # (a broker gone quiet must end this connection even when no
                # new event comes).
                watched: set[asyncio.Future[Any]] = {getter}
                if window:
                    watched.add(window[0])
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                while window and window[0].done():
                    await window.popleft()  # raises when it failed
                if not getter.done():
                    continue
                # Everything that is waiting goes out now: one event per wake
                # would cost a few loop turns each, and on a busy worker that
                # caps the rate below what the calls produce.
                batch = [getter.result(), *subscription.take(self.max_in_flight)]
                getter = None
                if subscription.overflowed:
                    # Changes were dropped while we were slow: the snapshot
                    # says where things are now.
                    subscription.overflowed = False
                    while window:
                        await window.popleft()
                    await self._publish_state(client)
                    continue
                for event in batch:
                    window.append(asyncio.create_task(self._publish(client, event)))
                    while len(window) >= self.max_in_flight:
                        await window.popleft()
        finally:
            pending = [*window, *([getter] if getter is not None else [])]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _publish_state(self, client: aiomqtt.Client) -> None:
        await client.publish(self.health_topic, json.dumps({"status": "online"}), QOS, True)
        snapshot = self.broadcaster.snapshot()
        current = {self.topic(event) for event in snapshot}
        stale = sorted(self._retained - current)
        await asyncio.gather(*(client.publish(topic, b"", QOS, retain=True) for topic in stale))
        self._retained.difference_update(stale)
        await asyncio.gather(*(self._publish(client, event) for event in snapshot))

    async def _publish(self, client: aiomqtt.Client, event: LiveEvent) -> None:
        topic = self.topic(event)
        payload = json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False)
        if event.present:
            # One retained message per live call / volunteer / campaign: a new
            # subscriber sees the current state at once.
            await client.publish(topic, payload, QOS, retain=True)
            self._retained.add(topic)
        else:
            # The last state of an ended call goes out once, then the retained
            # message is cleared (an empty retained payload deletes it).
            await client.publish(topic, payload, QOS, retain=False)
            await client.publish(topic, b"", QOS, retain=True)
            self._retained.discard(topic)
        self.published += 1


class MqttLiveFeed:
    """The other direction: a web process that runs no worker learns live state here.

    It subscribes to the topics the workers publish and replays them into
    the process's own broadcaster, which the live panel already follows.
    Retained messages give the current state on every (re)connection; calls
    that ended while the broker was away lost their retained message, so
    after each reconnection the database (always ahead of MQTT: states are
    stored before they are published) says which shown calls are over.
    """

    def __init__(
        self,
        broadcaster: Broadcaster,
        url: str,
        *,
        prefix: str = "dialer",
        client_name: str = "web",
        ended_calls: EndedCalls | None = None,
        reconnect_max_delay: float = 30.0,
        ca_file: str | None = None,
    ) -> None:
        self.broadcaster = broadcaster
        self.options = parse_url(url, ca_file=ca_file)
        self.prefix = prefix.strip("/")
        self.client_name = client_name
        self.ended_calls = ended_calls
        self.reconnect_max_delay = reconnect_max_delay
        self.connected = False
        self.received = 0
        self.reconnects = 0

    @property
    def subscriptions(self) -> list[str]:
        return [
            f"{self.prefix}/calls/+",
            f"{self.prefix}/volunteers/+/status",
            f"{self.prefix}/volunteers/+/session",
            f"{self.prefix}/campaigns/+/counters",
            f"{self.prefix}/workers/+/status",
        ]

    async def run(self) -> None:
        delay = 0.5
        first = True
        while True:
            try:
                client = aiomqtt.Client(
                    **self.options,
                    identifier=f"dialer-{self.client_name}",
                    timeout=5,
                    queue_type=applying_queue(self._apply_message),
                )
                read_every_waiting_packet(client)
                async with client:
                    _check_still_wanted()
                    for topic in self.subscriptions:
                        # QoS 0 from the broker to here: Mosquitto keeps at most
                        # 20 QoS 1 messages unacknowledged per client
                        # (max_inflight_messages), and a web process busy with
                        # requests acknowledges once per loop turn, so it would
                        # take in live state slower than workers make it.  On
                        # a clean session QoS 1 would add nothing: what a
                        # reconnection loses, the retained messages and the
                        # database give back (see _drop_ended_calls).
                        await client.subscribe(topic, 0)
                    self.connected = True
                    delay = 0.5
                    if not first:
                        self.reconnects += 1
                        await self._drop_ended_calls()
                    first = False
                    # Messages are applied as they are read (see
                    # applying_queue): this waits for a disconnection.
                    async for message in client.messages:
                        self._apply_message(message)
            except aiomqtt.MqttError as error:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise asyncio.CancelledError from error
                self.connected = False
                log.warning("MQTT broker unavailable (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_delay)
            finally:
                self.connected = False

    def _apply_message(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        self.apply(
            str(message.topic),
            payload.encode() if isinstance(payload, str) else bytes(payload or b""),
        )

    def apply(self, topic: str, payload: bytes) -> None:
        """Replay one message into the broadcaster; anything unexpected is ignored."""
        parts = topic.split("/")
        prefix_length = len(self.prefix.split("/"))
        if parts[:prefix_length] != self.prefix.split("/"):
            return
        rest = parts[prefix_length:]
        if not payload:
            return  # a retained message being cleared: the final state came before it
        try:
            data = json.loads(payload)
        except ValueError:
            log.warning("ignoring a malformed MQTT message on %s", topic)
            return
        if not isinstance(data, dict):
            return
        self.received += 1
        match rest:
            case ["calls", call_id]:
                ended = data.get("state") == "ended"
                self.broadcaster.publish("call", call_id, data, present=not ended)
            case ["volunteers", volunteer_id, "status"]:
                self.broadcaster.publish("volunteer", volunteer_id, data)
            case ["volunteers", volunteer_id, "session"]:
                ended = data.get("state") == "ended"
                self.broadcaster.publish("session", volunteer_id, data, present=not ended)
            case ["campaigns", campaign_id, "counters"]:
                self.broadcaster.publish("campaign", campaign_id, data)
            case ["workers", worker, "status"]:
                self.broadcaster.publish("health", worker, data)

    async def _drop_ended_calls(self) -> None:
        if self.ended_calls is None:
            return
        shown = [event.key for event in self.broadcaster.snapshot("call")]
        if not shown:
            return
        try:
            final = await self.ended_calls(shown)
        except Exception:
            log.warning("could not check which calls ended during the outage", exc_info=True)
            return
        for call_id, payload in final.items():
            self.broadcaster.publish("call", call_id, payload, present=False)


class NotificationPublisher:
    """Each user's notifications on ``<prefix>/users/<user id>/notifications``.

    Its own connection, apart from the live state's: notifications are made
    by web processes, which may run no worker (and so no
    :class:`MqttPublisher`).  ``publish`` never blocks: messages wait in a
    bounded queue while the broker is away and go out, in order, once it is
    back; the oldest are dropped past ``backlog`` (the notification itself
    is in the database, and the in-app list shows it anyway).  QoS 1, not
    retained: the payload is an event, the web app has the list.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "dialer",
        client_name: str = "notifications",
        backlog: int = 10_000,
        reconnect_max_delay: float = 30.0,
        ca_file: str | None = None,
    ) -> None:
        self.options = parse_url(url, ca_file=ca_file)
        self.prefix = prefix.strip("/")
        self.client_name = client_name
        self.reconnect_max_delay = reconnect_max_delay
        self.connected = False
        self.published = 0
        self.dropped = 0
        self._queue: deque[tuple[int, dict[str, Any]]] = deque()
        self._backlog = backlog
        self._wakeup = asyncio.Event()

    def topic(self, user_id: int) -> str:
        return f"{self.prefix}/users/{user_id}/notifications"

    def publish(self, user_id: int, payload: dict[str, Any]) -> None:
        if len(self._queue) >= self._backlog:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append((user_id, payload))
        self._wakeup.set()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with aiomqtt.Client(
                    **self.options, identifier=f"dialer-{self.client_name}", timeout=5
                ) as client:
                    _check_still_wanted()
                    self.connected = True
                    delay = 0.5
                    while True:
                        while self._queue:
                            user_id, payload = self._queue[0]
                            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
                            await client.publish(self.topic(user_id), body, QOS, retain=False)
                            # Dropped only once the broker has it: a failure
                            # above sends it again after the reconnection.
                            if self._queue and self._queue[0] == (user_id, payload):
                                self._queue.popleft()
                            self.published += 1
                        self._wakeup.clear()
                        await self._wakeup.wait()
            except aiomqtt.MqttError as error:
                self.connected = False
                delay = await _back_off(
                    error, delay, self.reconnect_max_delay, " for notifications"
                )
            finally:
                self.connected = False
