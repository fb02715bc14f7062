"""In-process live state: the broadcaster the web layer subscribes to.

Publishing never blocks and never fails: a subscriber that cannot keep up
loses its oldest events and is told so (``overflowed``), so it can reload
a snapshot instead of stalling the worker that publishes.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["call", "volunteer", "session", "campaign", "health"]


@dataclass(frozen=True, slots=True)
class LiveEvent:
    kind: EventKind
    key: str
    payload: dict[str, Any]
    # False when the thing is gone (a call that ended): snapshots drop it.
    present: bool = True
    seq: int = 0


@dataclass(eq=False)
class Subscription:
    maxsize: int
    _events: deque[LiveEvent] = field(default_factory=deque)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False
    closed: bool = False

    def _offer(self, event: LiveEvent) -> None:
        if len(self._events) >= self.maxsize:
            self._events.popleft()
            self.overflowed = True
        self._events.append(event)
        self._wakeup.set()

    async def get(self) -> LiveEvent:
        while not self._events:
            if self.closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._events.popleft()

    def take(self, limit: int) -> list[LiveEvent]:
        """Up to ``limit`` events already waiting, without waiting for more."""
        events = self._events
        return [events.popleft() for _ in range(min(limit, len(events)))]

    def __aiter__(self) -> AsyncIterator[LiveEvent]:
        return self

    async def __anext__(self) -> LiveEvent:
        return await self.get()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()


class Broadcaster:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._state: dict[tuple[str, str], LiveEvent] = {}
        self._seq = itertools.count(1)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(
        self, kind: EventKind, key: str, payload: dict[str, Any], *, present: bool = True
    ) -> LiveEvent:
        event = LiveEvent(kind, key, payload, present, next(self._seq))
        if present:
            self._state[(kind, key)] = event
        else:
            self._state.pop((kind, key), None)
        for subscriber in self._subscribers:
            subscriber._offer(event)
        return event

    def current(self, kind: EventKind, key: str) -> LiveEvent | None:
        """The latest event of one thing, while it is present."""
        return self._state.get((kind, key))

    def snapshot(self, kind: EventKind | None = None) -> list[LiveEvent]:
        events = [event for (k, _), event in self._state.items() if kind is None or k == kind]
        return sorted(events, key=lambda event: event.seq)

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        subscription = Subscription(maxsize)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
        subscription.close()
