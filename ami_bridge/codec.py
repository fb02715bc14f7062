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
from enum import Enum
from typing import Literal

BANNER_PREFIX = "Asterisk Call Manager/"
_END_COMMAND = "--END COMMAND--"
# A message ends at an empty line; real Asterisk sends CRLF but some proxies
# and hand-written peers send bare LF, so accept both and mixtures.
_MESSAGE_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_END_TEXT = re.compile(r"\r?\n\r?\n")


class Message:
    """One AMI message: a response, an event, an action or the banner.

    ``fields`` holds the first value of each key (what almost every consumer
    wants); ``pairs`` keeps every header in wire order, so repeated keys such
    as ``Variable`` or ``Output`` are not lost.  ``body`` holds the raw lines
    of an old-style ``Response: Follows`` command output.

    Immutable and compared by value, like the frozen dataclass it replaces.
    Messages made by the :class:`Decoder` keep their text and parse it on
    first use: a consumer that only looks at ``event`` (and drops the
    ``VarSet`` / ``Newexten`` flood, half of all events) never pays for
    splitting headers it will not read.
    """

    __slots__ = ("_banner", "_body", "_fields", "_pairs", "_text")
    __match_args__ = ("fields", "pairs", "body", "banner")
    __hash__ = None  # type: ignore[assignment]  # like a dataclass over a dict

    _text: str | None
    _fields: Mapping[str, str] | None
    _pairs: tuple[tuple[str, str], ...] | None
    _body: tuple[str, ...]
    _banner: str | None

    def __init__(
        self,
        fields: Mapping[str, str],
        pairs: tuple[tuple[str, str], ...] = (),
        body: tuple[str, ...] = (),
        banner: str | None = None,
    ) -> None:
        self._text = None
        self._fields = fields
        self._pairs = pairs
        self._body = body
        self._banner = banner

    @classmethod
    def _from_text(cls, text: str) -> Message:
        """A message parsed on demand, from one message's text.

        The text never holds a ``Response: Follows`` header (the decoder
        parses those at once): every line is a header or garbage.
        """
        message = cls.__new__(cls)
        message._text = text
        message._fields = None
        message._pairs = None
        message._body = ()
        message._banner = None
        return message

    def _parse(self) -> Mapping[str, str]:
        text = self._text or ""
        # parse_block has the last word on anything unusual (stray CRs).
        lines = _lines(text)
        if lines is not None:
            try:
                # dict() refuses a line without ": " (a 1-item split), which
                # sends free text and odd lines to parse_block below.
                pieces = [line.split(": ", 1) for line in lines]
                fields: dict[str, str] = dict(pieces)
            except ValueError:
                pass
            else:
                if ":" in "".join(fields):
                    # parse_block cuts a key at its first colon, even one
                    # with no space after it.
                    return self._parse_careful(text)
                if len(fields) != len(pieces):
                    # dict() keeps the last of a repeated key; the API
                    # promises the first.
                    fields = {}
                    for key, value in pieces:
                        fields.setdefault(key, value)
                self._fields = fields
                return fields
        return self._parse_careful(text)

    def _parse_careful(self, text: str) -> Mapping[str, str]:
        parsed = parse_block(text)
        self._pairs = parsed.pairs
        self._body = parsed.body
        self._fields = parsed.fields
        return parsed.fields

    @property
    def fields(self) -> Mapping[str, str]:
        fields = self._fields
        return fields if fields is not None else self._parse()

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        pairs = self._pairs
        if pairs is None:
            fields = self.fields
            pairs = self._pairs
            if pairs is None:
                # The fast parse succeeded: every line is "key: value".
                lines = _lines(self._text or "") or []
                if len(fields) == len(lines):
                    pairs = tuple(fields.items())
                else:
                    parts = (line.partition(": ") for line in lines)
                    pairs = tuple((key, value) for key, _, value in parts)
                self._pairs = pairs
        return pairs

    @property
    def body(self) -> tuple[str, ...]:
        if self._fields is None:
            self._parse()
        return self._body

    @property
    def banner(self) -> str | None:
        return self._banner

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.fields, self.pairs, self.body, self.banner) == (
            other.fields,
            other.pairs,
            other.body,
            other.banner,
        )

    def __repr__(self) -> str:
        return (
            f"Message(fields={dict(self.fields)!r}, pairs={self.pairs!r}, "
            f"body={self.body!r}, banner={self.banner!r})"
        )

    def get(self, key: str, default: str | None = None) -> str | None:
        text = self._text
        if text is not None and self._fields is None:
            value = _header_value(text, key)
            if value is not None and value is not _UNSURE:
                return value
        fields = self.fields
        value = fields.get(key)
        if value is not None:
            return value
        lowered = key.lower()
        for name, candidate in fields.items():
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

    def header(self, key: str) -> str | None:
        """The first value of exactly ``key`` (no case folding), or None.

        On a message from the :class:`Decoder` this reads that one header
        from the text without parsing the others, which is what a consumer
        after a few headers of each event (the call tracker) wants.
        """
        text = self._text
        if text is not None and self._fields is None:
            value = _header_value(text, key)
            if value is not _UNSURE:
                return value
        return self.fields.get(key)

    @property
    def event(self) -> str | None:
        text = self._text
        if self._fields is None and text is not None and text.startswith("Event: "):
            # Asterisk puts Event first: the hottest lookup of all.
            newline = text.find("\n")
            name = text[7:newline] if newline >= 0 else text[7:]
            if name.endswith("\r"):
                name = name[:-1]
            if "\r" not in name:
                return name
        return self.header("Event")

    @property
    def response(self) -> str | None:
        return self.header("Response")

    @property
    def action(self) -> str | None:
        return self.header("Action")

    @property
    def action_id(self) -> str | None:
        return self.header("ActionID")

    @property
    def is_banner(self) -> bool:
        return self._banner is not None


class _Unsure(Enum):
    UNSURE = "unsure"


# _header_value could not tell from the text alone: parse to know.
_UNSURE = _Unsure.UNSURE
_PROBES: dict[str, tuple[str, str, int]] = {}


def _header_value(text: str, key: str) -> str | Literal[_Unsure.UNSURE] | None:
    """The first value of exactly ``key`` in a lazy message's text.

    None when no line can hold it; ``_UNSURE`` when only a full parse can
    tell (a "Key:value" line without the space).  Never anything a full
    parse would not give.
    """
    probes = _PROBES.get(key)
    if probes is None:
        if not key or ":" in key or "\n" in key or "\r" in key:
            return _UNSURE
        probes = (key + ":", "\n" + key + ":", len(key) + 2)
        if len(_PROBES) < 512:
            _PROBES[key] = probes
    bare, line, skip = probes
    if text.startswith(bare):
        start = skip - 1
    else:
        # A full parse cuts each line at its first colon, so the first line
        # that starts with "Key:" is where it takes the first value from.
        found = text.find(line)
        if found < 0:
            return None
        start = found + skip
    if not text.startswith(" ", start):
        return _UNSURE
    start += 1
    end = text.find("\n", start)
    if end < 0:
        end = len(text)
    if end > start and text[end - 1] == "\r":
        end -= 1
    return text[start:end]


def _lines(text: str) -> list[str] | None:
    """The lines of a message with only CRLF or only LF line ends, else None."""
    if "\r" not in text:
        return text.split("\n")
    lines = text.split("\r\n")
    breaks = len(lines) - 1
    if text.count("\r") != breaks or text.count("\n") != breaks:
        return None
    return lines


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


_FOLLOWS = b"Response: Follows"
_END_COMMAND_BYTES = _END_COMMAND.encode()


def _split_messages(text: str, messages: list[Message]) -> None:
    """Cut decoded text that ends at a message end into (lazy) messages."""
    if text.count("\n") == text.count("\r\n"):
        # Every LF has its CR, as Asterisk sends: then every message end is
        # exactly CRLF CRLF and the text is cut as is, without a copy.
        blocks = text.split("\r\n\r\n")
    elif "\r" in text:
        # Mixed line ends: cut exactly where the incremental search would.
        blocks = _MESSAGE_END_TEXT.split(text)
    else:
        blocks = text.split("\n\n")
    from_text = Message._from_text
    append = messages.append
    for block in blocks:
        if block and block[0] in "\r\n":
            # Blank lines between messages are harmless noise.
            block = block.lstrip("\r\n")
        if block:
            append(from_text(block))


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
        messages: list[Message] = []
        if (
            not self._buffer
            and not self.expect_banner
            and data.endswith(b"\r\n\r\n")
            and _FOLLOWS not in data
        ):
            # The usual read: whole messages and nothing left over, so skip
            # the buffer entirely.
            _split_messages(data.decode("utf-8", "replace"), messages)
            return messages
        self._buffer += data
        if self.expect_banner and not self._take_banner(messages):
            return messages
        if _FOLLOWS in self._buffer:
            # Old-style command output may hold empty lines, so its end can
            # only be found message by message.
            self._feed_careful(messages)
        else:
            self._feed_fast(messages)
        return messages

    def _feed_fast(self, messages: list[Message]) -> None:
        # Everything up to the last message end is decoded in one go and cut
        # on empty lines; any message end is \r?\n\r?\n, so the last one
        # ends in either "\n\n" or "\n\r\n".
        buffer = self._buffer
        lf = buffer.rfind(b"\n\n")
        crlf = buffer.rfind(b"\n\r\n")
        cut = max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)
        text = buffer[:cut].decode("utf-8", errors="replace") if cut else ""
        del buffer[:cut]
        if buffer and buffer[0] in b"\r\n":
            # Blank lines between messages are noise: drop them now, as the
            # careful path does, so pending never counts them.
            del buffer[: len(buffer) - len(buffer.lstrip(b"\r\n"))]
        if text:
            _split_messages(text, messages)

    def _feed_careful(self, messages: list[Message]) -> None:
        buffer = self._buffer
        size = len(buffer)
        start = 0
        while True:
            # Skip blank lines between messages first, so a command response
            # that follows one is still recognised by its first line.
            while start < size and buffer[start] in b"\r\n":
                start += 1
            match = _MESSAGE_END.search(buffer, start)
            if match is None:
                break
            block = bytes(buffer[start : match.start()])
            end = match.end()
            follows = block.startswith(_FOLLOWS)
            if follows and _END_COMMAND_BYTES not in block:
                # Wait for the output's terminator before cutting the message.
                terminator = buffer.find(_END_COMMAND_BYTES, start)
                if terminator < 0:
                    break
                match = _MESSAGE_END.search(buffer, terminator)
                if match is None:
                    break
                block = bytes(buffer[start : match.start()])
                end = match.end()
            start = end
            text = block.decode("utf-8", errors="replace")
            if follows or "Response: Follows" in text:
                # Lines after that header may be command output: the lazy
                # path only knows headers.
                messages.append(parse_block(text))
            else:
                messages.append(Message._from_text(text))
        if start:
            del buffer[:start]

    def _take_banner(self, messages: list[Message]) -> bool:
        newline = self._buffer.find(b"\n")
        if newline < 0:
            return False
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
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate cannot go on the wire; refuse it like any other
            # bad value instead of failing later with a bare UnicodeError.
            raise AmiEncodingError(field_name, "is not valid Unicode text") from None


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


# Actions whose Variable headers are NAME=value assignments that Asterisk
# splits on commas; they must use Action.variables, which refuses commas.
# Elsewhere (Getvar, Setvar) Variable names one variable or function, and a
# function's arguments legitimately contain commas.
_ASSIGNING_ACTIONS = frozenset({"originate"})


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
        lowered = key.lower()
        if lowered in ("action", "actionid") or (
            lowered == "variable" and action.name.lower() in _ASSIGNING_ACTIONS
        ):
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
