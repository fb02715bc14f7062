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
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from dialer.live import Broadcaster, LiveEvent, Subscription

log = logging.getLogger(__name__)

QOS = 1
OFFLINE = json.dumps({"status": "offline"})


class MqttSettingsError(ValueError):
    pass


def parse_url(url: str) -> dict[str, Any]:
    """``mqtt://user:pass@host:1883`` or ``mqtts://...:8883`` -> aiomqtt.Client options."""
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
        options["tls_context"] = ssl.create_default_context()
    return options


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
    ) -> None:
        self.broadcaster = broadcaster
        self.options = parse_url(url)
        self.prefix = prefix.strip("/")
        self.worker_name = worker_name
        self.reconnect_max_delay = reconnect_max_delay
        self.backlog = backlog
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
        if event.kind == "campaign":
            return f"{self.prefix}/campaigns/{event.key}/counters"
        return f"{self.prefix}/health/{event.key}"

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
                        identifier=f"dialer-{self.worker_name}",
                        will=will,
                        timeout=5,
                    ) as client:
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
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        # aiomqtt's exit can turn our cancellation into an
                        # MqttError (a disconnect that timed out): stop anyway.
                        raise asyncio.CancelledError from error
                    if self.connected:
                        self.reconnects += 1
                    self.connected = False
                    self.publish_failures += 1
                    log.warning("MQTT broker unavailable (%s); retrying in %.1fs", error, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.reconnect_max_delay)
        finally:
            self.connected = False
            self.broadcaster.unsubscribe(subscription)

    async def _forward(self, client: aiomqtt.Client, subscription: Subscription) -> None:
        await self._publish_state(client)
        while True:
            event = await subscription.get()
            if subscription.overflowed:
                # Changes were dropped while we were slow: the snapshot says
                # where things are now.
                subscription.overflowed = False
                await self._publish_state(client)
                continue
            await self._publish(client, event)

    async def _publish_state(self, client: aiomqtt.Client) -> None:
        await client.publish(self.health_topic, json.dumps({"status": "online"}), QOS, True)
        snapshot = self.broadcaster.snapshot()
        current = {self.topic(event) for event in snapshot}
        for stale in sorted(self._retained - current):
            await client.publish(stale, b"", QOS, retain=True)
            self._retained.discard(stale)
        for event in snapshot:
            await self._publish(client, event)

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
