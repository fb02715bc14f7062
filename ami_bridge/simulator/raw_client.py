"""A bare AMI client for tests and benchmarks, with none of the product
client's reconnects or routing: it sends actions through the real encoder
(or raw bytes), keeps every message it receives in arrival order, and
waits for the one a test expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable

from ami_bridge.codec import Action, Decoder, Message, encode_action


class RawAmiClient:
    """A bare AMI connection for tests and benchmarks: no reconnects, no
    routing, every message kept in arrival order in ``messages``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = Decoder()
        self.banner: str | None = None
        self.messages: list[Message] = []
        self.closed = asyncio.Event()
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, host: str, port: int) -> RawAmiClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while data := await self._reader.read(65536):
                for message in self._decoder.feed(data):
                    if message.is_banner:
                        self.banner = message.banner
                    else:
                        self.messages.append(message)
                async with self._changed:
                    self._changed.notify_all()
        except ConnectionError:
            pass
        finally:
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()

    def send(self, action: Action) -> str:
        """Write ``action`` (through the encoder); returns its ActionID."""
        if action.action_id is None:
            action = Action(action.name, action.headers, action.variables, f"t{next(self._ids)}")
        self._writer.write(encode_action(action))
        assert action.action_id is not None
        return action.action_id

    def send_bytes(self, data: bytes) -> None:
        self._writer.write(data)

    async def wait_for(
        self,
        predicate: Callable[[Message], bool],
        *,
        start: int = 0,
        within: float = 5.0,
    ) -> Message:
        """The first message from index ``start`` on that satisfies ``predicate``."""
        async with asyncio.timeout(within), self._changed:
            while True:
                for message in self.messages[start:]:
                    if predicate(message):
                        return message
                if self.closed.is_set():
                    raise ConnectionError("connection closed while waiting")
                await self._changed.wait()

    async def wait_until(self, condition: Callable[[], bool], *, within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._changed:
            while not condition():
                if self.closed.is_set():
                    raise ConnectionError("connection closed while waiting")
                await self._changed.wait()

    async def request(self, action: Action, *, within: float = 5.0) -> Message:
        """Send ``action`` and return its response (not the list that may follow)."""
        start = len(self.messages)
        action_id = self.send(action)
        return await self.wait_for(
            lambda m: m.response is not None and m.event is None and m.action_id == action_id,
            start=start,
            within=within,
        )

    async def request_list(self, action: Action, *, within: float = 5.0) -> list[Message]:
        """Send a list action; return the response, the items and the Complete event."""
        start = len(self.messages)
        action_id = self.send(action)
        await self.wait_for(
            lambda m: (
                m.action_id == action_id
                and (m.get("EventList") == "Complete" or m.response == "Error")
            ),
            start=start,
            within=within,
        )
        return [m for m in self.messages[start:] if m.action_id == action_id]

    async def login(self, username: str, secret: str) -> Message:
        return await self.request(Action.build("Login", {"Username": username, "Secret": secret}))

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
