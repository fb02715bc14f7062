"""Live state on a real Mosquitto: topics and payloads as docs/mqtt.md says,
and a broker outage that neither blocks calls nor leaves stale state."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiomqtt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator
from dialer.domain.vocabulary import CallState
from dialer.live.broadcaster import Broadcaster
from dialer.live.mqtt import MqttPublisher, parse_url, read_every_waiting_packet
from tests.integration.pbx_harness import running_worker
from tests.integration.world import build_world
from tests.support.tcp_proxy import TcpProxy

Sessions = async_sessionmaker[AsyncSession]

BROKER = ("127.0.0.1", 1883)


class Watcher:
    """A subscriber that keeps the latest payload per topic (None: cleared)."""

    def __init__(self) -> None:
        self.latest: dict[str, object] = {}
        self.seen: list[tuple[str, object, bool]] = []

    async def wait_for(self, topic: str, check: object, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while self.latest.get(topic, "<missing>") != check:
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def watching(prefix: str) -> AsyncIterator[Watcher]:
    watcher = Watcher()
    async with aiomqtt.Client(*BROKER) as client:
        await client.subscribe(f"{prefix}/#", qos=1)

        async def read() -> None:
            async for message in client.messages:
                raw = bytes(message.payload) if message.payload is not None else b""
                value = json.loads(raw) if raw else None
                watcher.latest[str(message.topic)] = value
                watcher.seen.append((str(message.topic), value, bool(message.retain)))

        task = asyncio.create_task(read())
        try:
            yield watcher
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def publishing(
    broadcaster: Broadcaster, port: int, prefix: str
) -> AsyncIterator[MqttPublisher]:
    publisher = MqttPublisher(
        broadcaster,
        f"mqtt://127.0.0.1:{port}",
        prefix=prefix,
        worker_name="w1",
        reconnect_max_delay=0.2,
    )
    task = asyncio.create_task(publisher.run())
    try:
        async with asyncio.timeout(5):
            while not publisher.connected:
                await asyncio.sleep(0.02)
        yield publisher
    finally:
        task.cancel()
        # Bounded: a publisher that ignores cancellation fails the test
        # instead of hanging the suite.
        done, _ = await asyncio.wait({task}, timeout=15)
        assert task in done, "the publisher kept running after it was cancelled"


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def test_url_parsing() -> None:
    assert parse_url("mqtt://broker") == {"hostname": "broker", "port": 1883}
    secure = parse_url("mqtts://ops%40org:p%3Ass@broker.example:9883")
    assert (secure["hostname"], secure["port"], secure["username"], secure["password"]) == (
        "broker.example",
        9883,
        "ops@org",
        "p:ss",
    )
    assert secure["tls_context"] is not None
    with pytest.raises(ValueError, match="must start with mqtt:// or mqtts://"):
        parse_url("http://broker")


async def test_topics_and_payloads(prefix: str) -> None:
    broadcaster = Broadcaster()
    async with watching(prefix) as watcher, publishing(broadcaster, BROKER[1], prefix):
        await watcher.wait_for(f"{prefix}/workers/w1/status", {"status": "online"})
        broadcaster.publish("call", "c1", {"call_id": "c1", "state": "talking"})
        broadcaster.publish("volunteer", "7", {"volunteer_id": 7, "status": "on_call"})
        broadcaster.publish("campaign", "3", {"campaign_id": 3, "dials": 10, "reached": 4})
        await watcher.wait_for(f"{prefix}/calls/c1", {"call_id": "c1", "state": "talking"})
        await watcher.wait_for(
            f"{prefix}/volunteers/7/status", {"volunteer_id": 7, "status": "on_call"}
        )
        await watcher.wait_for(
            f"{prefix}/campaigns/3/counters", {"campaign_id": 3, "dials": 10, "reached": 4}
        )
        broadcaster.publish(
            "call", "c1", {"call_id": "c1", "state": "ended", "outcome": "completed"}, present=False
        )
        await watcher.wait_for(f"{prefix}/calls/c1", None)  # cleared
        final = [value for topic, value, _ in watcher.seen if topic == f"{prefix}/calls/c1"]
        assert {"call_id": "c1", "state": "ended", "outcome": "completed"} in final
    # A newcomer sees what is live now, and no trace of the ended call.
    async with watching(prefix) as late:
        await late.wait_for(
            f"{prefix}/volunteers/7/status", {"volunteer_id": 7, "status": "on_call"}
        )
        await asyncio.sleep(0.2)
        assert f"{prefix}/calls/c1" not in late.latest
        # The publisher is gone: its will says so.
        assert late.latest[f"{prefix}/workers/w1/status"] == {"status": "offline"}
    await _clear(prefix, late)


async def test_a_burst_goes_out_whole_and_in_order(prefix: str) -> None:
    """More events at once than publishes in flight: each one is sent, in order per topic."""
    broadcaster = Broadcaster()
    states = ("ringing_volunteer", "dialing_contact", "talking")
    async with watching(prefix) as watcher, publishing(broadcaster, BROKER[1], prefix) as publisher:
        assert publisher.max_in_flight < 300 * len(states)
        for state in states:
            for n in range(300):
                broadcaster.publish("call", f"c{n}", {"call_id": f"c{n}", "state": state})
        for n in range(300):
            await watcher.wait_for(f"{prefix}/calls/c{n}", {"call_id": f"c{n}", "state": "talking"})
        for n in (0, 150, 299):
            seen = [v for topic, v, _ in watcher.seen if topic == f"{prefix}/calls/c{n}"]
            assert [v["state"] for v in seen if isinstance(v, dict)] == list(states)
    await _clear(prefix, watcher)


@pytest.mark.parametrize("patched", [False, True])
async def test_a_subscriber_reads_every_waiting_message(prefix: str, patched: bool) -> None:
    """paho reads one packet per wake-up for a client that only subscribes; patched, all."""
    client = aiomqtt.Client(*BROKER)
    if patched:
        read_every_waiting_packet(client)
    async with client:
        await client.subscribe(f"{prefix}/burst", qos=0)
        # Published by another process while this loop is blocked, so the
        # whole burst waits in the subscriber's socket; then one wake-up reads.
        subprocess.run(  # noqa: ASYNC221
            [sys.executable, "-c", BURST, f"{prefix}/burst"], check=True, timeout=30
        )
        time.sleep(0.3)  # noqa: ASYNC251
        client._client.loop_read()
        assert len(client.messages) == (50 if patched else 1)


BURST = """
import sys
import paho.mqtt.client as paho
client = paho.Client(paho.CallbackAPIVersion.VERSION2)
client.connect("127.0.0.1", 1883)
client.loop_start()
for n in range(50):
    client.publish(sys.argv[1], str(n), qos=1).wait_for_publish(5)
client.loop_stop()
client.disconnect()
"""


async def test_broker_outage_blocks_nothing_and_state_is_republished(prefix: str) -> None:
    broadcaster = Broadcaster()
    proxy = TcpProxy(*BROKER)
    await proxy.start()
    try:
        async with (
            watching(prefix) as watcher,
            publishing(broadcaster, proxy.port, prefix) as publisher,
        ):
            broadcaster.publish("call", "c1", {"call_id": "c1", "state": "talking"})
            await watcher.wait_for(f"{prefix}/calls/c1", {"call_id": "c1", "state": "talking"})
            proxy.cut()
            # Calls go on while the broker is away: publishing never blocks.
            broadcaster.publish("call", "c1", {"call_id": "c1", "state": "ended"}, present=False)
            broadcaster.publish("call", "c2", {"call_id": "c2", "state": "ringing_volunteer"})
            await asyncio.sleep(0.3)
            assert watcher.latest[f"{prefix}/calls/c1"] == {"call_id": "c1", "state": "talking"}
            proxy.restore()
            # An unacknowledged publish times out (5 s) before the reconnect.
            await watcher.wait_for(
                f"{prefix}/calls/c2", {"call_id": "c2", "state": "ringing_volunteer"}, within=20
            )
            await watcher.wait_for(f"{prefix}/calls/c1", None)
            assert publisher.reconnects >= 1
        await _clear(prefix, watcher)
    finally:
        await proxy.stop()


async def _clear(prefix: str, watcher: Watcher) -> None:
    # Leave the shared broker as we found it.
    async with aiomqtt.Client(*BROKER) as client:
        for topic in {topic for topic, *_ in watcher.seen}:
            await client.publish(topic, b"", qos=1, retain=True)


async def test_the_publisher_stops_when_cancelled_even_with_the_broker_gone(prefix: str) -> None:
    proxy = TcpProxy(*BROKER)
    await proxy.start()
    try:
        publisher = MqttPublisher(
            Broadcaster(), f"mqtt://127.0.0.1:{proxy.port}", prefix=prefix, reconnect_max_delay=0.2
        )
        task = asyncio.create_task(publisher.run())
        async with asyncio.timeout(5):
            while not publisher.connected:
                await asyncio.sleep(0.02)
        proxy.cut()  # the disconnect on the way out cannot be acknowledged
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=15)
        assert task in done, "the publisher kept running after it was cancelled"
    finally:
        await proxy.stop()
        async with aiomqtt.Client(*BROKER) as client:
            await client.publish(f"{prefix}/workers/default/status", b"", qos=1, retain=True)


def documented_fields(topic: str) -> set[str]:
    """The payload fields docs/mqtt.md lists for ``topic`` (its table row)."""
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 3 and cells[1] == f"`dialer/{topic}`":
            # Field names are the backticked words not followed by "(" values.
            return set(re.findall(r"`([a-z_]+)`", cells[3])) - VALUES
    raise AssertionError(f"docs/mqtt.md has no row for {topic}")


DOC = Path(__file__).parents[2] / "docs" / "mqtt.md"
# Backticked words in the payload column that are values, not field names.
VALUES = {
    "online",
    "offline",
    "connected",
    "disconnected",
    "pbx_unavailable",
    "requested",
    "ringing_volunteer",
    "volunteer_answered",
    "ringing_contact",
    "talking",
    "ended",
    "ringing",
    "on_call",
    "wrap_up",
    "idle",
    "refused",
    "absent",
    "answered",
    "call_back_later",
    "wrong_number",
    "other",
}


async def test_a_real_call_publishes_the_documented_payloads(
    sessions: Sessions, simulator: AmiSimulator, prefix: str
) -> None:
    world = await build_world(sessions)
    async with running_worker(world, simulator) as harness:
        async with (
            watching(prefix) as watcher,
            publishing(harness.service.broadcaster, BROKER[1], prefix),
        ):
            call_id = await harness.call("paris")  # ...0: answers, then hangs up
            await harness.wait_for(call_id, CallState.ENDED)
            await watcher.wait_for(f"{prefix}/calls/{call_id}", None)  # cleared at the end
            await asyncio.sleep(1.5)  # campaign counters follow within a second
        calls = [v for t, v, _ in watcher.seen if t == f"{prefix}/calls/{call_id}" and v]
        assert [payload["state"] for payload in calls][-1] == "ended"  # type: ignore[index]
        documented = documented_fields("calls/<call id>")
        for payload in calls:
            assert isinstance(payload, dict)
            # The request, published when the worker claims it, has no PBX
            # event behind it yet.
            optional = {"event_at"} if payload["state"] == "requested" else set()
            assert documented - optional <= set(payload) <= documented, payload["state"]
        volunteer_topic = f"{prefix}/volunteers/{world.users['alice']}/status"
        statuses = [v for t, v, _ in watcher.seen if t == volunteer_topic and v]
        assert statuses and all(
            set(s) == documented_fields("volunteers/<user id>/status")  # type: ignore[arg-type]
            for s in statuses
        )
        counters = [
            v
            for t, v, _ in watcher.seen
            if t == f"{prefix}/campaigns/{world.campaign_id}/counters" and v
        ]
        assert counters, "no campaign counters published"
        link = [v for t, v, _ in watcher.seen if t == f"{prefix}/workers/default/status" and v]
        assert {"status": "online", "ami": "connected"} in link
        assert all(
            set(v) <= documented_fields("workers/<DIALER_PBX_NAME>/status")  # type: ignore[arg-type]
            for v in link
        )
        assert set(counters[-1]) == documented_fields(  # type: ignore[arg-type]
            "campaigns/<campaign id>/counters"
        )
        await _clear(prefix, watcher)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates_and_passwords(directory: Path, password: str) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=test CA",
        cwd=directory,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=directory,
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        cwd=directory,
    )
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(directory / "passwd"), "dialer", password],
        check=True,
        capture_output=True,
    )


@contextlib.asynccontextmanager
async def tls_broker(directory: Path, password: str) -> AsyncIterator[int]:
    """A private Mosquitto with TLS (its own CA) and a password file."""
    await asyncio.to_thread(_certificates_and_passwords, directory, password)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    (directory / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\n"
        f"cafile {directory / 'ca.pem'}\n"
        f"certfile {directory / 'server.pem'}\n"
        f"keyfile {directory / 'server.key'}\n"
        "allow_anonymous false\n"
        f"password_file {directory / 'passwd'}\n"
        # Started as root, Mosquitto would drop to a user that cannot read these.
        f"user {getpass.getuser()}\n"
    )
    process = await asyncio.create_subprocess_exec(
        "mosquitto",
        "-c",
        str(directory / "mosquitto.conf"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        yield port
    finally:
        process.kill()
        await process.wait()


async def test_tls_with_a_private_ca_and_a_password(tmp_path: Path, prefix: str) -> None:
    password = "s3cret:@/x"  # characters that must be %-encoded in the URL
    async with tls_broker(tmp_path, password) as port:
        url = f"mqtts://dialer:{quote(password, safe='')}@127.0.0.1:{port}"
        ca = str(tmp_path / "ca.pem")
        broadcaster = Broadcaster()
        publisher = MqttPublisher(
            broadcaster, url, prefix=prefix, reconnect_max_delay=0.2, ca_file=ca
        )
        task = asyncio.create_task(publisher.run())
        try:
            async with asyncio.timeout(10):
                while not publisher.connected:
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # The wrong password, or the system's CAs instead of ours: no connection.
        for bad in (
            MqttPublisher(broadcaster, url.replace("s3cret", "wrong"), ca_file=ca),
            MqttPublisher(broadcaster, url),
        ):
            task = asyncio.create_task(bad.run())
            async with asyncio.timeout(10):
                while bad.publish_failures == 0:
                    await asyncio.sleep(0.02)
            assert not bad.connected
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    with pytest.raises(ValueError, match="needs an mqtts:// URL"):
        parse_url("mqtt://broker", ca_file=ca)
