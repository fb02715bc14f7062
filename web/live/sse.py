"""Live call state for browsers: one hub, many Server-Sent-Events streams.

One task subscribes to the runtime's broadcaster, adds the names people
need (volunteer, contact, campaign) to each event, encodes it once, and
hands the bytes to every connected stream that may see it.  Streams never
block the hub: each has a bounded backlog, and a stream that falls behind
(or a hub whose own subscription overflowed) gets a fresh snapshot instead
of the events it missed.

Volunteers receive only their own calls, status and power session;
organizers receive their teams' (a power session follows its volunteer's
teams), administrators everything.

Fan-out cost is per write, not per byte: the events accepted since the
last flush go out together, joined once for all staff streams and once
per volunteer, and written straight to each stream's connection (one
``transport.write``) while its own task is idle.  The pause between
flushes grows with their cost, so that with hundreds of streams flushing
takes a bounded share of the event loop the worker also runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import HttpVersion11, web

from dialer.live.broadcaster import Broadcaster, LiveEvent, Subscription
from dialer.services.directory import Directory
from dialer.store.access import STAFF_ROLES
from dialer.store.models import User, utcnow

log = logging.getLogger(__name__)


class Chunk:
    """Encoded events that go out together: one write per stream.

    The same object goes to every stream that may see all of it (every staff
    stream, or every stream of one volunteer), so the bytes and their
    chunked-transfer framing are built once, not once per stream.
    """

    __slots__ = ("data", "events", "framed")

    def __init__(self, data: bytes, events: int) -> None:
        self.data = data
        self.events = events
        self.framed = b"%x\r\n%b\r\n" % (len(data), data)


class StreamClient:
    """One browser's stream: written by the hub directly while it keeps up.

    While the stream's own task is idle, the hub writes each flush straight
    to the connection (one ``transport.write``, no task switch).  The task
    writes snapshots and keep-alives; while it does, or while the
    connection's send buffer is over ``max_buffer`` (the browser stopped
    reading), flushes queue up, and a stream more than ``backlog`` events
    behind gets a snapshot instead of them.
    """

    def __init__(
        self,
        user_id: int,
        staff: bool,
        backlog: int,
        max_buffer: int = 256 * 1024,
        teams: frozenset[int] | None = None,
    ):
        self.user_id = user_id
        self.staff = staff
        # A staff stream sees the things of these teams (None: of every team).
        self.teams = teams
        self.backlog = backlog
        self.max_buffer = max_buffer
        self.needs_snapshot = False
        self.closed = False
        self.written_at = 0.0
        self._queue: list[bytes] = []
        self._queued = 0  # events in _queue
        self._transport: asyncio.Transport | None = None
        self._chunked = False
        self._direct = False
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, chunk: Chunk) -> None:
        if self.closed or self.needs_snapshot:
            return
        if chunk.events > self.backlog:
            # More at once than a stream may fall behind by: a snapshot says it in less.
            self.resync()
            return
        transport = self._transport
        if self._direct and transport is not None:
            if transport.is_closing():
                self.close()
                return
            if transport.get_write_buffer_size() <= self.max_buffer:
                transport.write(chunk.framed if self._chunked else chunk.data)
                self.written_at = time.monotonic()
                return
            # The browser is not reading: queue, and let the task wait for it.
            self._direct = False
        if self._queued + chunk.events > self.backlog:
            self.resync()
            return
        self._queue.append(chunk.data)
        self._queued += chunk.events
        self._wake()

    def resync(self) -> None:
        self._queue.clear()
        self._queued = 0
        self.needs_snapshot = True
        self._direct = False
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._direct = False
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _take(self) -> bytes:
        data = b"".join(self._queue)
        self._queue.clear()
        self._queued = 0
        return data

    async def serve(
        self, hub: LiveHub, request: web.Request, response: web.StreamResponse, keepalive: float
    ) -> None:
        """Write to ``response`` until the stream closes: the stream's own task."""
        self._transport = request.transport
        self._chunked = response.chunked
        loop = asyncio.get_running_loop()
        first = True
        while not self.closed:
            if first or self.needs_snapshot:
                await self._until_drained()
                if self.closed:
                    break
                # The snapshot holds everything the hub accepted so far (it is
                # taken before its first await once the hub has caught up):
                # what the hub has not flushed yet goes to the other streams
                # now, not to this one after it.
                await hub.caught_up()
                self.needs_snapshot = True
                hub.flush_now()
                self.needs_snapshot = False
                self._queue.clear()
                self._queued = 0
                data = encode("snapshot", await hub.snapshot_for(self))
                await self._write(response, b"retry: 2000\n\n" + data if first else data)
                first = False
                continue
            if self._queue:
                await self._until_drained()
                if not self.closed and not self.needs_snapshot and self._queue:
                    await self._write(response, self._take())
                continue
            idle = time.monotonic() - self.written_at
            if idle >= keepalive:
                await self._write(response, b": keep-alive\n\n")
                continue
            # Idle: the hub writes directly until something needs this task.
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(keepalive - idle, _resolve, waiter)
            self._direct = self._transport is not None and not response.compression
            try:
                await waiter
            finally:
                self._direct = False
                self._waiter = None
                timer.cancel()

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        await response.write(data)
        self.written_at = time.monotonic()

    async def _until_drained(self) -> None:
        transport = self._transport
        while (
            transport is not None
            and not self.closed
            and transport.get_write_buffer_size() > self.max_buffer
        ):
            if transport.is_closing():
                self.close()
                return
            await asyncio.sleep(0.05)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def encode(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    return ("\n".join(lines) + "\n\n").encode()


# How long the live hub trusts what it knows of teams (see NameBook.forget_stale_teams).
TEAMS_MAX_AGE = 30.0


class NameBook:
    """Display names by id, loaded on demand and kept (they rarely change)."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.users: dict[int, str] = {}
        self.contacts: dict[int, str] = {}
        self.campaigns: dict[int, str] = {}
        self.user_teams: dict[int, frozenset[int]] = {}
        self.campaign_teams: dict[int, int | None] = {}
        self._teams_since = time.monotonic()

    def forget_stale_teams(self, max_age: float = TEAMS_MAX_AGE) -> None:
        """Names rarely change, but teams do (a campaign moved, a membership
        ended): who sees what is looked up again every ``max_age`` seconds."""
        now = time.monotonic()
        if now - self._teams_since >= max_age:
            self.user_teams.clear()
            self.campaign_teams.clear()
            self._teams_since = now

    def learn(self, payload: dict[str, Any]) -> None:
        """Keep the names a payload brings (a worker sends them with the calls it dials)."""
        for id_field, name_field, cache in (
            ("volunteer_id", "volunteer_name", self.users),
            ("contact_id", "contact_name", self.contacts),
        ):
            key, name = payload.get(id_field), payload.get(name_field)
            if isinstance(key, int) and isinstance(name, str) and name:
                cache[key] = name

    def missing(self, payload: dict[str, Any]) -> bool:
        """Whether ``payload`` names someone or something not looked up yet."""
        volunteer_id = payload.get("volunteer_id")
        contact_id = payload.get("contact_id")
        campaign_id = payload.get("campaign_id")
        # Teams decide which organizers see a thing: known with the name, or looked up.
        return (
            (volunteer_id is not None and volunteer_id not in self.user_teams)
            or (contact_id is not None and contact_id not in self.contacts)
            or (campaign_id is not None and campaign_id not in self.campaign_teams)
        )

    async def fill(self, payloads: list[dict[str, Any]]) -> None:
        users = _unknown(payloads, "volunteer_id", self.user_teams)
        contacts = _unknown(payloads, "contact_id", self.contacts)
        campaigns = _unknown(payloads, "campaign_id", self.campaign_teams)
        if not (users or contacts or campaigns):
            return
        found = await self.directory.names(users=users, contacts=contacts, campaigns=campaigns)
        # An id the database does not know has no name: not worth asking again.
        for cache, asked, known in (
            (self.users, users, found.users),
            (self.contacts, contacts, found.contacts),
            (self.campaigns, campaigns, found.campaigns),
        ):
            cache.update(dict.fromkeys(asked, ""))
            cache.update(known)
        self.user_teams.update(dict.fromkeys(users, frozenset()))
        self.user_teams.update(found.user_teams)
        self.campaign_teams.update(dict.fromkeys(campaigns))
        self.campaign_teams.update(found.campaign_teams)

    def teams_for(self, kind: str, subject: dict[str, Any]) -> frozenset[int] | None:
        """The teams whose organizers see a thing; None: every staff member (PBX health).

        A call belongs to its campaign's team, or else to its volunteer's
        teams; a volunteer's status to their teams; counters to the campaign's team.
        """
        campaign_id = subject.get("campaign_id")
        volunteer_id = subject.get("volunteer_id")
        if kind in ("call", "campaign") and isinstance(campaign_id, int):
            team_id = self.campaign_teams.get(campaign_id)
            return frozenset() if team_id is None else frozenset((team_id,))
        if kind in ("call", "volunteer", "session") and isinstance(volunteer_id, int):
            return self.user_teams.get(volunteer_id, frozenset())
        if kind in ("call", "volunteer", "session", "campaign"):
            return frozenset()
        return None

    def enrich(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        enriched = dict(payload)
        volunteer_id = payload.get("volunteer_id")
        if volunteer_id is not None:
            enriched["volunteer_name"] = self.users.get(volunteer_id, "")
        if kind == "call":
            contact_id = payload.get("contact_id")
            if not enriched.get("contact_name") and contact_id is not None:
                enriched["contact_name"] = self.contacts.get(contact_id, "")
        if kind in ("call", "session"):
            campaign_id = payload.get("campaign_id")
            enriched["campaign_title"] = (
                self.campaigns.get(campaign_id, "") if campaign_id is not None else ""
            )
        return enriched


def _subject(event: LiveEvent) -> dict[str, Any]:
    """The payload, with the campaign a counters event is about (it is the key there)."""
    if event.kind == "campaign" and event.key.isdecimal():
        return {**event.payload, "campaign_id": int(event.key)}
    return event.payload


def _unknown(payloads: list[dict[str, Any]], field: str, known: Mapping[int, object]) -> set[int]:
    return {
        value for payload in payloads if (value := payload.get(field)) is not None
    } - known.keys()


@dataclass(frozen=True, slots=True)
class _Item:
    kind: str
    key: str
    present: bool
    seq: int
    payload: dict[str, Any]
    owner: int | None
    # The teams whose organizers see it (None: all staff); administrators see all.
    teams: frozenset[int] | None

    def seen_by(self, teams: frozenset[int] | None) -> bool:
        return teams is None or self.teams is None or not teams.isdisjoint(self.teams)

    def public(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "present": self.present,
            "seq": self.seq,
            "payload": self.payload,
        }


class LiveHub:
    def __init__(
        self,
        broadcaster: Broadcaster,
        directory: Directory,
        *,
        client_backlog: int = 500,
        hub_backlog: int = 20_000,
        client_buffer: int = 256 * 1024,
        coalesce: float = 0.01,
        write_share: float = 0.2,
        flush_slice: int = 50,
    ) -> None:
        self.broadcaster = broadcaster
        self.directory = directory
        self.names = NameBook(directory)
        self.client_backlog = client_backlog
        self.hub_backlog = hub_backlog
        # Bytes a connection may hold unsent before its stream counts as behind.
        self.client_buffer = client_buffer
        # Events accepted within ``coalesce`` seconds of the last flush go out
        # together: one write per stream per flush, however many events.  With
        # many streams a flush takes a while (a send per stream), and the gap
        # grows so that flushing takes at most ``write_share`` of the loop's
        # time: the worker that produces the events shares this loop.
        self.coalesce = coalesce
        self.write_share = write_share
        self.flush_slice = flush_slice
        self._gap = coalesce
        self.clients: set[StreamClient] = set()
        # Administrators' streams (everything), organizers' by their teams,
        # and volunteers' by user.
        self._staff: set[StreamClient] = set()
        self._scoped: dict[frozenset[int], set[StreamClient]] = {}
        self._volunteers: dict[int, set[StreamClient]] = {}
        # Encoded events not flushed yet: all of them for administrators,
        # their teams' for each set of organizers, and each volunteer's own.
        self._out: list[bytes] = []
        self._out_by_scope: dict[frozenset[int], list[bytes]] = {}
        self._out_by_owner: dict[int, list[bytes]] = {}
        self._roster_teams: dict[int, frozenset[int]] = {}
        # The next flush, or the next slice of the one being written.
        self._flush_at: asyncio.TimerHandle | asyncio.Handle | None = None
        self._flushed_at = 0.0
        self._jobs: list[tuple[StreamClient, Chunk]] | None = None
        self._done = 0
        self._flush_cpu = 0.0
        self.state: dict[tuple[str, str], _Item] = {}
        self._roster: list[dict[str, Any]] = []
        self._roster_at = 0.0
        self.ready = asyncio.Event()
        # Set while the hub waits for events: it has taken in all there are.
        self._idle = asyncio.Event()
        self._waiting = False
        self._pumping = True
        self._inbox: deque[LiveEvent] = deque()
        # Events waiting for names, by thing (with the look-up round they
        # wait for), and the payloads of the next round.
        self._held: dict[tuple[str, str], tuple[int, list[LiveEvent]]] = {}
        self._lookups: list[dict[str, Any]] = []
        self._next_round = 0
        self._lookup: asyncio.Task[None] | None = None
        self.events_seen = 0
        self.snapshots_sent = 0

    # -- the hub task ----------------------------------------------------------

    async def run(self) -> None:
        subscription = self.broadcaster.subscribe(maxsize=self.hub_backlog)
        inbox = self._inbox
        arrived = asyncio.Event()
        pump = asyncio.create_task(self._pump(subscription, arrived), name="live-pump")
        try:
            await self._reload()
            self.ready.set()
            while True:
                if not inbox:
                    arrived.clear()
                    self._waiting = True
                    self._check_idle()
                    await arrived.wait()
                    self._waiting = False
                    self._idle.clear()
                if subscription.overflowed:
                    subscription.overflowed = False
                    inbox.clear()
                    self._held.clear()
                    self._lookups.clear()
                    await self._reload()
                    for client in list(self.clients):
                        client.resync()
                    continue
                while inbox:
                    self._take(inbox.popleft())
        finally:
            for task in (pump, self._lookup):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await task
            self.broadcaster.unsubscribe(subscription)
            for client in list(self.clients):
                client.close()

    async def _pump(self, subscription: Subscription, arrived: asyncio.Event) -> None:
        """Move events from the broadcaster into the hub's inbox as they come."""
        inbox = self._inbox
        while True:
            self._pumping = False
            self._check_idle()
            event = await subscription.get()
            self._pumping = True
            self._idle.clear()
            if len(inbox) >= self.hub_backlog:
                # The hub is that far behind: it reloads, as when the
                # subscription itself overflows.
                inbox.popleft()
                subscription.overflowed = True
            inbox.append(event)
            arrived.set()

    def _check_idle(self) -> None:
        # Idle: the pump waits on an empty subscription, the hub on an empty
        # inbox, and no event waits for names.
        if self._waiting and not self._pumping and not self._inbox and not self._held:
            self._idle.set()

    def _take(self, event: LiveEvent) -> None:
        """Accept ``event`` now, or once the names it needs are looked up.

        Only the thing whose names are missing waits (a call just started),
        with the events about it that follow; everything else goes on: a
        database round trip does not hold up the whole panel.
        """
        key = (event.kind, event.key)
        held = self._held.get(key)
        if held is not None:
            held[1].append(event)
            return
        subject = _subject(event)
        self.names.forget_stale_teams()
        self.names.learn(subject)
        if self.names.missing(subject):
            self._held[key] = (self._next_round, [event])
            self._lookups.append(subject)
            if self._lookup is None:
                self._lookup = asyncio.create_task(self._look_up(), name="live-names")
            return
        self._accept_logged(event)

    async def _look_up(self) -> None:
        """Look names up, in one round trip for all that are missing, until none are."""
        try:
            while self._lookups:
                done = self._next_round
                self._next_round += 1
                payloads, self._lookups = self._lookups, []
                await self._safe_fill(payloads)
                # What waited for this round goes out now, in order; the
                # names may still be blank if the database could not say.
                for key, (wanted, events) in list(self._held.items()):
                    if wanted <= done:
                        del self._held[key]
                        for event in events:
                            self._accept_logged(event)
        finally:
            self._lookup = None
            self._check_idle()

    def _accept_logged(self, event: LiveEvent) -> None:
        try:
            self._accept(event)
        except Exception:
            log.exception("live hub: could not forward event %s", event.key)

    async def _reload(self) -> None:
        events = self.broadcaster.snapshot()
        await self._safe_fill([_subject(event) for event in events])
        self.state = {(e.kind, e.key): self._item(e) for e in events}

    async def _safe_fill(self, payloads: list[dict[str, Any]]) -> None:
        try:
            await self.names.fill(payloads)
        except Exception:
            # Names are a nicety: the state itself must go out even when the
            # database is briefly away.
            log.warning("live hub: could not load names", exc_info=True)

    def _item(self, event: LiveEvent) -> _Item:
        owner = event.payload.get("volunteer_id")
        return _Item(
            event.kind,
            event.key,
            event.present,
            event.seq,
            self.names.enrich(event.kind, event.payload),
            owner if isinstance(owner, int) else None,
            self.names.teams_for(event.kind, _subject(event)),
        )

    def _accept(self, event: LiveEvent) -> None:
        self.events_seen += 1
        item = self._item(event)
        if event.present:
            self.state[(event.kind, event.key)] = item
        else:
            self.state.pop((event.kind, event.key), None)
        data = encode("change", item.public(), item.seq)
        self._out.append(data)
        for scope in self._scoped:
            if item.seen_by(scope):
                self._out_by_scope.setdefault(scope, []).append(data)
        if item.owner is not None and item.owner in self._volunteers:
            self._out_by_owner.setdefault(item.owner, []).append(data)
        if self._flush_at is None:
            self._schedule_flush()

    def flush_now(self) -> None:
        """Send what is pending at once (before a stream takes its snapshot)."""
        while self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
            if self._jobs is None:
                self._start_flush()
            self._write_slices(whole=True)

    def _flush(self) -> None:
        self._flush_at = None
        self._start_flush()
        self._write_slices()

    def _start_flush(self) -> None:
        out, self._out = self._out, []
        by_scope, self._out_by_scope = self._out_by_scope, {}
        by_owner, self._out_by_owner = self._out_by_owner, {}
        jobs: list[tuple[StreamClient, Chunk]] = []
        if out and self._staff:
            chunk = Chunk(b"".join(out), len(out))
            jobs.extend((client, chunk) for client in self._staff)
        for scope, lines in by_scope.items():
            scoped = self._scoped.get(scope)
            if scoped:
                chunk = Chunk(b"".join(lines), len(lines))
                jobs.extend((client, chunk) for client in scoped)
        for owner, lines in by_owner.items():
            streams = self._volunteers.get(owner)
            if streams:
                chunk = Chunk(b"".join(lines), len(lines))
                jobs.extend((client, chunk) for client in streams)
        self._jobs = jobs
        self._done = 0
        self._flush_cpu = 0.0

    def _write_slices(self, *, whole: bool = False) -> None:
        """Write a slice of the current flush; the rest after the loop's other callbacks.

        A flush to hundreds of streams takes milliseconds; in slices, the
        worker and the hub's own task get the loop in between.  The next
        flush waits for this one, so each stream still gets them in order.
        """
        self._flush_at = None
        jobs = self._jobs
        assert jobs is not None
        started = time.thread_time()
        end = len(jobs) if whole else min(len(jobs), self._done + self.flush_slice)
        for client, chunk in jobs[self._done : end]:
            try:
                client.offer(chunk)
            except Exception:
                # One broken stream must not cost the others their events.
                log.exception("live hub: could not write to a stream")
                client.close()
        self._done = end
        # CPU time, not wall time: a flush the OS interrupted did not cost
        # this loop the time it was away.
        self._flush_cpu += time.thread_time() - started
        loop = asyncio.get_running_loop()
        if end < len(jobs):
            self._flush_at = loop.call_soon(self._write_slices)
            return
        self._jobs = None
        self._flushed_at = loop.time()
        self._gap = max(self.coalesce, self._flush_cpu * (1 - self.write_share) / self.write_share)
        if self._out or self._out_by_scope or self._out_by_owner:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        loop = asyncio.get_running_loop()
        at = self._flushed_at + self._gap
        # call_soon still lets the rest of a burst (the hub takes in all
        # that has arrived before it yields) join this flush.
        self._flush_at = (
            loop.call_soon(self._flush) if at <= loop.time() else loop.call_at(at, self._flush)
        )

    # -- streams -----------------------------------------------------------------

    async def join(self, user: User) -> StreamClient:
        """Register a stream for ``user``, limited to their teams' things if an organizer."""
        teams = await self.directory.scope(user) if user.role in STAFF_ROLES else None
        return self.register(user, teams=teams)

    def register(
        self, user: User, *, backlog: int | None = None, teams: frozenset[int] | None = None
    ) -> StreamClient:
        """A stream for ``user``; a staff stream sees ``teams``' things (None: everything)."""
        client = StreamClient(
            user.id,
            user.role in STAFF_ROLES,
            backlog or self.client_backlog,
            self.client_buffer,
            teams,
        )
        self.clients.add(client)
        if client.staff and teams is not None:
            self._scoped.setdefault(teams, set()).add(client)
        elif client.staff:
            self._staff.add(client)
        else:
            self._volunteers.setdefault(client.user_id, set()).add(client)
        return client

    def unregister(self, client: StreamClient) -> None:
        self.clients.discard(client)
        self._staff.discard(client)
        if client.teams is not None:
            scoped = self._scoped.get(client.teams)
            if scoped is not None:
                scoped.discard(client)
                if not scoped:
                    del self._scoped[client.teams]
        streams = self._volunteers.get(client.user_id)
        if streams is not None:
            streams.discard(client)
            if not streams:
                del self._volunteers[client.user_id]
        client.close()

    def close_all(self) -> None:
        for client in list(self.clients):
            client.close()

    async def roster(self, max_age: float = 5.0) -> list[dict[str, Any]]:
        """Every active volunteer with whether they are signed in (cached briefly)."""
        if time.monotonic() - self._roster_at < max_age:
            return self._roster
        try:
            roster = await self.directory.roster(online_since=utcnow() - timedelta(minutes=10))
            self._roster = [
                {
                    "volunteer_id": person.volunteer_id,
                    "volunteer_name": person.volunteer_name,
                    "extension": person.extension,
                    "online": person.online,
                }
                for person in roster
            ]
            self._roster_teams = {person.volunteer_id: person.teams for person in roster}
            # The roster names every volunteer and their teams: a call they
            # start needs no look-up for them.
            for person in roster:
                self.names.users.setdefault(person.volunteer_id, person.volunteer_name)
                self.names.user_teams[person.volunteer_id] = person.teams
            self._roster_at = time.monotonic()
        except Exception:
            log.warning("live hub: could not load the volunteer roster", exc_info=True)
        return self._roster

    async def caught_up(self) -> None:
        """Wait (a second at most) until the hub has taken in every event published."""
        if self._idle.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                while not self._idle.is_set():
                    await self._idle.wait()

    async def snapshot_for(self, client: StreamClient) -> dict[str, Any]:
        # A call someone has just started is in the snapshot they ask for next.
        await self.caught_up()
        items = sorted(self.state.values(), key=lambda item: item.seq)
        if not client.staff:
            items = [item for item in items if item.owner == client.user_id]
        elif client.teams is not None:
            items = [item for item in items if item.seen_by(client.teams)]
        snapshot: dict[str, Any] = {
            "now": utcnow().isoformat(),
            "items": [item.public() for item in items],
        }
        if client.staff:
            roster = await self.roster()
            if client.teams is not None:
                teams = client.teams
                roster = [
                    person
                    for person in roster
                    if not teams.isdisjoint(self._roster_teams.get(person["volunteer_id"], ()))
                ]
            snapshot["roster"] = roster
        self.snapshots_sent += 1
        return snapshot


async def stream(
    request: web.Request, hub: LiveHub, user: User, *, keepalive: float
) -> web.StreamResponse:
    """Serve one Server-Sent-Events stream until the client goes away."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    if request.version >= HttpVersion11:
        # The hub frames its writes itself: say so rather than rely on a default.
        response.enable_chunked_encoding()
    # Before the headers go out: a database blip here is still a clean 503.
    client = await hub.join(user)
    try:
        await response.prepare(request)
        await hub.ready.wait()
        await client.serve(hub, request, response, keepalive)
    except ConnectionResetError:
        pass  # the browser went away; its next reconnect gets a snapshot
    finally:
        hub.unregister(client)
    return response


async def run_hub(hub: LiveHub) -> AsyncIterator[None]:
    """For ``cleanup_ctx``: the hub runs for as long as the app."""
    task = asyncio.create_task(hub.run(), name="live-hub")
    yield
    hub.close_all()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
