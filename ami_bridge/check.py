"""`dialer check-pbx`: tell in plain words what stops the dialer using a PBX.

Every step uses what the least-privilege AMI user may do, and nothing
rings: the Originate probe names a channel technology that does not exist,
so Asterisk checks permission and the dialplan, then fails to make the
channel (as bad_actions.ami shows: "Extension does not exist." when the
context or pattern is missing, "Originate failed" when only the channel is).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass

from pydantic import SecretStr

from ami_bridge.codec import BANNER_PREFIX, Action, Decoder, Message

PROBE_CHANNEL = "DialerCheck/probe"


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    message: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.message}"


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = Decoder()
        self.pending: list[Message] = []
        self.ids = 0

    async def next_message(self, within: float) -> Message:
        async with asyncio.timeout(within):
            while not self.pending:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("the PBX closed the connection")
                self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    async def request(self, action: Action, within: float) -> tuple[Message, list[Message]]:
        """Send ``action``; return its response and, for an event list, its items."""
        self.ids += 1
        action_id = f"check-{self.ids}"
        tagged = Action(action.name, action.headers, action.variables, action_id)
        self.writer.write(tagged.encode())
        await self.writer.drain()
        response: Message | None = None
        items: list[Message] = []
        while True:
            message = await self.next_message(within)
            if message.action_id != action_id:
                continue  # events of calls in progress
            if response is None:
                response = message
                if message.get("EventList") != "start":
                    return response, items
            elif message.get("EventList") == "Complete":
                return response, items
            else:
                items.append(message)


async def check_pbx(
    host: str,
    port: int,
    username: str,
    secret: SecretStr,
    *,
    outbound_context: str,
    probe_number: str,
    extensions: list[str],
    volunteer_channel: str = "PJSIP/{extension}",
    within: float = 5.0,
) -> list[CheckResult]:
    results: list[CheckResult] = []
    where = f"{host}:{port}"
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as error:
        if isinstance(error, TimeoutError):
            reason = "no answer"
        else:
            reason = os.strerror(error.errno) if error.errno else str(error)
        return [
            CheckResult(
                "connect",
                False,
                f"cannot connect to AMI at {where} ({reason}): is Asterisk running, do `bindaddr` "
                "and `port` in manager.conf match DIALER_AMI_HOST/PORT, and does the firewall "
                "let this host in?",
            )
        ]
    connection = _Connection(reader, writer)
    try:
        banner = (await connection.next_message(within)).banner
        if banner is None or not banner.startswith(BANNER_PREFIX):
            return [CheckResult("connect", False, f"{where} answered, but it is not AMI")]
        results.append(CheckResult("connect", True, f"{where} speaks AMI ({banner})"))

        login, _ = await connection.request(
            Action.build(
                "Login",
                {"Username": username, "Secret": secret.get_secret_value(), "Events": "off"},
            ),
            within,
        )
        if login.response != "Success":
            results.append(
                CheckResult(
                    "login",
                    False,
                    f"login refused for AMI user {username!r} "
                    f"({login.get('Message') or 'no reason'}): check DIALER_AMI_USERNAME and "
                    "DIALER_AMI_SECRET against manager.conf, and that its permit= lines allow "
                    "this host",
                )
            )
            return results
        results.append(CheckResult("login", True, f"logged in as {username!r}"))

        results.append(await _check_originate(connection, outbound_context, probe_number, within))
        results.append(await _check_resync(connection, within))
        if volunteer_channel.upper().startswith("PJSIP/"):
            for extension in extensions:
                results.append(await _check_endpoint(connection, extension, within))
        with contextlib.suppress(OSError, TimeoutError, ConnectionError):
            await connection.request(Action("Logoff"), within)
    except (OSError, TimeoutError, ConnectionError) as error:
        results.append(CheckResult("connection", False, f"the connection failed: {error}"))
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return results


async def _check_originate(
    connection: _Connection, context: str, number: str, within: float
) -> CheckResult:
    response, _ = await connection.request(
        Action.build(
            "Originate",
            {
                "Channel": PROBE_CHANNEL,
                "Context": context,
                "Exten": number,
                "Priority": 1,
                "Timeout": 1000,
            },
        ),
        within,
    )
    message = response.get("Message") or ""
    if message == "Permission denied":
        return CheckResult(
            "originate",
            False,
            "the AMI user may not originate calls: add `originate` to its `write =` line "
            "(write = call,originate,reporting)",
        )
    if message == "Extension does not exist.":
        return CheckResult(
            "dialplan",
            False,
            f"the dialplan context {context!r} is missing or does not accept {number}: add the "
            "dialer-outbound context from asterisk-config/extensions.conf (DIALER_OUTBOUND_CONTEXT "
            "names it)",
        )
    if response.response == "Error":
        # The probe channel cannot exist, so failing here means every check passed.
        return CheckResult(
            "originate", True, f"may originate into {context!r}, which accepts {number}"
        )
    return CheckResult("originate", False, f"unexpected answer to the probe: {message}")


async def _check_resync(connection: _Connection, within: float) -> CheckResult:
    response, items = await connection.request(Action("CoreShowChannels"), within)
    if response.response != "Success":
        return CheckResult(
            "resync",
            False,
            f"CoreShowChannels refused ({response.get('Message')}): the dialer needs it to find "
            "calls again after a reconnect; give the user `reporting` (read and write)",
        )
    return CheckResult("resync", True, f"CoreShowChannels works ({len(items)} channel(s) up)")


async def _check_endpoint(connection: _Connection, extension: str, within: float) -> CheckResult:
    response, _ = await connection.request(
        Action.build("Getvar", {"Variable": f"PJSIP_ENDPOINT({extension},context)"}), within
    )
    if response.response != "Success":
        return CheckResult(
            f"endpoint {extension}", False, f"cannot look up endpoints: {response.get('Message')}"
        )
    if not response.get("Value"):
        return CheckResult(
            f"endpoint {extension}",
            False,
            f"volunteer extension {extension} is not a PJSIP endpoint on this PBX: add it to "
            "pjsip.conf (see the templates in asterisk-config/pjsip.conf) or fix the user's "
            "extension",
        )
    return CheckResult(
        f"endpoint {extension}",
        True,
        f"PJSIP endpoint {extension} exists (context {response.get('Value')})",
    )
