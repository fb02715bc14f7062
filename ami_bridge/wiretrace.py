"""The raw AMI wire trace: every byte of a connection, in the ``.ami`` format.

An operator debugging a PBX switches it on with one path; each TCP
connection the client opens then writes its own file, in exactly the
recording format of ``tests/fixtures/ami/README.md`` (``>>> t=`` /
``<<< t=`` marker lines, then one whole AMI message with its ``\\r\\n``
endings), so ``dialer replay`` reads a trace like any recording.  See
``docs/ami-trace.md``.

What the client sent goes out one whole message per write (every action
comes from :func:`ami_bridge.codec.encode_action`), so each write is a
frame.  What Asterisk sent arrives in arbitrary chunks: :class:`MessageFramer`
cuts them where :class:`ami_bridge.codec.Decoder` does, so each frame is
one message whatever the reads were.

Secrets never reach the file: :func:`mask_secrets` replaces the values of
secret-looking headers before anything is written.

Writing must never cost the AMI connection: frames go to a buffered file
that is flushed shortly after each write (so ``tail -f`` follows it), and
a file that cannot be opened or written turns the trace off with one error
log line; the connection itself carries on untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final

from ami_bridge.codec import BANNER_PREFIX

log = logging.getLogger(__name__)

__all__ = [
    "FLUSH_INTERVAL",
    "MASK",
    "MessageFramer",
    "TraceFiles",
    "WireTrace",
    "mask_secrets",
    "trace_path",
]

MASK: Final = b"********"
FLUSH_INTERVAL: Final = 0.5
"""Seconds a written frame may wait in the buffer: short enough for ``tail -f``,
long enough that a burst of events costs one write system call."""

BUFFER_SIZE: Final = 64 * 1024
# The configured secret is also masked wherever it appears, as a safety net;
# a very short one could match ordinary traffic (an extension, a number) and
# corrupt the trace, so only secrets this long are looked for.
MIN_LITERAL_SECRET: Final = 8

CLOSED_BY_SERVER: Final = b"(connection closed by Asterisk)"
DROPPED_BY_CLIENT: Final = b"(client drops the TCP connection without Logoff)"

# The same message end as the decoder's: real Asterisk sends CRLF, but
# proxies and hand-written peers may send bare LF.
_MESSAGE_END = re.compile(rb"\r?\n\r?\n")
_FOLLOWS = b"Response: Follows"
_END_COMMAND = b"--END COMMAND--"
_BANNER = BANNER_PREFIX.encode()
_BLANK = b"\r\n"

# A header line up to its value (group 1), and the value (group 2); an
# empty or blank value does not match.
_VALUE = rb"[ \t]*:[ \t]*)([^ \t\r\n][^\r\n]*)"
# A header whose name holds "secret", "password" or "passwd" (Login's Secret,
# PJSIP auth listings' Password...), in any case.
_SECRET_HEADER = re.compile(
    rb"(?im)^([ \t]*[A-Za-z0-9_-]*(?:secret|passw(?:or)?d)[A-Za-z0-9_-]*" + _VALUE
)
# MD5 login: Asterisk's Challenge nonce and the client's Key (the MD5 of
# nonce and secret) together allow an offline guess of the secret.
_CHALLENGE_HEADER = re.compile(rb"(?im)^(challenge" + _VALUE)
_KEY_HEADER = re.compile(rb"(?im)^(key" + _VALUE)
_LOGIN_ACTION = re.compile(rb"(?im)^action[ \t]*:[ \t]*login[ \t]*\r?$")


def _masked(match: re.Match[bytes]) -> bytes:
    return match.group(1) + MASK


def mask_secrets(message: bytes, known: Iterable[bytes] = ()) -> bytes:
    """``message`` with every secret value replaced by ``********``.

    Masked: the value of any header whose name contains ``secret``,
    ``password`` or ``passwd`` (case-insensitive), of ``Challenge``, and of
    ``Key`` in a ``Login`` action (MD5 login; ``Key`` means something else
    in other actions).  Each of ``known`` (the configured secret) is also
    replaced wherever it appears.  An empty value stays empty: it gives
    nothing away and shows that no secret was set.  Line endings and
    everything else are left byte for byte.
    """
    masked = message
    # Almost no message holds any of these words: one lowercase copy and a
    # few substring scans are far cheaper than the header patterns.
    lowered = message.lower()
    if b"secret" in lowered or b"passw" in lowered:
        masked = _SECRET_HEADER.sub(_masked, masked)
    if b"challenge" in lowered:
        masked = _CHALLENGE_HEADER.sub(_masked, masked)
    if b"login" in lowered and _LOGIN_ACTION.search(masked):
        masked = _KEY_HEADER.sub(_masked, masked)
    for secret in known:
        if secret and secret in masked:
            masked = masked.replace(secret, MASK)
    return masked


class MessageFramer:
    """Cuts the bytes Asterisk sent into whole messages, exactly as read.

    Chunks may split a message anywhere (inside a header, between the CR
    and the LF); ``feed`` returns only complete frames, each the exact bytes
    of the banner line or of one message up to and including its blank
    line.  Blank lines between messages (Asterisk sends none) stay in
    front of the next message, so no byte is lost.  Cuts are where
    :class:`ami_bridge.codec.Decoder` makes them, old-style ``Response:
    Follows`` command output (which may hold blank lines) included.
    """

    def __init__(self, *, expect_banner: bool = True) -> None:
        self._buffer = bytearray()
        self._expect_banner = expect_banner

    @property
    def pending(self) -> bytes:
        """Bytes read that do not yet make a whole message."""
        return bytes(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        if self._expect_banner:
            newline = buffer.find(b"\n")
            if newline < 0:
                return frames
            self._expect_banner = False
            if buffer.startswith(_BANNER):
                frames.append(bytes(buffer[: newline + 1]))
                start = newline + 1
        size = len(buffer)
        while start < size:
            body = start
            while body < size and buffer[body] in _BLANK:
                body += 1
            match = _MESSAGE_END.search(buffer, body)
            if match is None:
                break
            end = match.end()
            if (
                buffer.startswith(_FOLLOWS, body)
                and buffer.find(_END_COMMAND, body, match.start()) < 0
            ):
                # Command output may hold blank lines: the message ends at
                # the first message end after its terminator.
                terminator = buffer.find(_END_COMMAND, body)
                if terminator < 0:
                    break
                match = _MESSAGE_END.search(buffer, terminator)
                if match is None:
                    break
                end = match.end()
            frames.append(bytes(buffer[start:end]))
            start = end
        if start:
            del buffer[:start]
        return frames


class WireTrace:
    """One connection's trace, written to ``out`` as frames of the ``.ami`` format.

    Created when the TCP connection opens (``t`` counts from then).  Call
    :meth:`sent` with every write, :meth:`received` with every read, and
    :meth:`end` once when the connection is gone.  No method raises: a
    failing file turns the trace off and ``on_error`` is told once.
    """

    def __init__(
        self,
        out: BinaryIO,
        *,
        secrets: Iterable[bytes] = (),
        clock: Callable[[], float] = time.monotonic,
        flush_interval: float = FLUSH_INTERVAL,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self._out: BinaryIO | None = out
        self._secrets = tuple(secret for secret in secrets if len(secret) >= MIN_LITERAL_SECRET)
        self._clock = clock
        self._started = clock()
        self._flush_interval = flush_interval
        self._on_error = on_error
        self._framer = MessageFramer()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._logged_off = False

    @property
    def active(self) -> bool:
        """Still writing: not ended, and the file has not failed."""
        return self._out is not None

    def sent(self, data: bytes) -> None:
        """Bytes the client wrote: one whole action per write."""
        if self._out is None or not data:
            return
        if data[:14].lower() == b"action: logoff":
            self._logged_off = True
        self._write(b">>> t=" + self._stamp() + b"\n" + mask_secrets(data, self._secrets))

    def received(self, data: bytes) -> None:
        """Bytes the client read, in whatever chunks the socket gave."""
        if self._out is None:
            return
        frames = self._framer.feed(data)
        if not frames:
            return
        # Every message completed by this read carries the read's time.
        marker = b"<<< t=" + self._stamp() + b"\n"
        self._write(b"".join(marker + mask_secrets(frame, self._secrets) for frame in frames))

    def end(self, *, by_client: bool) -> None:
        """The connection is gone: write what is left and a note, then close.

        ``by_client`` tells who ended it.  A client that sent ``Logoff``
        ended it properly, which needs no note.
        """
        if self._out is None:
            return
        marker = b"<<< t=" + self._stamp() + b"\n"
        chunks: list[bytes] = []
        rest = self._framer.pending
        if rest:
            # A message cut short by the end of the connection: its bytes
            # are evidence too.  The marker of the next frame must start a
            # line, hence the newline if the cut left none.
            chunks.append(marker + mask_secrets(rest, self._secrets))
            if not rest.endswith(b"\n"):
                chunks.append(b"\n")
        if not by_client:
            chunks.append(marker + CLOSED_BY_SERVER + b"\n")
        elif not self._logged_off:
            chunks.append(b">>> t=" + self._stamp() + b"\n" + DROPPED_BY_CLIENT + b"\n")
        if chunks:
            self._write(b"".join(chunks), flush=False)
        self._close()

    def _stamp(self) -> bytes:
        return b"%.3f" % max(0.0, self._clock() - self._started)

    def _write(self, data: bytes, *, flush: bool = True) -> None:
        out = self._out
        if out is None:
            return
        try:
            out.write(data)
        except (OSError, ValueError) as error:
            self._fail(error)
            return
        if flush and self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._flush()
                return
            self._flush_handle = loop.call_later(self._flush_interval, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        out = self._out
        if out is None:
            return
        try:
            out.flush()
        except (OSError, ValueError) as error:
            self._fail(error)

    def _close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        out, self._out = self._out, None
        if out is None:
            return
        try:
            out.close()
        except (OSError, ValueError) as error:
            if self._on_error is not None:
                self._on_error(error)

    def _fail(self, error: Exception) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        out, self._out = self._out, None
        if out is not None:
            # Already failing: the first error is the one worth reporting.
            with contextlib.suppress(OSError, ValueError):
                out.close()
        if self._on_error is not None:
            self._on_error(error)


def trace_path(template: Path, opened: datetime, *, is_directory: bool = False) -> Path:
    """The file of a connection opened at ``opened`` (UTC), from the configured path.

    ``/var/log/dialer/ami.ami`` gives ``/var/log/dialer/ami-20260801T120000.123456Z.ami``
    (``.ami`` when the path has no suffix); a directory gives
    ``DIRECTORY/ami-...Z.ami``.  Names sort in the order the connections
    were opened, so a shell glob lists one session's files in replay order.
    """
    stamp = opened.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    if is_directory:
        return template / f"ami-{stamp}.ami"
    return template.with_name(f"{template.stem}-{stamp}{template.suffix or '.ami'}")


class TraceFiles:
    """Where one client's traces go: a new file for every connection.

    ``open`` never raises.  A file that cannot be opened or written is
    reported with one error line, and again only after a file has worked
    in between, so a worker reconnecting every few seconds to a PBX does
    not repeat the same complaint.
    """

    def __init__(
        self,
        template: str | os.PathLike[str],
        *,
        secrets: Iterable[str] = (),
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.template = Path(template)
        # Path() drops a trailing slash, which says "a directory" even
        # before the directory exists.
        self._names_directory = os.fspath(template).endswith(("/", os.sep))
        self._secrets = tuple(secret.encode() for secret in secrets if secret)
        self._flush_interval = flush_interval
        self._failing = False

    def open(self) -> WireTrace | None:
        """A trace for a connection that has just opened, or None if it cannot be written."""
        template = self.template
        is_directory = self._names_directory or template.is_dir()
        path = template
        out: BinaryIO | None = None
        try:
            for _ in range(5):
                path = trace_path(template, datetime.now(UTC), is_directory=is_directory)
                try:
                    # Exclusive: never write into another connection's trace.
                    # Appending: after logrotate's copytruncate the next frame
                    # goes to the start of the emptied file, not past a hole.
                    # Owner only: traces hold contacts' numbers and names.
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
                except FileExistsError:
                    continue
                out = os.fdopen(fd, "ab", buffering=BUFFER_SIZE)
                break
            if out is None:
                raise FileExistsError(f"{path} exists")
        except OSError as error:
            self._report(path, error)
            return None
        if self._failing:
            log.info("AMI trace: writing again, to %s", path)
        else:
            log.info("AMI trace: writing %s", path)
        self._failing = False
        return WireTrace(
            out,
            secrets=self._secrets,
            flush_interval=self._flush_interval,
            on_error=lambda error: self._report(path, error),
        )

    def _report(self, path: Path, error: Exception) -> None:
        if self._failing:
            return
        self._failing = True
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        log.error(
            "AMI trace: cannot write %s (%s); the AMI connection goes on without a trace",
            path,
            reason,
        )
