"""The live hub's Server-Sent-Events streams over real sockets (no database).

Who sees what, that one burst of events reaches a stream in order, that a
stream whose browser stopped reading gets a snapshot instead of stalling
anyone, keep-alives, and the unchunked HTTP/1.0 form.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from dialer.domain.vocabulary import Role
from dialer.live.broadcaster import Broadcaster
from web.live.sse import LiveHub, NameBook, stream


@dataclass(frozen=True)
class Person:
    id: int
    role: Role


PEOPLE = {
    "olivia": Person(1, Role.ORGANIZER),
    "alice": Person(2, Role.VOLUNTEER),
    "bob": Person(3, Role.VOLUNTEER),
    "oscar": Person(4, Role.ORGANIZER),
    "carol": Person(5, Role.VOLUNTEER),
    "adam": Person(6, Role.ADMIN),
}
# Olivia, Alice and Bob are team 1; Oscar and Carol team 2; Adam administers all.
TEAMS = {1: 1, 2: 1, 3: 1, 4: 2, 5: 2}


class KnownDirectory:
    """The hub's directory with every name and team known up front."""

    async def scope(self, user: Person) -> frozenset[int] | None:
        return None if user.role is Role.ADMIN else frozenset({TEAMS[user.id]})


@dataclass
class Live:
    broadcaster: Broadcaster
    hub: LiveHub
    url: str
    http: aiohttp.ClientSession

    def call(self, call_id: str, volunteer: str, state: str, **extra: Any) -> None:
        payload = {"call_id": call_id, "state": state, "volunteer_id": PEOPLE[volunteer].id}
        self.broadcaster.publish("call", call_id, {**payload, **extra})

    async def open(self, who: str) -> aiohttp.ClientResponse:
        response = await self.http.get(f"{self.url}/events/{who}")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return response


async def serve_live(keepalive: float = 15.0, **hub_options: Any) -> AsyncIterator[Live]:
    broadcaster = Broadcaster()
    hub = LiveHub(broadcaster, KnownDirectory(), **hub_options)  # type: ignore[arg-type]
    # Names, teams and the roster come from the database in production; here
    # they are known up front, so the hub never asks for them.
    hub.names.users = {person.id: name.title() for name, person in PEOPLE.items()}
    hub.names.user_teams = {
        person.id: frozenset({TEAMS[person.id]}) if person.id in TEAMS else frozenset()
        for person in PEOPLE.values()
    }
    hub._roster_at = time.monotonic() + 3600

    async def events(request: web.Request) -> web.StreamResponse:
        person = PEOPLE[request.match_info["who"]]
        return await stream(request, hub, person, keepalive=keepalive)  # type: ignore[arg-type]

    app = web.Application()
    app.router.add_get("/events/{who}", events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    task = asyncio.create_task(hub.run())
    await hub.ready.wait()
    async with aiohttp.ClientSession() as http:
        yield Live(broadcaster, hub, f"http://127.0.0.1:{runner.addresses[0][1]}", http)
        hub.close_all()
    await runner.cleanup()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    async for running in serve_live():
        yield running


async def read_events(
    response: aiohttp.ClientResponse, until: Any, timeout: float = 10.0
) -> list[tuple[str, Any]]:
    """(event, data) pairs, comments as ("comment", text), until ``until(found)``."""
    found: list[tuple[str, Any]] = []
    name = ""
    async with asyncio.timeout(timeout):
        while not until(found):
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                found.append((name, json.loads(line[6:])))
            elif line.startswith(":"):
                found.append(("comment", line[1:].strip()))
    return found


def changes(found: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [(data["key"], data["payload"]["state"]) for name, data in found if name == "change"]


def count(n: int) -> Any:
    return lambda found: len(changes(found)) >= n


async def until_registered(live: Live, streams: int) -> None:
    async with asyncio.timeout(5):
        while len(live.hub.clients) < streams:
            await asyncio.sleep(0.01)


async def test_staff_see_every_call_and_volunteers_their_own(live: Live) -> None:
    olivia, alice, bob = [await live.open(who) for who in ("olivia", "alice", "bob")]
    for response in (olivia, alice, bob):
        first = await read_events(response, lambda found: len(found) >= 1)
        assert first[0][0] == "snapshot" and first[0][1]["items"] == []
        assert ("roster" in first[0][1]) == (response is olivia)
    live.call("a1", "alice", "ringing_volunteer")
    live.call("b1", "bob", "ringing_volunteer")
    live.call("a1", "alice", "talking")
    everything = await read_events(olivia, count(3))
    assert changes(everything) == [
        ("a1", "ringing_volunteer"),
        ("b1", "ringing_volunteer"),
        ("a1", "talking"),
    ]
    assert everything[0][1]["payload"]["volunteer_name"] == "Alice"
    assert changes(await read_events(alice, count(2))) == [
        ("a1", "ringing_volunteer"),
        ("a1", "talking"),
    ]
    # Bob's next line is his own call, never Alice's.
    live.call("b1", "bob", "talking")
    assert changes(await read_events(bob, count(2))) == [
        ("b1", "ringing_volunteer"),
        ("b1", "talking"),
    ]


async def test_organizers_see_their_teams_calls_and_administrators_all(live: Live) -> None:
    olivia, oscar, adam = [await live.open(who) for who in ("olivia", "oscar", "adam")]
    for response in (olivia, oscar, adam):
        await read_events(response, lambda found: len(found) >= 1)
    live.call("a1", "alice", "ringing_volunteer")
    live.call("c1", "carol", "ringing_volunteer")
    # A worker's news about its PBX is every staff member's business.
    live.broadcaster.publish("health", "pbx-1", {"status": "online", "state": "online"})
    live.call("c1", "carol", "talking")
    live.call("a1", "alice", "talking")
    assert changes(await read_events(olivia, count(3))) == [
        ("a1", "ringing_volunteer"),
        ("pbx-1", "online"),
        ("a1", "talking"),
    ]
    assert changes(await read_events(oscar, count(3))) == [
        ("c1", "ringing_volunteer"),
        ("pbx-1", "online"),
        ("c1", "talking"),
    ]
    assert changes(await read_events(adam, count(5))) == [
        ("a1", "ringing_volunteer"),
        ("c1", "ringing_volunteer"),
        ("pbx-1", "online"),
        ("c1", "talking"),
        ("a1", "talking"),
    ]
    # A stream opened now starts from a snapshot with the same walls.
    late = await live.open("oscar")
    snapshot = (await read_events(late, lambda found: len(found) >= 1))[0][1]
    assert [item["key"] for item in snapshot["items"] if item["kind"] == "call"] == ["c1"]


async def test_only_what_waits_for_names_waits(live: Live) -> None:
    looked_up = asyncio.Event()

    async def slow_fill(payloads: list[dict[str, Any]]) -> None:
        await asyncio.sleep(0.3)  # the database is slow today
        live.hub.names.contacts.update({p["contact_id"]: "Ada Lovelace" for p in payloads})
        looked_up.set()

    live.hub.names.fill = slow_fill  # type: ignore[method-assign]
    olivia = await live.open("olivia")
    await read_events(olivia, lambda found: len(found) >= 1)
    live.call("new", "alice", "requested", contact_id=7)
    live.call("known", "bob", "talking")
    live.call("new", "alice", "ringing_volunteer", contact_id=7)
    found = await read_events(olivia, count(3))
    assert changes(found) == [
        ("known", "talking"),
        ("new", "requested"),
        ("new", "ringing_volunteer"),
    ]
    assert looked_up.is_set()
    names = [data["payload"].get("contact_name") for name, data in found if name == "change"]
    assert names == [None, "Ada Lovelace", "Ada Lovelace"]
    # Once known, the names are not looked up again.
    looked_up.clear()
    live.call("new", "alice", "talking", contact_id=7)
    assert changes(await read_events(olivia, count(1))) == [("new", "talking")]
    assert not looked_up.is_set()


async def test_names_a_worker_sent_need_no_look_up(live: Live) -> None:
    asked: list[dict[str, Any]] = []

    async def fill(payloads: list[dict[str, Any]]) -> None:
        asked.extend(payloads)

    live.hub.names.fill = fill  # type: ignore[method-assign]
    olivia = await live.open("olivia")
    await read_events(olivia, lambda found: len(found) >= 1)
    named = {"contact_id": 9, "contact_name": "Grace Hopper", "volunteer_name": "Alice B."}
    live.call("c9", "alice", "requested", **named)
    # Later states of the call (from a worker that restarted, say) bring no names.
    live.call("c9", "alice", "talking", contact_id=9)
    found = await read_events(olivia, count(2))
    payloads = [data["payload"] for name, data in found if name == "change"]
    assert [(p["contact_name"], p["volunteer_name"]) for p in payloads] == [
        ("Grace Hopper", "Alice B."),
        ("Grace Hopper", "Alice B."),
    ]
    assert asked == []


async def test_a_burst_arrives_whole_and_in_order(live: Live) -> None:
    olivia = await live.open("olivia")
    await read_events(olivia, lambda found: len(found) >= 1)
    for index in range(300):
        live.call(f"c{index}", "alice", "talking" if index % 2 else "ringing_contact")
        if index % 50 == 0:
            await asyncio.sleep(0)  # some flushes in the middle of the burst
    found = await read_events(olivia, count(300))
    assert [key for key, _ in changes(found)] == [f"c{index}" for index in range(300)]
    assert [name for name, _ in found].count("snapshot") == 0


async def test_flushes_in_slices_keep_every_stream_in_order() -> None:
    # Slices of two streams: each flush is written over several loop turns,
    # and the events keep coming while it is.
    async for live in serve_live(flush_slice=2, coalesce=0.001):
        streams = [await live.open("olivia") for _ in range(7)] + [await live.open("alice")]
        for response in streams:
            await read_events(response, lambda found: len(found) >= 1)
        for index in range(200):
            live.call(f"c{index}", "alice" if index % 3 else "bob", "talking")
            if index % 7 == 0:
                await asyncio.sleep(0)
        expected = [f"c{index}" for index in range(200)]
        for response in streams[:-1]:
            found = await read_events(response, count(200))
            assert [key for key, _ in changes(found)] == expected
        alices = [key for key in expected if int(key[1:]) % 3]
        found = await read_events(streams[-1], count(len(alices)))
        assert [key for key, _ in changes(found)] == alices
        # Once all that is out, the next change still goes out, to everyone.
        live.call("last", "alice", "ended")
        for response in streams:
            assert changes(await read_events(response, count(1))) == [("last", "ended")]
        assert live.hub.snapshots_sent == 8


async def test_a_hub_that_fell_behind_sends_everyone_a_snapshot() -> None:
    async for live in serve_live(hub_backlog=10):
        olivia, alice = [await live.open(who) for who in ("olivia", "alice")]
        for response in (olivia, alice):
            await read_events(response, lambda found: len(found) >= 1)
        for index in range(50):  # all at once: the hub's subscription overflows
            live.call(f"c{index}", "alice", "talking")
        resent = lambda found: bool(found) and found[-1][0] == "snapshot"  # noqa: E731
        for response in (olivia, alice):
            found = await read_events(response, resent)
            assert [item["key"] for item in found[-1][1]["items"]] == [
                f"c{index}" for index in range(50)
            ]


async def read_past(
    reader: asyncio.StreamReader, seen: bytearray, marker: bytes, start: int = 0
) -> int:
    """Read into ``seen`` until it holds ``marker`` after ``start``; the index past it."""
    while (found := seen.find(marker, start)) < 0:
        start = max(start, len(seen) - len(marker))
        more = await reader.read(1 << 16)
        assert more, "the stream ended"
        seen += more
    return found + len(marker)


async def test_a_stream_that_stops_reading_gets_a_snapshot_and_stalls_no_one() -> None:
    async for live in serve_live(client_backlog=100):
        olivia = await live.open("olivia")
        await read_events(olivia, lambda found: len(found) >= 1)
        # A browser that reads its snapshot, then nothing: a small receive
        # window, and a reader that is never asked for more.
        host, port = live.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        writer.write(b"GET /events/alice HTTP/1.1\r\nHost: x\r\n\r\n")
        seen = bytearray()
        first = await read_past(reader, seen, b"event: snapshot\n")
        del seen[:first]
        await until_registered(live, 2)
        filler = "x" * 16_000
        for index in range(400):
            live.call(f"c{index}", "alice", "talking", filler=filler)
            await asyncio.sleep(0.001)
        # Olivia, who reads, got every change, and no snapshot in between.
        found = await read_events(olivia, count(400))
        assert len(changes(found)) == 400
        assert "snapshot" not in [name for name, _ in found]
        # Alice's browser reads again: after what was already on its way, a
        # fresh snapshot with every call, not the 400 lines.
        async with asyncio.timeout(10):
            start = await read_past(reader, seen, b"event: snapshot\ndata: ")
            end = await read_past(reader, seen, b"\n\n", start)
        snapshot = json.loads(seen[start : end - 2])
        assert [item["key"] for item in snapshot["items"]] == [f"c{i}" for i in range(400)]
        assert seen[:start].count(b"event: change") < 400
        writer.close()


async def test_an_idle_stream_gets_keep_alives_and_ends_when_the_browser_leaves() -> None:
    async for live in serve_live(keepalive=0.05):
        bob = await live.open("bob")
        found = await read_events(bob, lambda found: len(found) >= 3)
        assert [name for name, _ in found] == ["snapshot", "comment", "comment"]
        assert found[1][1] == "keep-alive"
        assert len(live.hub.clients) == 1
        bob.close()
        async with asyncio.timeout(5):
            while live.hub.clients:
                await asyncio.sleep(0.02)


async def test_an_http_1_0_browser_gets_the_stream_unchunked(live: Live) -> None:
    host, port = live.url[len("http://") :].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /events/olivia HTTP/1.0\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"chunked" not in head.lower()
    assert await reader.readuntil(b"\n\n") == b"retry: 2000\n\n"
    await reader.readuntil(b"event: snapshot\n")
    await reader.readuntil(b"\n\n")
    live.call("a1", "alice", "talking")
    event = await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)
    assert event.startswith(b"id: ") and b"event: change\ndata: " in event
    assert json.loads(event.split(b"data: ", 1)[1])["key"] == "a1"
    writer.close()


def test_the_hub_looks_teams_up_again_after_a_while() -> None:
    # A campaign moved to another team, or a membership ended, reaches the
    # panel's walls without a restart.
    book = NameBook(KnownDirectory())  # type: ignore[arg-type]
    book.user_teams[1], book.campaign_teams[2] = frozenset({1}), 1
    book.forget_stale_teams(max_age=3600)
    assert book.user_teams and book.campaign_teams
    book.forget_stale_teams(max_age=0)
    assert not book.user_teams and not book.campaign_teams
