"""`dialer check-pbx`: tell in plain words what stops the dialer using a PBX.

Every step uses what the least-privilege AMI user may do (write classes
call, originate, reporting), and nothing rings:

* the Originate probe names a channel technology that does not exist, so
  Asterisk checks the permission and the dialplan, then fails to make the
  channel;
* which numbers the outbound context dials is read, not tried:
  ``ShowDialPlan`` with ``Extension`` lists the extensions matching a
  number in the order Asterisk searches them (the context's own, most
  specific pattern first, then its includes), so the first one listed is
  the one a call runs, and its priorities say whether it goes to
  ``dialer-place-call`` or to ``dialer-refuse``;
* whether the trunk and the phones answer is what Asterisk's own qualify
  found, read with ``Getvar`` of the ``PJSIP_ENDPOINT``, ``PJSIP_AOR`` and
  ``PJSIP_CONTACT`` functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import phonenumbers
from pydantic import SecretStr

from ami_bridge.codec import BANNER_PREFIX, Action, Decoder, Message
from dialer.domain.compliance import DialingPolicy

PROBE_CHANNEL = "DialerCheck/probe"
# The subroutines of asterisk-config/extensions.conf that dial a contact
# and refuse a call.
PLACE_CALL_CONTEXT = "dialer-place-call"
REFUSE_CONTEXT = "dialer-refuse"
TRUNK_VARIABLE = "DIALER_TRUNK"

# Dialplan applications that neither dial nor hang up: a call goes on to
# the next priority.
_PASS_THROUGH = frozenset(
    {"noop", "verbose", "log", "set", "mset", "answer", "progress", "ringing", "wait"}
)
_HANG_UP = frozenset({"hangup", "congestion", "busy"})
_JUMPS = frozenset({"gosub", "goto"})
# What may be put between a dialplan function's parentheses unquoted.
_ENDPOINT_NAME = re.compile(r"[-A-Za-z0-9_.+]{1,80}\Z")


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    message: str
    # Passed, but with something the operator should know (exit status 0).
    warning: bool = False

    def __str__(self) -> str:
        label = "FAIL" if not self.ok else "warn" if self.warning else "ok  "
        return f"{label}  {self.name}: {self.message}"


@dataclass(frozen=True, slots=True)
class Probe:
    """A number to look up in the outbound context, and what it is in plain words."""

    number: str  # E.164, with the +
    what: str

    @property
    def exten(self) -> str:
        # The dialer's Originate sends the digits without the +.
        return self.number.lstrip("+")


# Numbers the outbound context must refuse whatever the dialing policy
# allows: billed at premium rates or per call, and indistinguishable from
# ordinary numbers of an allowed region to the dialer's own rules.
ALWAYS_REFUSED = (
    Probe("+19002345678", "premium rate (+1 900)"),
    Probe("+15149761234", "premium rate (a 976 exchange)"),
    Probe("+15145551212", "directory assistance (555-1212, billed per call)"),
)
# Refused unless the dialing policy allows them: the "one ring" fraud
# favourite, billed at international rates although it is a +1 number.
REFUSED_UNLESS_ALLOWED = (
    Probe("+18092345678", "international rate (+1 809, the Dominican Republic)"),
)
# Regions tried, in order, for an example of a country the policy does not allow.
_ABROAD = ("GB", "AU", "DE", "JP")


def probe_numbers(
    policy: DialingPolicy, number: str | None = None
) -> tuple[list[Probe], list[Probe]]:
    """The numbers the outbound context must dial, and those it must refuse.

    Dialed: an example number of each region the policy allows.  Refused:
    the toll-fraud classics, the premium-rate and shared-cost examples of
    the allowed regions, and a number of a country the policy does not
    allow.  ``number`` (E.164) joins the side the policy puts it on.
    """
    dial: list[Probe] = []
    refuse: list[Probe] = list(ALWAYS_REFUSED)
    for entry in sorted(policy.allowed):
        if entry.startswith("+"):
            region = phonenumbers.region_code_for_country_code(int(entry[1:]))
            label = entry
        else:
            region = label = entry
        example = _example(region)
        if example is not None and policy.check(example) is None:
            dial.append(Probe(example, f"an example {label} number"))
        if phonenumbers.country_code_for_region(region) == 1:
            continue  # the +1 premium ranges are in ALWAYS_REFUSED
        for kind, words in (
            (phonenumbers.PhoneNumberType.PREMIUM_RATE, "premium rate"),
            (phonenumbers.PhoneNumberType.SHARED_COST, "shared cost"),
        ):
            billed = _example(region, kind)
            if billed is not None:
                refuse.append(Probe(billed, f"{words} ({label})"))
    refuse += [probe for probe in REFUSED_UNLESS_ALLOWED if policy.check(probe.number) is not None]
    for region in _ABROAD:
        example = _example(region)
        if example is not None and policy.check(example) is not None:
            refuse.append(Probe(example, f"international ({region}, not an allowed destination)"))
            break
    if number is not None:
        given = Probe(number, "the number given with --number")
        (refuse if policy.check(number) is not None else dial).insert(0, given)
    return _unique(dial), _unique(refuse)


def _example(region: str, kind: int | None = None) -> str | None:
    found = (
        phonenumbers.example_number(region)
        if kind is None
        else phonenumbers.example_number_for_type(region, kind)
    )
    if found is None:
        return None
    return phonenumbers.format_number(found, phonenumbers.PhoneNumberFormat.E164)


def _unique(probes: list[Probe]) -> list[Probe]:
    seen: set[str] = set()
    kept = []
    for probe in probes:
        if probe.number not in seen:
            seen.add(probe.number)
            kept.append(probe)
    return kept


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

    async def getvar(self, variable: str, within: float) -> tuple[bool, str]:
        """``(True, value)``, or ``(False, Asterisk's reason)`` when it refuses."""
        response, _ = await self.request(Action.build("Getvar", {"Variable": variable}), within)
        if response.response != "Success":
            return False, response.get("Message") or "no reason given"
        return True, response.get("Value") or ""


async def check_pbx(
    host: str,
    port: int,
    username: str,
    secret: SecretStr,
    *,
    outbound_context: str,
    dial: Sequence[Probe],
    refuse: Sequence[Probe],
    extensions: list[str],
    volunteer_channel: str = "PJSIP/{extension}",
    supervision_context: str = "dialer-supervise",
    power_contexts: tuple[str, str] = ("dialer-power", "dialer-power-join"),
    within: float = 5.0,
) -> list[CheckResult]:
    """Check the PBX; ``dial`` and ``refuse`` come from :func:`probe_numbers`."""
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

        probe = dial[0].exten if dial else "0"
        originate, no_extension = await _check_originate(
            connection, outbound_context, probe, within
        )
        results.append(originate)
        results.append(await _check_resync(connection, within))
        results += await _check_dialplan(
            connection, outbound_context, dial, refuse, within, no_extension=no_extension
        )
        supervision = await _check_supervision(connection, supervision_context, within)
        if supervision is not None:
            results.append(supervision)
        power = await _check_power(connection, power_contexts, within)
        if power is not None:
            results.append(power)
        results.append(await _check_trunk(connection, within))
        endpoint_of = _endpoint_template(volunteer_channel)
        if endpoint_of is not None:
            for extension in dict.fromkeys(extensions):
                results.append(
                    await _check_phone(connection, extension, endpoint_of(extension), within)
                )
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
) -> tuple[CheckResult, bool]:
    """The permission check, and whether Asterisk found no extension for ``number``."""
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
        ), False
    if response.response == "Error" and message in (
        "Originate failed",
        "Extension does not exist.",
    ):
        # Asterisk checks the permission first: either answer means it passed.
        return CheckResult(
            "originate", True, f"may originate calls into {context!r}"
        ), message == "Extension does not exist."
    return CheckResult("originate", False, f"unexpected answer to the probe: {message}"), False


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


# -------------------------------------------------------------------- dialplan


class Verdict(enum.Enum):
    DIALS = "dials"
    REFUSES = "refuses"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Route:
    """What the outbound context does with one number, and why, in plain words."""

    verdict: Verdict
    how: str
    extension: str | None = None  # the extension Asterisk picks, None when none matches


def route_of(context: str, items: Sequence[Message]) -> Route:
    """Follow the extension Asterisk picks from a ``ShowDialPlan`` listing for one number.

    ``items`` are the ``ListDialplan`` events of ``ShowDialPlan`` with
    ``Context`` and ``Extension``: Asterisk lists the matching extensions in
    the order it searches them, so the first one is the one that runs.
    """
    listed = [item for item in items if item.get("Extension") is not None]
    if not listed:
        return Route(Verdict.REFUSES, "no extension matches it, so Asterisk refuses the call")
    chosen_context = listed[0].get("Context") or context
    extension = listed[0].get("Extension") or ""
    steps: dict[int, tuple[str, str]] = {}
    for item in listed:
        number = item.get("Priority") or ""
        if (
            item.get("Context") == chosen_context
            and item.get("Extension") == extension
            and number.isdigit()
        ):
            steps.setdefault(
                int(number), (item.get("Application") or "", item.get("AppData") or "")
            )
    where = f"extension {extension}"
    if chosen_context != context:
        where += f" (of the included context {chosen_context})"
    priority = 1
    while priority in steps:
        application, data = steps[priority]
        key = application.lower()
        if key in _JUMPS:
            target, arguments = _jump_target(data, chosen_context)
            if target == PLACE_CALL_CONTEXT:
                return Route(Verdict.DIALS, f"{where} goes to {PLACE_CALL_CONTEXT}", extension)
            if target == REFUSE_CONTEXT:
                reason = arguments.split(",")[0].strip()
                because = f" ({reason})" if reason else ""
                return Route(
                    Verdict.REFUSES, f"{where} goes to {REFUSE_CONTEXT}{because}", extension
                )
            return Route(Verdict.UNKNOWN, f"{where} runs {application}({data})", extension)
        if key == "dial":
            return Route(Verdict.DIALS, f"{where} dials it: Dial({data})", extension)
        if key in _HANG_UP:
            return Route(Verdict.REFUSES, f"{where} hangs up: {application}({data})", extension)
        if key not in _PASS_THROUGH:
            return Route(Verdict.UNKNOWN, f"{where} runs {application}({data})", extension)
        priority += 1
    return Route(Verdict.REFUSES, f"{where} ends without dialing, so Asterisk hangs up", extension)


def _jump_target(data: str, context: str) -> tuple[str, str]:
    """The context a Goto or Gosub lands in, and the Gosub's arguments."""
    place, _, arguments = data.partition("(")
    parts = [part.strip() for part in place.split(",")]
    target = parts[0] if len(parts) == 3 else context
    return target, arguments.removesuffix(")")


SUPERVISION_MODES = ("listen", "whisper", "barge")


async def _check_supervision(
    connection: _Connection, context: str, within: float
) -> CheckResult | None:
    """Whether the context that rings an organizer into a call is there.

    A warning, not a failure, when it is not: calls work without it, but
    Listen, Whisper and Barge on the live panel ring nobody (the worker's
    Originate is refused and only its log says so).  None when the dialplan
    cannot be read: the dialplan check says that already.
    """
    response, items = await connection.request(
        Action.build("ShowDialPlan", {"Context": context}), within
    )
    fix = (
        f"add the {context} context from asterisk-config/extensions.conf (with dialer-spy; "
        "DIALER_SUPERVISION_CONTEXT names it)"
    )
    if response.response != "Success":
        if not (response.get("Message") or "").startswith("Did not find context"):
            return None
        return CheckResult(
            "supervision",
            True,
            f"the dialplan context {context!r} is missing, so Listen, Whisper and Barge on "
            f"the live panel ring nobody: {fix}",
            warning=True,
        )
    found = {item.get("Extension") for item in items}
    missing = [mode for mode in SUPERVISION_MODES if mode not in found]
    if missing:
        return CheckResult(
            "supervision",
            True,
            f"the dialplan context {context!r} has no {', '.join(missing)} extension, so "
            f"organizers cannot {' or '.join(missing)} from the live panel: {fix}",
            warning=True,
        )
    return CheckResult(
        "supervision", True, f"[{context}] rings organizers into calls (listen, whisper, barge)"
    )


async def _check_power(
    connection: _Connection, contexts: tuple[str, str], within: float
) -> CheckResult | None:
    """Whether power mode's two contexts are there (a warning when not: click-to-call
    works without them, but every power session would end as soon as it starts).

    None when the dialplan cannot be read: the dialplan check says that already.
    """
    missing: list[str] = []
    for context in contexts:
        response, _items = await connection.request(
            Action.build("ShowDialPlan", {"Context": context}), within
        )
        if response.response != "Success":
            if not (response.get("Message") or "").startswith("Did not find context"):
                return None
            missing.append(context)
    session, join = contexts
    if missing:
        return CheckResult(
            "power mode",
            True,
            f"the dialplan context(s) {', '.join(repr(c) for c in missing)} are missing, so "
            "power sessions end as soon as they start: add [dialer-power] and "
            "[dialer-power-join] from asterisk-config/extensions.conf and "
            "asterisk-config/confbridge.conf (DIALER_POWER_CONTEXT and "
            "DIALER_POWER_JOIN_CONTEXT name them)",
            warning=True,
        )
    return CheckResult(
        "power mode",
        True,
        f"[{session}] and [{join}] keep power-mode volunteers on the line "
        "(app_confbridge must be loaded: `module show like confbridge`)",
    )


async def _check_dialplan(
    connection: _Connection,
    context: str,
    dial: Sequence[Probe],
    refuse: Sequence[Probe],
    within: float,
    *,
    no_extension: bool,
) -> list[CheckResult]:
    response, items = await connection.request(
        Action.build("ShowDialPlan", {"Context": context}), within
    )
    message = response.get("Message") or "no reason given"
    if response.response != "Success":
        if message.startswith("Did not find context"):
            return [
                CheckResult(
                    "dialplan",
                    False,
                    f"the dialplan context {context!r} is missing: add the dialer-outbound "
                    "context from asterisk-config/extensions.conf (DIALER_OUTBOUND_CONTEXT names "
                    "it)",
                )
            ]
        unread = f"check-pbx cannot read the dialplan (ShowDialPlan: {message})"
        if message == "Permission denied":
            unread += ": give the AMI user the `reporting` write class"
        if no_extension and dial:
            # The Originate probe still tells this much.
            return [
                CheckResult(
                    "dialplan",
                    False,
                    f"the dialplan context {context!r} is missing or does not accept "
                    f"{dial[0].exten}: add the dialer-outbound context from "
                    "asterisk-config/extensions.conf (DIALER_OUTBOUND_CONTEXT names it); "
                    f"{unread}",
                )
            ]
        return [
            CheckResult(
                "dialplan",
                False,
                f"{unread}, so which numbers it dials or refuses is not known",
            )
        ]
    extensions = {item.get("Extension") for item in items if item.get("Extension") is not None}
    includes = [item.get("IncludeContext") for item in items if item.get("IncludeContext")]
    found = f"{len(extensions)} extension(s)"
    if includes:
        found += f", includes {', '.join(str(name) for name in includes)}"
    results = [CheckResult("dialplan", True, f"context {context!r} is there ({found})")]

    for probe in dial:
        route = await _route(connection, context, probe, within)
        name = f"allows {probe.number}"
        if route.verdict is Verdict.DIALS:
            results.append(CheckResult(name, True, f"{probe.what}: {route.how}"))
        elif route.verdict is Verdict.UNKNOWN:
            results.append(
                CheckResult(
                    name,
                    True,
                    f"{probe.what}: cannot tell whether [{context}] dials it: {route.how}",
                    warning=True,
                )
            )
        else:
            results.append(
                CheckResult(
                    name,
                    False,
                    f"{probe.what}, which the dialer may call, is refused by [{context}]: "
                    f"{route.how}; add a pattern for it that goes to {PLACE_CALL_CONTEXT} (see "
                    "asterisk-config/extensions.conf)",
                )
            )

    dialed: list[Probe] = []
    for probe in refuse:
        route = await _route(connection, context, probe, within)
        name = f"refuses {probe.number}"
        if route.verdict is Verdict.REFUSES:
            results.append(CheckResult(name, True, f"{probe.what}: {route.how}"))
            continue
        dialed.append(probe)
        if route.verdict is Verdict.DIALS:
            what_happens = f"[{context}] DIALS it: {route.how}"
        else:
            what_happens = f"cannot tell whether [{context}] refuses it: {route.how}"
        results.append(
            CheckResult(
                name,
                False,
                f"{probe.what}: {what_happens}; refuse it with a pattern that goes to "
                f"{REFUSE_CONTEXT} (see asterisk-config/extensions.conf)",
            )
        )
    if dialed:
        listed = "; ".join(f"{probe.number}, {probe.what}" for probe in dialed)
        results.append(
            CheckResult(
                "toll fraud",
                False,
                f"[{context}] may dial {len(dialed)} of the {len(refuse)} numbers it must refuse "
                f"({listed}): anyone who gets the AMI secret, or a bug in the dialer, can run up "
                "your phone bill on premium-rate and international calls; put back the refusing "
                "patterns of asterisk-config/extensions.conf",
            )
        )
    return results


async def _route(connection: _Connection, context: str, probe: Probe, within: float) -> Route:
    response, items = await connection.request(
        Action.build("ShowDialPlan", {"Context": context, "Extension": probe.exten}), within
    )
    if response.response == "Success":
        return route_of(context, items)
    message = response.get("Message") or "no reason given"
    if message.startswith("Did not find extension"):
        # The Originate would fail with "Extension does not exist."
        return route_of(context, [])
    return Route(Verdict.UNKNOWN, f"Asterisk would not list its extension ({message})")


# ------------------------------------------------------------ trunk and phones


class _Reach(enum.Enum):
    MISSING = "missing"
    NO_AOR = "no aor"
    NO_CONTACT = "no contact"
    UNREACHABLE = "unreachable"
    NOT_QUALIFIED_YET = "not qualified yet"
    NOT_QUALIFIED = "qualify off"
    REACHABLE = "reachable"


@dataclass(frozen=True, slots=True)
class _Reachability:
    reach: _Reach
    uri: str = ""  # the contact qualify answered from, or the one it did not
    frequency: int = 0  # the AOR's qualify_frequency, seconds


async def _reachability(connection: _Connection, endpoint: str, within: float) -> _Reachability:
    """What Asterisk's qualify knows of ``endpoint``.

    Raises :class:`_Refused` when Asterisk refuses a Getvar.
    """
    context = await _value(connection, f"PJSIP_ENDPOINT({endpoint},context)", within)
    if not context:
        return _Reachability(_Reach.MISSING)
    aors = [
        aor
        for aor in (await _value(connection, f"PJSIP_ENDPOINT({endpoint},aors)", within)).split(",")
        if aor
    ]
    if not aors:
        return _Reachability(_Reach.NO_AOR)
    statuses: list[tuple[str, str, int]] = []
    for aor in aors:
        frequency_text = await _value(connection, f"PJSIP_AOR({aor},qualify_frequency)", within)
        frequency = int(frequency_text) if frequency_text.isdigit() else 0
        contacts = await _value(connection, f"PJSIP_AOR({aor},contact)", within)
        for contact in filter(None, contacts.split(",")):
            status = await _value(connection, f"PJSIP_CONTACT({contact},status)", within)
            uri = await _value(connection, f"PJSIP_CONTACT({contact},uri)", within)
            statuses.append((status, uri, frequency))
    if not statuses:
        return _Reachability(_Reach.NO_CONTACT)
    for status, uri, frequency in statuses:
        if status == "Reachable":
            return _Reachability(_Reach.REACHABLE, uri, frequency)
    # No contact answered; one qualify has not judged yet ("NonQualified",
    # "Unknown") may still: Asterisk rings those, only Unreachable ones not.
    waiting = [entry for entry in statuses if entry[0] != "Unreachable"]
    if not waiting:
        return _Reachability(_Reach.UNREACHABLE, statuses[0][1], statuses[0][2])
    _, uri, frequency = waiting[0]
    return _Reachability(
        _Reach.NOT_QUALIFIED_YET if frequency else _Reach.NOT_QUALIFIED, uri, frequency
    )


class _Refused(Exception):
    pass


async def _value(connection: _Connection, variable: str, within: float) -> str:
    ok, value = await connection.getvar(variable, within)
    if not ok:
        raise _Refused(f"Getvar {variable}: {value}")
    return value


def _endpoint_template(channel: str) -> Callable[[str], str] | None:
    """The PJSIP endpoint the dialer rings for an extension, None for other channel types."""
    if not channel.upper().startswith("PJSIP/"):
        return None

    def endpoint_of(extension: str) -> str:
        # PJSIP/<endpoint>, PJSIP/<user>@<endpoint> or PJSIP/<endpoint>/<uri>.
        resource = channel.format(extension=extension)[len("PJSIP/") :]
        return resource.split("/")[0].rpartition("@")[2]

    return endpoint_of


async def _check_trunk(connection: _Connection, within: float) -> CheckResult:
    ok, trunk = await connection.getvar(f"GLOBAL({TRUNK_VARIABLE})", within)
    if not ok:
        return CheckResult(
            "trunk", False, f"cannot read GLOBAL({TRUNK_VARIABLE}): Asterisk says {trunk}"
        )
    if not trunk:
        return CheckResult(
            "trunk",
            False,
            f"{TRUNK_VARIABLE} is not set, so the dialplan has no trunk to dial contacts "
            f"through: set {TRUNK_VARIABLE}=<your carrier's PJSIP endpoint> in [globals] of "
            "extensions.conf",
        )
    if not _ENDPOINT_NAME.match(trunk):
        return CheckResult(
            "trunk", False, f"{TRUNK_VARIABLE} is {trunk!r}, which is not a PJSIP endpoint name"
        )
    try:
        found = await _reachability(connection, trunk, within)
    except _Refused as error:
        return CheckResult("trunk", False, f"cannot look up endpoints: {error}")
    return _reach_result(
        "trunk",
        f"the carrier trunk {trunk}",
        found,
        missing=(
            f"the carrier trunk {trunk} ({TRUNK_VARIABLE} in [globals] of extensions.conf) is "
            "not a PJSIP endpoint on this PBX: add it to pjsip.conf (see [carrier] in "
            f"asterisk-config/pjsip.conf) or correct {TRUNK_VARIABLE}"
        ),
        no_contact=(
            "its AOR has no contact; set `contact =` to the carrier's SIP proxy (see [carrier] "
            "in asterisk-config/pjsip.conf)"
        ),
        unreachable=(
            f"Asterisk's qualify gets no answer from {found.uri}; is that the carrier's "
            "address, and does the carrier let this PBX in?"
        ),
        unqualified="nothing tells whether the carrier answers: set qualify_frequency = 60",
    )


async def _check_phone(
    connection: _Connection, extension: str, endpoint: str, within: float
) -> CheckResult:
    name = f"phone {extension}"
    if not _ENDPOINT_NAME.match(endpoint):
        return CheckResult(name, False, f"{endpoint!r} is not a PJSIP endpoint name")
    try:
        found = await _reachability(connection, endpoint, within)
    except _Refused as error:
        return CheckResult(name, False, f"cannot look up endpoints: {error}")
    phone = name if endpoint == extension else f"{name} (PJSIP endpoint {endpoint})"
    return _reach_result(
        name,
        phone,
        found,
        missing=(
            f"volunteer extension {extension} is not a PJSIP endpoint on this PBX: add it to "
            "pjsip.conf (see the templates in asterisk-config/pjsip.conf) or fix the user's "
            "extension"
        ),
        no_contact=(
            "it has not registered with Asterisk; is it plugged in, and does it register with "
            "its user name and password (pjsip_secrets.conf)?"
        ),
        unreachable=("Asterisk's qualify gets no answer from it; is it plugged in and registered?"),
        unqualified=(
            "an unplugged phone only shows when a call to it fails: set qualify_frequency = 30"
        ),
    )


def _reach_result(
    name: str,
    subject: str,
    found: _Reachability,
    *,
    missing: str,
    no_contact: str,
    unreachable: str,
    unqualified: str,
) -> CheckResult:
    match found.reach:
        case _Reach.REACHABLE:
            return CheckResult(
                name, True, f"{subject} is reachable (qualify answered from {found.uri})"
            )
        case _Reach.MISSING:
            return CheckResult(name, False, missing)
        case _Reach.NO_AOR:
            return CheckResult(
                name, False, f"{subject} has no AOR (`aors =`), so Asterisk has nowhere to call"
            )
        case _Reach.NO_CONTACT:
            return CheckResult(name, False, f"{subject} is unreachable: {no_contact}")
        case _Reach.UNREACHABLE:
            return CheckResult(name, False, f"{subject} is unreachable: {unreachable}")
        case _Reach.NOT_QUALIFIED_YET:
            return CheckResult(
                name,
                True,
                f"{subject} has not been qualified yet (Asterisk asks it every "
                f"{found.frequency} s), so whether it answers is not known: run check-pbx "
                f"again in {found.frequency} s",
                warning=True,
            )
        case _Reach.NOT_QUALIFIED:
            return CheckResult(
                name,
                True,
                f"{subject} is never qualified (qualify_frequency = 0 in its AOR), so "
                f"{unqualified}",
                warning=True,
            )
