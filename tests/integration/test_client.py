"""The AMI client against the simulator over real TCP."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from ami_bridge.client import (
    AmiActionError,
    AmiActionTimeout,
    AmiAuthenticationError,
    AmiClient,
    AmiEncodingError,
    AmiNotConnected,
    OriginateOutcomeUnknown,
    backoff_delay,
)
from ami_bridge.codec import Action, Message, encode_action
from ami_bridge.simulator import AmiSimulator, RawAmiClient
from ami_bridge.stream import ConnectionLost, Received, Resynced, StreamItem

SCALE = 0.01
SECRET = "dialer-secret"
Item = TypeVar("Item", bound=StreamItem)


def make_client(sim: AmiSimulator, **overrides: Any) -> AmiClient:
    options: dict[str, Any] = {
        "action_timeout": 1.0,
        "ping_interval": 30.0,
        "ping_timeout": 0.2,
        "reconnect_initial_delay": 0.01,
        "reconnect_max_delay": 0.05,
        "connect_timeout": 1.0,
    }
    options.update(overrides)
    secret = options.pop("secret", SECRET)
    return AmiClient("127.0.0.1", sim.port, "dialer", SecretStr(secret), **options)


class Collector:
    """Consumes the client's stream, as the tracker will, and keeps it all."""

    def __init__(self, client: AmiClient) -> None:
        self.items: list[StreamItem] = []
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._consume(client))

    async def _consume(self, client: AmiClient) -> None:
        async for item in client.stream():
            self.items.append(item)
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(
        self,
        kind: type[Item],
        predicate: Callable[[Item], bool] = lambda _: True,
        *,
        start: int = 0,
    ) -> tuple[int, Item]:
        async with asyncio.timeout(5.0), self._changed:
            while True:
                for index in range(start, len(self.items)):
                    item = self.items[index]
                    if isinstance(item, kind) and predicate(item):
                        return index, item
                await self._changed.wait()

    async def event(self, predicate: Callable[[Message], bool], *, start: int = 0) -> int:
        index, _ = await self.wait_for(Received, lambda item: predicate(item.message), start=start)
        return index

    def events(self) -> list[Message]:
        return [item.message for item in self.items if isinstance(item, Received)]

    async def finished(self) -> None:
        await asyncio.wait_for(self._task, 2.0)


def hangup_of(uniqueid: str) -> Callable[[Message], bool]:
    return lambda m: m.event == "Hangup" and m.get("Uniqueid") == uniqueid


def bridged(uniqueid: str) -> Callable[[Message], bool]:
    return lambda m: m.event == "BridgeEnter" and m.get("Uniqueid") == uniqueid


async def place_call(
    client: AmiClient,
    call: str,
    exten: str,
    *,
    volunteer: str = "1001",
    variables: dict[str, str] | None = None,
) -> Message:
    return await client.originate(
        f"PJSIP/{volunteer}",
        context="dialer-outbound",
        exten=exten,
        caller_id_name="Phone bank",
        caller_id_num="15145550000",
        timeout_ms=5000,
        channel_id=f"{call}-v",
        other_channel_id=f"{call}-o",
        variables={"DIALER_CALL_ID": call, **(variables or {})},
        action_id=call,
    )


@pytest.fixture
async def sim() -> AsyncIterator[AmiSimulator]:
    simulator = AmiSimulator(time_scale=SCALE)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def client(sim: AmiSimulator) -> AsyncIterator[AmiClient]:
    ami = make_client(sim)
    await ami.start()
    yield ami
    await ami.close()


@pytest.fixture
async def stream(client: AmiClient) -> Collector:
    return Collector(client)


@pytest.mark.parametrize(
    ("exten", "volunteer", "dial_status", "reason"),
    [
        ("15145550180", "1001", "ANSWER", "4"),
        ("15145550181", "1001", "BUSY", "4"),
        ("15145550182", "1001", "NOANSWER", "4"),
        ("15145550183", "1001", "CONGESTION", "4"),
        ("15145550185", "1001", "NOANSWER", "4"),  # rejected: 603, DIALSTATUS CHANUNAVAIL
        ("15145550186", "1001", "NOANSWER", "4"),  # unreachable: 404, cause 1
        ("15145550180", "1098", None, "3"),
        ("15145550180", "1097", None, "0"),  # busy: 486, cause 17
    ],
)
async def test_originate_each_outcome(
    client: AmiClient,
    stream: Collector,
    exten: str,
    volunteer: str,
    dial_status: str | None,
    reason: str,
) -> None:
    call = f"o{exten[-1]}{volunteer}"
    response = await place_call(
        client, call, exten, volunteer=volunteer, variables={"DIALER_RING_TIMEOUT": "2"}
    )
    assert response["Message"] == "Originate successfully queued"
    assert response.action_id == call
    await stream.event(hangup_of(f"{call}-v"))
    events = stream.events()
    outcome = next(m for m in events if m.event == "OriginateResponse")
    assert outcome.action_id == call and outcome["Reason"] == reason
    statuses = [m["DialStatus"] for m in events if m.event == "DialEnd" and "Channel" in m]
    assert statuses == ([dial_status] if dial_status else [])


async def test_an_unplugged_phone_is_refused_without_a_channel(
    client: AmiClient, stream: Collector
) -> None:
    await place_call(client, "o1099", "15145550180", volunteer="1099")
    await stream.event(lambda m: m.event == "OriginateResponse")
    [outcome] = [m for m in stream.events() if m.event == "OriginateResponse"]
    assert (outcome.action_id, outcome["Reason"], outcome["Uniqueid"]) == ("o1099", "0", "o1099-v")
    assert not [m for m in stream.events() if m.get("Linkedid") == "o1099-v"]


async def test_events_reach_the_consumer_in_wire_order(
    sim: AmiSimulator, client: AmiClient, stream: Collector
) -> None:
    raw = await RawAmiClient.connect("127.0.0.1", sim.port)
    try:
        await raw.login("dialer", SECRET)
        await place_call(client, "ord", "15145550180")
        await stream.event(hangup_of("ord-v"))
        await raw.wait_for(hangup_of("ord-v"))

        def shape(messages: list[Message]) -> list[tuple[str | None, ...]]:
            return [
                (m.event, m.get("Channel"), m.get("Variable"))
                for m in messages
                if m.get("Linkedid") == "ord-v" or m.event == "OriginateResponse"
            ]

        assert shape(stream.events()) == shape(raw.messages)
        assert len(shape(raw.messages)) > 80  # VarSet noise included
    finally:
        await raw.close()


async def test_dropped_connection_is_recovered_by_resync(
    sim: AmiSimulator, client: AmiClient, stream: Collector
) -> None:
    await place_call(client, "rs", "15145550184")  # answers and stays
    await stream.event(bridged("rs-v"))
    sim.drop_clients()
    lost, _ = await stream.wait_for(ConnectionLost)
    resynced_at, resynced = await stream.wait_for(Resynced, start=lost)
    assert client.connected and client.reconnects == 1
    assert {m["Linkedid"] for m in resynced.channels} == {"rs-v"}
    assert len(resynced.channels) == 2
    contact = next(m["Channel"] for m in resynced.channels if m["Uniqueid"] != "rs-v")
    assert await client.hangup(contact) == (contact,)
    ended = await stream.event(hangup_of("rs-v"), start=resynced_at)
    assert lost < resynced_at < ended


async def test_originate_in_flight_during_a_disconnect_is_not_resent(
    sim: AmiSimulator, client: AmiClient, stream: Collector
) -> None:
    sim.drop_on_next("Originate")  # carried out, but the response is lost
    with pytest.raises(OriginateOutcomeUnknown) as caught:
        await place_call(client, "if", "15145550184")
    assert caught.value.channel_id == "if-v"
    lost, _ = await stream.wait_for(ConnectionLost)
    _, resynced = await stream.wait_for(Resynced, start=lost)
    assert client.connected
    assert "if-v" in {m["Linkedid"] for m in resynced.channels}
    await asyncio.sleep(10 * SCALE)
    assert sim.action_counts["Originate"] == 1
    assert client.stats.originates_unknown == 1


async def test_originate_lost_before_the_pbx_saw_it_is_not_resent(
    sim: AmiSimulator, client: AmiClient, stream: Collector
) -> None:
    sim.drop_on_next("Originate", after_processing=False)
    with pytest.raises(OriginateOutcomeUnknown):
        await place_call(client, "ib", "15145550184")
    _, resynced = await stream.wait_for(Resynced, start=1)
    assert resynced.channels == ()
    await asyncio.sleep(10 * SCALE)
    assert sim.action_counts["Originate"] == 1
    assert sim.active_calls == 0


async def test_hung_ping_triggers_a_reconnect(sim: AmiSimulator) -> None:
    client = make_client(sim, ping_interval=0.05, ping_timeout=0.1)
    await client.start()
    stream = Collector(client)
    try:
        sim.stall(2.0)  # the connection stays open but nothing moves
        lost, item = await stream.wait_for(ConnectionLost)
        assert item.reason == "ping timeout"
        await stream.wait_for(Resynced, start=lost)
        assert client.stats.ping_timeouts == 1
        assert client.reconnects == 1
        assert (await client.ping())["Ping"] == "Pong"
    finally:
        await client.close()


async def test_wrong_secret_is_a_clear_typed_error(
    sim: AmiSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(sim, secret="not-the-secret")
    with pytest.raises(AmiAuthenticationError, match="refused: Authentication failed"):
        await client.start()
    assert isinstance(client.error, AmiAuthenticationError)
    with pytest.raises(AmiAuthenticationError):
        await client.ping()
    stream = Collector(client)
    await stream.finished()  # the stream ends rather than hanging
    assert sim.action_counts["Login"] == 1  # no retry loop on a wrong secret
    assert "not-the-secret" not in caplog.text
    await client.close()


async def test_secrets_never_reach_the_logs(
    sim: AmiSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(sim)
    await client.start()
    stream = Collector(client)
    await place_call(client, "lg", "15145550180")
    sim.drop_clients()
    await stream.wait_for(Resynced, start=2)
    await client.close()
    assert SECRET not in caplog.text
    assert SECRET not in repr(client)
    assert "logged in" in caplog.text


async def test_least_privilege_user_without_fully_booted() -> None:
    sim = AmiSimulator(time_scale=SCALE, least_privilege=True)
    await sim.start()
    client = make_client(sim)
    try:
        await client.start()
        stream = Collector(client)
        await place_call(client, "lp", "15145550180")
        await stream.event(hangup_of("lp-v"))
        names = {m.event for m in stream.events()}
        assert "FullyBooted" not in names and "VarSet" not in names
        with pytest.raises(AmiActionError, match="Permission denied"):
            await client.send_list(Action.build("Command", {"Command": "core show channels"}))
        refused = await client.send(Action.build("Command", {"Command": "core show channels"}))
        assert refused["Message"] == "Permission denied"
    finally:
        await client.close()
        await sim.stop()


async def test_restart_is_seen_and_recovered(
    sim: AmiSimulator, client: AmiClient, stream: Collector
) -> None:
    await place_call(client, "rt", "15145550184", variables={"DIALER_TRUNK": "local"})
    await stream.event(bridged("rt-v"))
    await sim.restart()
    shutdown = await stream.event(lambda m: m.event == "Shutdown")
    assert shutdown > await stream.event(hangup_of("rt-v"))
    lost, _ = await stream.wait_for(ConnectionLost, start=shutdown)
    _, resynced = await stream.wait_for(Resynced, start=lost)
    assert resynced.channels == ()


async def test_reconnects_with_backoff_while_the_pbx_is_down(
    sim: AmiSimulator, client: AmiClient, stream: Collector
) -> None:
    await sim.crash(down_for=0.3)
    lost, _ = await stream.wait_for(ConnectionLost)
    with pytest.raises(AmiNotConnected):
        await client.ping()
    await client.wait_connected()
    assert client.reconnects == 1
    assert (await client.ping())["Ping"] == "Pong"
    await stream.wait_for(Resynced, start=lost)


async def test_garbage_from_the_pbx_is_dropped(
    sim: AmiSimulator, client: AmiClient, stream: Collector
) -> None:
    sim.send_garbage()
    assert (await client.ping())["Ping"] == "Pong"
    assert client.stats.unparsable_messages >= 1
    assert all(m.event for m in stream.events())


async def test_action_timeouts_and_the_in_flight_bound(sim: AmiSimulator) -> None:
    client = make_client(sim, action_timeout=0.2, max_in_flight=1)
    await client.start()
    try:
        sim.stall(0.6)
        first, second = await asyncio.gather(client.ping(), client.ping(), return_exceptions=True)
        assert isinstance(first, AmiActionTimeout) and first.sent
        assert isinstance(second, AmiActionTimeout) and not second.sent
        assert sim.action_counts["Ping"] == 0  # still unread: the PBX is stalled
    finally:
        await client.close()


async def test_not_started_and_closed_clients_refuse_actions(sim: AmiSimulator) -> None:
    client = make_client(sim)
    with pytest.raises(AmiNotConnected):
        await client.ping()
    await client.start()
    stream = Collector(client)
    await client.close()
    await stream.finished()
    assert isinstance(stream.items[-1], ConnectionLost)
    assert stream.items[-1].reason == "client closed"
    with pytest.raises(AmiNotConnected):
        await client.ping()
    assert sim.action_counts["Logoff"] == 1


def test_backoff_is_exponential_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, initial=0.5, maximum=30.0, rng=rng) for n in range(12)]
    for attempt, delay in enumerate(delays):
        step = min(30.0, 0.5 * 2**attempt)
        assert step / 2 <= delay <= step
    assert max(delays) <= 30.0
    assert len(set(delays)) == len(delays)


# -- injection: refused before a byte reaches the socket --------------------------

FORBIDDEN = st.sampled_from(["\r", "\n", "\0", "\r\n"])
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=12)


@st.composite
def tainted(draw: st.DrawFn, extra: st.SearchStrategy[str] = FORBIDDEN) -> str:
    before, after = draw(TEXT), draw(TEXT)
    return before + draw(extra) + after


@pytest_asyncio.fixture(scope="module")
async def quiet_pbx() -> AsyncIterator[tuple[AmiSimulator, AmiClient]]:
    simulator = AmiSimulator(time_scale=SCALE)
    await simulator.start()
    ami = make_client(simulator)
    await ami.start()
    yield simulator, ami
    await ami.close()
    await simulator.stop()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    field=st.sampled_from(
        ["exten", "context", "channel", "caller_id_name", "channel_id", "variable", "action_id"]
    ),
    data=st.data(),
)
async def test_injection_is_refused_before_anything_is_written(
    quiet_pbx: tuple[AmiSimulator, AmiClient], field: str, data: st.DataObject
) -> None:
    sim, client = quiet_pbx
    if field == "variable":
        value = data.draw(tainted(st.sampled_from(["\r", "\n", "\0", ","])))
    elif field == "caller_id_name":
        value = data.draw(tainted(st.sampled_from(["\r", "\n", "\0", '"', "<"])))
    else:
        value = data.draw(tainted())
    arguments: dict[str, Any] = {
        "context": "dialer-outbound",
        "exten": "15145550184",
        "caller_id_name": "Phone bank",
        "caller_id_num": "15145550000",
        "channel_id": "inj-v",
        "variables": {"DIALER_CALL_ID": "inj"},
        "action_id": None,
    }
    channel = "PJSIP/1001"
    if field == "channel":
        channel = value
    elif field == "variable":
        arguments["variables"] = {"DIALER_CALL_ID": value}
    else:
        arguments[field] = value
    bytes_before, actions_before = sim.bytes_received, len(sim.actions)

    with pytest.raises(AmiEncodingError):
        await client.originate(channel, **arguments)

    # A Ping behind it proves the socket carried nothing else: TCP keeps order.
    await client.ping()
    arrived = list(sim.actions)[actions_before:]
    assert [m.action for m in arrived] == ["Ping"]
    ping = encode_action(Action("Ping", action_id=arrived[0].action_id))
    assert sim.bytes_received - bytes_before == len(ping)
