"""A cancellation that aiomqtt's connect swallows still stops the MQTT loops.

On Python 3.11, ``asyncio.wait_for`` (which aiomqtt's connect awaits) drops
a cancellation that arrives as the awaited future completes; the task still
counts it.  A worker that failed at start-up then waited forever for its
MQTT publisher to stop, and a test hung twice on it.  The stand-in client
below swallows the cancellation the same way, every time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from dialer.live import mqtt
from dialer.live.broadcaster import Broadcaster


class SwallowingClient:
    """Connects as aiomqtt does when wait_for loses the cancellation."""

    entered = 0

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        self.pending_calls_threshold = 0
        self.messages: Any = None
        # paho's client, as far as dialer.live.mqtt.read_every_waiting_packet
        # reaches into it.
        self._client = SimpleNamespace(loop_read=lambda max_packets=1: 0, socket=lambda: None)

    async def __aenter__(self) -> SwallowingClient:
        SwallowingClient.entered += 1
        # The connection completed meanwhile: wait_for returns its result.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.5)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def publish(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    async def subscribe(self, *_args: Any, **_kwargs: Any) -> None:
        return None


LOOPS: dict[str, Callable[[], Any]] = {
    "publisher": lambda: mqtt.MqttPublisher(Broadcaster(), "mqtt://127.0.0.1:1883").run(),
    "live feed": lambda: mqtt.MqttLiveFeed(Broadcaster(), "mqtt://127.0.0.1:1883").run(),
    "notifications": lambda: mqtt.NotificationPublisher("mqtt://127.0.0.1:1883").run(),
}


@pytest.mark.parametrize("loop", list(LOOPS))
async def test_a_swallowed_cancellation_still_stops_the_loop(
    loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt.aiomqtt, "Client", SwallowingClient)
    # Counted per test: a count left by the case before would let this one
    # cancel its loop before it ever connects, and prove nothing.
    monkeypatch.setattr(SwallowingClient, "entered", 0)
    task = asyncio.create_task(LOOPS[loop]())
    while SwallowingClient.entered == 0:
        # A loop that died before connecting would leave this waiting for ever.
        assert not task.done(), task
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait({task}, timeout=3)
    stopped = task.done()
    task.cancel()  # a second time: lets a loop that did not stop end the test
    assert stopped and task.cancelled()
