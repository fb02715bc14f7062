"""One AMI client connection: the banner, decoding the client's actions
and handing them to the simulator, the event classes this client receives
(its user's read permissions narrowed by its event mask), and the faults a
connection can suffer: dropped for not reading within Asterisk's write
timeout, stalled, aborted.  It sees the simulator only as a
:class:`SessionHost`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ami_bridge.codec import Decoder, Message
from ami_bridge.simulator.users import EVENT_CLASSES, AmiUser

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/13.0.0\r\n"


class SessionHost(Protocol):
    """What a session needs of the simulator that accepted it."""

    bytes_received: int

    @property
    def write_timeout(self) -> float | None: ...

    @property
    def _sessions(self) -> set[Session]: ...

    def _handle_action(self, session: Session, message: Message) -> None: ...


class Session(asyncio.Protocol):
    """One AMI client connection."""

    def __init__(self, sim: SessionHost) -> None:
        self.sim = sim
        self.transport: asyncio.Transport | None = None
        self.decoder = Decoder(expect_banner=False)
        self.user: AmiUser | None = None
        self.mask: frozenset[str] = EVENT_CLASSES
        self.receive: frozenset[str] = frozenset()
        self.closing = False
        self.ignore_input = False
        self.stalled = False
        self.muted = False
        self.backlog: list[bytes] = []
        self.write_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sim._sessions.add(self)
        transport.write(BANNER)

    def data_received(self, data: bytes) -> None:
        self.sim.bytes_received += len(data)
        for message in self.decoder.feed(data):
            if self.closing or self.ignore_input:
                return
            self.sim._handle_action(self, message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.sim._sessions.discard(self)
        if self.write_timer is not None:
            self.write_timer.cancel()

    # Asterisk drops a client that does not take its events within its write
    # timeout (100 ms by default); the transport tells us when its buffer
    # is full, which is when a real write would block.
    def pause_writing(self) -> None:
        timeout = self.sim.write_timeout
        if timeout is not None and self.write_timer is None:
            self.write_timer = asyncio.get_running_loop().call_later(timeout, self._too_slow)

    def resume_writing(self) -> None:
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    def _too_slow(self) -> None:
        log.warning("simulator: dropping an AMI client that stopped reading")
        self.abort()

    def set_user(self, user: AmiUser | None) -> None:
        self.user = user
        self.receive = (user.read & self.mask) if user else frozenset()

    def set_mask(self, mask: frozenset[str]) -> None:
        self.mask = mask
        self.set_user(self.user)

    def write(self, data: bytes) -> None:
        if self.muted or self.closing or self.transport is None:
            return
        if self.stalled:
            self.backlog.append(data)
        else:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closing and self.transport is not None:
            self.closing = True
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.closing = True
            self.transport.abort()

    def stall(self, seconds: float) -> None:
        if self.transport is None or self.closing:
            return
        self.stalled = True
        self.transport.pause_reading()
        asyncio.get_running_loop().call_later(seconds, self._unstall)

    def _unstall(self) -> None:
        self.stalled = False
        if self.closing or self.transport is None:
            return
        self.transport.resume_reading()
        backlog, self.backlog = self.backlog, []
        for data in backlog:
            self.transport.write(data)
