"""Live call state for browsers: one hub, many Server-Sent-Events streams.

One task subscribes to the runtime's broadcaster, adds the names people
need (volunteer, contact, campaign) to each event, encodes it once, and
hands the bytes to every connected stream that may see it.  Streams never
block the hub: each has a bounded backlog, and a stream that falls behind
(or a hub whose own subscription overflowed) gets a fresh snapshot instead
of the events it missed.

Volunteers receive only their own calls and status; organizers and
admins receive everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.access import STAFF_ROLES
from dialer.accounts import online_user_ids
from dialer.domain import Role
from dialer.live import Broadcaster, LiveEvent
from dialer.models import Campaign, Contact, User, utcnow

log = logging.getLogger(__name__)


@dataclass(eq=False)
class StreamClient:
    user_id: int
    staff: bool
    backlog: int
    _items: deque[bytes] = field(default_factory=deque)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    needs_snapshot: bool = False
    closed: bool = False

    def offer(self, data: bytes) -> None:
        if self.needs_snapshot:
            return
        if len(self._items) >= self.backlog:
            self._items.clear()
            self.needs_snapshot = True
        else:
            self._items.append(data)
        self._wakeup.set()

    def resync(self) -> None:
        self._items.clear()
        self.needs_snapshot = True
        self._wakeup.set()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    async def next_batch(self, wait: float) -> list[bytes] | None:
        """Pending lines, [] on keep-alive timeout, None when a snapshot is due."""
        if not self._items and not self.needs_snapshot and not self.closed:
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)
        if self.needs_snapshot:
            self.needs_snapshot = False
            return None
        batch = list(self._items)
        self._items.clear()
        return batch


def encode(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    return ("\n".join(lines) + "\n\n").encode()


class NameBook:
    """Display names by id, loaded on demand and kept (they rarely change)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.users: dict[int, str] = {}
        self.contacts: dict[int, str] = {}
        self.campaigns: dict[int, str] = {}

    async def fill(self, payloads: list[dict[str, Any]]) -> None:
        users = {p.get("volunteer_id") for p in payloads} - self.users.keys() - {None}
        contacts = {p.get("contact_id") for p in payloads} - self.contacts.keys() - {None}
        campaigns = {p.get("campaign_id") for p in payloads} - self.campaigns.keys() - {None}
        if not (users or contacts or campaigns):
            return
        async with self.sessions() as session:
            if users:
                for user_id, display, username in await session.execute(
                    select(User.id, User.display_name, User.username).where(User.id.in_(users))
                ):
                    self.users[user_id] = display or username
            if contacts:
                for contact_id, first, last in await session.execute(
                    select(Contact.id, Contact.first_name, Contact.last_name).where(
                        Contact.id.in_(contacts)
                    )
                ):
                    self.contacts[contact_id] = f"{first} {last}".strip()
            if campaigns:
                for campaign_id, title in await session.execute(
                    select(Campaign.id, Campaign.title).where(Campaign.id.in_(campaigns))
                ):
                    self.campaigns[campaign_id] = title

    def enrich(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        enriched = dict(payload)
        volunteer_id = payload.get("volunteer_id")
        if volunteer_id is not None:
            enriched["volunteer_name"] = self.users.get(volunteer_id, "")
        if kind == "call":
            contact_id = payload.get("contact_id")
            if not enriched.get("contact_name") and contact_id is not None:
                enriched["contact_name"] = self.contacts.get(contact_id, "")
            campaign_id = payload.get("campaign_id")
            enriched["campaign_title"] = (
                self.campaigns.get(campaign_id, "") if campaign_id is not None else ""
            )
        return enriched


@dataclass(frozen=True, slots=True)
class _Item:
    kind: str
    key: str
    present: bool
    seq: int
    payload: dict[str, Any]
    owner: int | None

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
        sessions: async_sessionmaker[AsyncSession],
        *,
        client_backlog: int = 500,
        hub_backlog: int = 20_000,
    ) -> None:
        self.broadcaster = broadcaster
        self.sessions = sessions
        self.names = NameBook(sessions)
        self.client_backlog = client_backlog
        self.hub_backlog = hub_backlog
        self.clients: set[StreamClient] = set()
        self.state: dict[tuple[str, str], _Item] = {}
        self._roster: list[dict[str, Any]] = []
        self._roster_at = 0.0
        self.ready = asyncio.Event()
        self.events_seen = 0
        self.snapshots_sent = 0

    # -- the hub task ----------------------------------------------------------

    async def run(self) -> None:
        subscription = self.broadcaster.subscribe(maxsize=self.hub_backlog)
        try:
            await self._reload()
            self.ready.set()
            while True:
                event = await subscription.get()
                if subscription.overflowed:
                    subscription.overflowed = False
                    await self._reload()
                    for client in list(self.clients):
                        client.resync()
                    continue
                try:
                    await self._accept(event)
                except Exception:
                    log.exception("live hub: could not forward event %s", event.key)
        finally:
            self.broadcaster.unsubscribe(subscription)
            for client in list(self.clients):
                client.close()

    async def _reload(self) -> None:
        events = self.broadcaster.snapshot()
        await self._safe_fill([event.payload for event in events])
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
        )

    async def _accept(self, event: LiveEvent) -> None:
        self.events_seen += 1
        await self._safe_fill([event.payload])
        item = self._item(event)
        if event.present:
            self.state[(event.kind, event.key)] = item
        else:
            self.state.pop((event.kind, event.key), None)
        data = encode("change", item.public(), item.seq)
        for client in self.clients:
            if client.staff or (item.owner is not None and item.owner == client.user_id):
                client.offer(data)

    # -- streams -----------------------------------------------------------------

    def register(self, user: User, *, backlog: int | None = None) -> StreamClient:
        client = StreamClient(user.id, user.role in STAFF_ROLES, backlog or self.client_backlog)
        self.clients.add(client)
        return client

    def unregister(self, client: StreamClient) -> None:
        self.clients.discard(client)
        client.close()

    def close_all(self) -> None:
        for client in list(self.clients):
            client.close()

    async def roster(self, max_age: float = 5.0) -> list[dict[str, Any]]:
        """Every active volunteer with whether they are signed in (cached briefly)."""
        if time.monotonic() - self._roster_at < max_age:
            return self._roster
        try:
            online = await online_user_ids(self.sessions, since=utcnow() - timedelta(minutes=10))
            async with self.sessions() as session:
                rows = await session.execute(
                    select(User.id, User.display_name, User.username, User.sip_extension)
                    .where(User.is_active.is_(True), User.role == Role.VOLUNTEER)
                    .order_by(User.display_name, User.username)
                )
                self._roster = [
                    {
                        "volunteer_id": user_id,
                        "volunteer_name": display or username,
                        "extension": extension,
                        "online": user_id in online,
                    }
                    for user_id, display, username, extension in rows
                ]
            self._roster_at = time.monotonic()
        except Exception:
            log.warning("live hub: could not load the volunteer roster", exc_info=True)
        return self._roster

    async def snapshot_for(self, client: StreamClient) -> dict[str, Any]:
        items = sorted(self.state.values(), key=lambda item: item.seq)
        if not client.staff:
            items = [item for item in items if item.owner == client.user_id]
        snapshot: dict[str, Any] = {
            "now": utcnow().isoformat(),
            "items": [item.public() for item in items],
        }
        if client.staff:
            snapshot["roster"] = await self.roster()
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
    await response.prepare(request)
    client = hub.register(user)
    try:
        await hub.ready.wait()
        await response.write(
            b"retry: 2000\n\n" + encode("snapshot", await hub.snapshot_for(client))
        )
        while not client.closed:
            batch = await client.next_batch(keepalive)
            if client.closed:
                break
            if batch is None:
                await response.write(encode("snapshot", await hub.snapshot_for(client)))
            elif batch:
                await response.write(b"".join(batch))
            else:
                await response.write(b": keep-alive\n\n")
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
