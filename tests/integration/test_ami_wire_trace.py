"""The AMI wire trace of real calls through the simulator over TCP, replayed."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from ami_bridge.client import AmiClient
from ami_bridge.codec import Decoder
from ami_bridge.simulator import AmiSimulator
from ami_bridge.stream import ConnectionLost, Resynced, StreamItem
from ami_bridge.tools.replay import (
    HangupSent,
    OriginateSent,
    ReplayStep,
    call_summary,
    main_replay,
    replay,
    run,
)
from ami_bridge.tools.transcript import parse_transcript
from ami_bridge.tracker import CallTracker, CallUpdate

SCALE = 0.01
SECRET = "trace-test-secret-9f2c"
TIMES = ("ring_seconds", "talk_seconds")


@pytest.fixture
async def sim() -> AsyncIterator[AmiSimulator]:
    simulator = AmiSimulator(time_scale=SCALE, secret=SECRET)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def real_time_sim() -> AsyncIterator[AmiSimulator]:
    # Replay estimates the time between two connections from the channel
    # ages (Duration) a resync lists, which a sped-up simulator inflates.
    simulator = AmiSimulator(time_scale=1.0, secret=SECRET)
    await simulator.start()
    yield simulator
    await simulator.stop()


def traced_client(
    sim: AmiSimulator, trace_file: Path | str, *, ping_interval: float = 30.0
) -> AmiClient:
    return AmiClient(
        "127.0.0.1",
        sim.port,
        "dialer",
        SecretStr(SECRET),
        action_timeout=1.0,
        ping_interval=ping_interval,
        ping_timeout=0.1,
        reconnect_initial_delay=0.01,
        reconnect_max_delay=0.05,
        connect_timeout=1.0,
        trace_file=trace_file,
    )


class Live:
    """What the worker sees, applied to a tracker as it happens: the calls it
    registers and hangs up, and every stream item, in order."""

    def __init__(self, client: AmiClient) -> None:
        self.tracker = CallTracker()
        self.calls: dict[str, CallUpdate] = {}
        self.items: list[StreamItem] = []
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._consume(client))

    def apply(self, step: ReplayStep) -> None:
        self.calls.update(run([step], self.tracker))

    async def _consume(self, client: AmiClient) -> None:
        async for item in client.stream():
            self.items.append(item)
            self.apply(item)
            async with self._changed:
                self._changed.notify_all()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(5.0), self._changed:
            await self._changed.wait_for(predicate)

    def resynced_after_a_loss(self) -> Resynced | None:
        lost = [i for i, item in enumerate(self.items) if isinstance(item, ConnectionLost)]
        if not lost:
            return None
        after = (item for item in self.items[lost[0] :] if isinstance(item, Resynced))
        return next(after, None)

    def state(self, call_id: str) -> str | None:
        call = self.calls.get(call_id)
        return call.state.value if call is not None else None

    async def originate(self, client: AmiClient, call_id: str, number: str) -> None:
        # A call registered before the login's Resynced is consumed would
        # be missing from that listing, hence lost.
        await self.until(lambda: any(isinstance(item, Resynced) for item in self.items))
        self.apply(
            OriginateSent(call_id, call_id, "PJSIP/1001", number, datetime.now(UTC)),
        )
        await client.originate(
            "PJSIP/1001",
            context="dialer-outbound",
            exten=number,
            timeout_ms=5000,
            channel_id=f"{call_id}-v",
            other_channel_id=f"{call_id}-o",
            variables={"DIALER_CALL_ID": call_id},
            action_id=call_id,
        )

    async def hangup(self, client: AmiClient, channel: str) -> None:
        self.apply(HangupSent(channel, datetime.now(UTC)))
        await client.hangup(channel)


def assert_same_outcome(
    replayed: dict[str, object], live: CallUpdate, *, seconds: float = 0.01
) -> None:
    expected = call_summary(live)
    assert {k: v for k, v in replayed.items() if k not in TIMES} == {
        k: v for k, v in expected.items() if k not in TIMES
    }
    for key in TIMES:
        got, want = replayed[key], expected[key]
        if want is None:
            assert got is None, key
        else:
            assert isinstance(got, float) and isinstance(want, float)
            assert got == pytest.approx(want, abs=seconds), key


def traces(directory: Path, pattern: str = "ami-*.ami") -> list[Path]:
    """The trace files in ``directory``, in connection order (tiny: read in the loop)."""
    return sorted(directory.glob(pattern))


def assert_whole_messages(data: bytes) -> None:
    """Every frame of a trace is one whole AMI message (or the banner, or a note)."""
    first_server = True
    for frame in parse_transcript(data):
        if frame.note is not None:
            continue
        decoder = Decoder(expect_banner=frame.direction == "server" and first_server)
        if frame.direction == "server":
            first_server = False
        assert len(decoder.feed(frame.data)) == 1, frame
        assert decoder.pending == 0, frame


async def test_a_traced_call_replays_to_the_same_outcome(sim: AmiSimulator, tmp_path: Path) -> None:
    client = traced_client(sim, tmp_path / "ami.ami")
    await client.start()
    live = Live(client)
    try:
        await live.originate(client, "tr1", "15145550180")  # answers, hangs up after 4 s
        await live.until(lambda: live.state("tr1") == "ended")
    finally:
        await client.close()

    [path] = traces(tmp_path)
    data = path.read_bytes()
    assert data.startswith(b"<<< t=0.000\nAsterisk Call Manager/")
    assert SECRET.encode() not in data
    assert b"\r\nSecret: ********\r\n" in data
    assert_whole_messages(data)
    assert data.count(b"Event: VarSet\r\n") > 10  # every byte, noise included

    [replayed] = replay(path)
    assert replayed["outcome"] == "completed"
    assert_same_outcome(replayed, live.calls["tr1"])


async def test_a_reconnect_writes_a_second_file_and_the_session_replays(
    real_time_sim: AmiSimulator, tmp_path: Path
) -> None:
    sim = real_time_sim
    client = traced_client(sim, tmp_path)  # a directory
    await client.start()
    live = Live(client)
    try:
        await live.originate(client, "tr2", "15145550184")  # answers and stays
        await live.until(lambda: live.state("tr2") == "talking")
        sim.drop_clients()
        await live.until(lambda: live.resynced_after_a_loss() is not None)
        resynced = live.resynced_after_a_loss()
        assert resynced is not None
        contact = next(m["Channel"] for m in resynced.channels if m["Uniqueid"] != "tr2-v")
        await live.hangup(client, contact)
        await live.until(lambda: live.state("tr2") == "ended")
    finally:
        await client.close()

    first, second = traces(tmp_path)
    lost = parse_transcript(first.read_bytes())[-1]
    assert (lost.direction, lost.note) == ("server", "closed_by_server")
    for path in (first, second):
        data = path.read_bytes()
        assert SECRET.encode() not in data
        assert_whole_messages(data)

    out = io.StringIO()
    assert main_replay([str(first), str(second)], out) == 0
    [replayed] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (replayed["outcome"], replayed["hangup_requested_by"]) == (
        "hung_up_by_operator",
        "operator",
    )
    # The files do not say how long the client was away between them:
    # replay estimates the gap, so talk time may differ by about that much.
    assert_same_outcome(replayed, live.calls["tr2"], seconds=0.1)


async def test_a_connection_the_client_drops_ends_with_the_client_note(
    sim: AmiSimulator, tmp_path: Path
) -> None:
    client = traced_client(sim, tmp_path, ping_interval=0.05)
    await client.start()
    live = Live(client)
    try:
        sim.stall(1.0)  # the Ping goes unanswered
        await live.until(lambda: live.resynced_after_a_loss() is not None)
    finally:
        await client.close()
    first, second = traces(tmp_path)
    frames = parse_transcript(first.read_bytes())
    assert frames[-2].data.startswith(b"Action: Ping\r\n")
    assert (frames[-1].direction, frames[-1].note) == ("client", "dropped_by_client")
    assert second.read_bytes().startswith(b"<<< t=0.000\nAsterisk Call Manager/")


async def test_the_trace_is_readable_while_the_connection_lasts(
    sim: AmiSimulator, tmp_path: Path
) -> None:
    client = traced_client(sim, tmp_path / "live.ami")
    await client.start()
    try:
        [path] = traces(tmp_path, "live-*.ami")
        async with asyncio.timeout(3.0):
            while b"Action: CoreShowChannels\r\n" not in path.read_bytes():
                await asyncio.sleep(0.05)
        assert (await client.ping())["Ping"] == "Pong"
    finally:
        await client.close()
    frames = parse_transcript(path.read_bytes())
    assert frames[-1].data.startswith(b"Response: Goodbye\r\n") or frames[-1].note


async def test_an_unwritable_trace_is_one_error_line_and_the_calls_go_on(
    sim: AmiSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = traced_client(sim, tmp_path / "no-such-directory" / "ami.ami")
    with caplog.at_level(logging.INFO):
        await client.start()
        live = Live(client)
        try:
            sim.drop_clients()
            await live.until(lambda: live.resynced_after_a_loss() is not None)
            await live.originate(client, "tr3", "15145550181")  # busy
            await live.until(lambda: live.state("tr3") == "ended")
        finally:
            await client.close()
    assert client.reconnects == 1
    errors = [r.getMessage() for r in caplog.records if r.name == "ami_bridge.wiretrace"]
    assert len(errors) == 1
    assert "no-such-directory" in errors[0] and "No such file or directory" in errors[0]
    assert traces(tmp_path, "*") == []
