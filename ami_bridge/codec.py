"""Sans-I/O AMI codec: bytes in, messages out; actions in, bytes out.

The decoder never touches a socket, so it can be fed one byte at a time in
tests and a whole recording at once in benchmarks.  The encoder is the only
way an action becomes bytes in this project: it is where header injection
(CR/LF/NUL) and Asterisk's comma splitting of ``Variable`` values are
refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

BANNER_PREFIX = "Asterisk Call Manager/"
_END_COMMAND = "--END COMMAND--"
# A message ends at an empty line; real Asterisk sends CRLF but some proxies
# and hand-written peers send bare LF, so accept both and mixtures.
_MESSAGE_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class Message:
    """One AMI message: a response, an event, an action or the banner.

    ``fields`` holds the first value of each key (what almost every consumer
    wants); ``pairs`` keeps every header in wire order, so repeated keys such
    as ``Variable`` or ``Output`` are not lost.  ``body`` holds the raw lines
    of an old-style ``Response: Follows`` command output.
    """

    fields: Mapping[str, str]
    pairs: tuple[tuple[str, str], ...] = ()
    body: tuple[str, ...] = ()
    banner: str | None = None

    def get(self, key: str, default: str | None = None) -> str | None:
        value = self.fields.get(key)
        if value is not None:
            return value
        lowered = key.lower()
        for name, candidate in self.fields.items():
            if name.lower() == lowered:
                return candidate
        return default

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def getall(self, key: str) -> list[str]:
        lowered = key.lower()
        return [value for name, value in self.pairs if name.lower() == lowered]

    @property
    def event(self) -> str | None:
        return self.fields.get("Event")

    @property
    def response(self) -> str | None:
        return self.fields.get("Response")

    @property
    def action(self) -> str | None:
        return self.fields.get("Action")

    @property
    def action_id(self) -> str | None:
        return self.fields.get("ActionID")

    @property
    def is_banner(self) -> bool:
        return self.banner is not None


def parse_block(text: str) -> Message:
    """Parse one message's text (without the terminating empty line)."""
    fields: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    body: list[str] = []
    follows = False
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line:
            if follows:
                body.append(line)
            continue
        if follows and pairs:
            # After the headers of a "Response: Follows", lines are free text
            # (command output) that may contain colons of its own.
            if line == _END_COMMAND:
                continue
            if body or ": " not in line or line.startswith(" "):
                body.append(line)
                continue
        key, sep, value = line.partition(":")
        if not sep:
            body.append(line)
            continue
        if value.startswith(" "):
            value = value[1:]
        pairs.append((key, value))
        if key not in fields:
            fields[key] = value
        if key == "Response" and value == "Follows":
            follows = True
    return Message(fields=fields, pairs=tuple(pairs), body=tuple(body))


@dataclass(slots=True)
class Decoder:
    """Incremental decoder.  ``feed`` returns the complete messages so far.

    The remainder (a partial message, or half of a multi-byte UTF-8
    character) is kept until more bytes arrive, because only whole messages
    are decoded to text.
    """

    expect_banner: bool = True
    _buffer: bytearray = field(default_factory=bytearray)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        if self.expect_banner and not self._take_banner(messages):
            return messages
        buffer = self._buffer
        start = 0
        while True:
            match = _MESSAGE_END.search(buffer, start)
            if match is None:
                break
            block = bytes(buffer[start : match.start()])
            end = match.end()
            if block.startswith(b"Response: Follows") and _END_COMMAND.encode() not in block:
                # Old-style command output may contain empty lines; wait for
                # its terminator before cutting the message.
                terminator = buffer.find(_END_COMMAND.encode(), start)
                if terminator < 0:
                    break
                match = _MESSAGE_END.search(buffer, terminator)
                if match is None:
                    break
                block = bytes(buffer[start : match.start()])
                end = match.end()
            start = end
            # Leading blank lines between messages are harmless noise.
            text = block.decode("utf-8", errors="replace").lstrip("\r\n")
            if text:
                messages.append(parse_block(text))
        if start:
            del buffer[:start]
        return messages

    def _take_banner(self, messages: list[Message]) -> bool:
        newline = self._buffer.find(b"\n")
        if newline < 0:
            # A peer that starts with a message rather than a banner still
            # has to be parsed; give up waiting once a full message is here.
            if _MESSAGE_END.search(self._buffer) is None:
                return False
            self.expect_banner = False
            return True
        line = self._buffer[:newline].rstrip(b"\r").decode("utf-8", errors="replace")
        self.expect_banner = False
        if line.startswith(BANNER_PREFIX):
            del self._buffer[: newline + 1]
            messages.append(Message(fields={}, banner=line))
        return True


def iter_messages(chunks: Iterable[bytes], *, expect_banner: bool = True) -> Iterator[Message]:
    decoder = Decoder(expect_banner=expect_banner)
    for chunk in chunks:
        yield from decoder.feed(chunk)


class AmiEncodingError(ValueError):
    """An action was refused before reaching the socket.

    ``field`` names the offending key (or ``"Action"``), so callers can map
    the refusal to a user-facing error without parsing the message.
    """

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"refusing to encode AMI field {field_name!r}: {reason}")
        self.field = field_name
        self.reason = reason


_FORBIDDEN = ("\r", "\n", "\0")
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]+\Z")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_()]*\Z")


def _check_text(field_name: str, value: str) -> None:
    for char in _FORBIDDEN:
        if char in value:
            raise AmiEncodingError(field_name, f"contains forbidden character {char!r}")


@dataclass(frozen=True, slots=True)
class Action:
    """An AMI action to send.  ``variables`` become ``Variable: k=v`` headers."""

    name: str
    headers: tuple[tuple[str, str], ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    action_id: str | None = None

    @classmethod
    def build(
        cls,
        name: str,
        headers: Mapping[str, str | int | bool] | None = None,
        *,
        variables: Mapping[str, str] | None = None,
        action_id: str | None = None,
    ) -> Action:
        def text(value: str | int | bool) -> str:
            if isinstance(value, bool):
                return "true" if value else "false"
            return str(value)

        return cls(
            name=name,
            headers=tuple((key, text(value)) for key, value in (headers or {}).items()),
            variables=tuple((variables or {}).items()),
            action_id=action_id,
        )

    def encode(self) -> bytes:
        return encode_action(self)


def encode_action(action: Action) -> bytes:
    """Return the wire bytes for ``action`` or raise :class:`AmiEncodingError`.

    Nothing is partially produced: validation finishes before any byte is
    returned, so a refused action never reaches a socket.
    """
    if not _KEY_PATTERN.match(action.name):
        raise AmiEncodingError("Action", "action name must be letters, digits, '_' or '-'")
    lines = [f"Action: {action.name}"]
    for key, value in action.headers:
        if not _KEY_PATTERN.match(key):
            raise AmiEncodingError(key, "header name must be letters, digits, '_' or '-'")
        if key.lower() in ("action", "actionid", "variable"):
            raise AmiEncodingError(key, "set through the dedicated Action fields")
        _check_text(key, value)
        lines.append(f"{key}: {value}")
    for name, value in action.variables:
        if not _VARIABLE_NAME.match(name):
            raise AmiEncodingError("Variable", f"invalid variable name {name!r}")
        _check_text("Variable", value)
        if "," in value:
            # Asterisk splits a Variable header on commas into several
            # assignments, which would let a value set other variables.
            raise AmiEncodingError("Variable", "commas are not allowed in a variable value")
        lines.append(f"Variable: {name}={value}")
    if action.action_id is not None:
        _check_text("ActionID", action.action_id)
        lines.append(f"ActionID: {action.action_id}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
