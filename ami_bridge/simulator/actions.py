"""The AMI actions the simulator answers (Login, Logoff, Ping, Events,
Originate (a click-to-call, or an organizer's supervision), Hangup,
CoreShowChannels, Status, Getvar), with Asterisk's
checks before any of them: a logged-in user, a known action, and write
permissions sharing a class with the action's authority.  Originate starts
a :class:`~ami_bridge.simulator.calls.Call`; the list actions answer from
the channels in progress.  :class:`ActionHandlers` is a base of
:class:`~ami_bridge.simulator.server.AmiSimulator`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import ClassVar

from ami_bridge.codec import Message
from ami_bridge.simulator.calls import Call
from ami_bridge.simulator.channels import Channel
from ami_bridge.simulator.exchange import Exchange
from ami_bridge.simulator.power import (
    POWER_CONTEXT,
    POWER_JOIN_CONTEXT,
    POWER_SESSION,
    PowerContactCall,
    PowerSessionCall,
    power_join_session,
)
from ami_bridge.simulator.session import Session
from ami_bridge.simulator.spying import SPY_OPTIONS, SUPERVISION_CONTEXT, SpyCall
from ami_bridge.simulator.users import AmiUser, parse_event_mask

log = logging.getLogger(__name__)

# Write authority of each action, as Asterisk's manager.c registers them.  An
# action is allowed when the user's write permissions share one class with
# it; an empty set means any logged-in user.
_AUTHORITY: dict[str, frozenset[str]] = {
    "login": frozenset(),
    "logoff": frozenset(),
    "challenge": frozenset(),
    "ping": frozenset(),
    "events": frozenset(),
    "originate": frozenset({"originate"}),
    "hangup": frozenset({"system", "call"}),
    "coreshowchannels": frozenset({"system", "reporting"}),
    "status": frozenset({"system", "call", "reporting"}),
    "command": frozenset({"command"}),
    "getvar": frozenset({"call", "reporting"}),
}

_PJSIP_ENDPOINT_FUNCTION = re.compile(r"PJSIP_ENDPOINT\(([^,()]+),([a-z_]+)\)")

# What the dialer-outbound context accepts: numbers, as the recorded dialplan
# (whose "Exten: 1" gave "Extension does not exist.").
_EXTEN = re.compile(r"\+?[0-9]{7,15}\Z")
_TRUE = frozenset({"true", "yes", "1", "on", "y", "t"})
_CALLER_ID = re.compile(r'\s*(?:"(?P<qname>[^"]*)"|(?P<name>[^<]*?))\s*<(?P<num>[^>]*)>\s*\Z')


class ActionHandlers(Exchange):
    """The actions the simulator answers.  The state they need beyond
    :class:`Exchange` is only declared here: ``AmiSimulator.__init__`` sets
    it up."""

    _users: dict[str, AmiUser]
    contexts: frozenset[str] | None
    endpoints: frozenset[str] | None
    _pending_drops: dict[str, bool]
    action_counts: Counter[str]
    actions: deque[Message]

    def _handle_action(self, session: Session, message: Message) -> None:
        name = message.get("Action")
        action_id = message.get("ActionID")
        self.actions.append(message)
        self.action_counts[name or ""] += 1
        key = (name or "").lower()
        drop = self._pending_drops.pop(key, None)
        if drop is not None:
            log.info("simulator: dropping the connection on %s as asked", name)
            if drop:
                session.muted = True
                self._dispatch(session, key, name, message, action_id)
            session.abort()
            return
        self._dispatch(session, key, name, message, action_id)

    def _dispatch(
        self, session: Session, key: str, name: str | None, message: Message, action_id: str | None
    ) -> None:
        if not name:
            self._respond(session, action_id, "Error", "Missing action in request")
            return
        if session.user is None and key not in ("login", "logoff", "challenge"):
            self._respond(session, action_id, "Error", "Permission denied")
            return
        handler = self._handlers.get(key)
        authority = _AUTHORITY.get(key)
        if authority is None:
            self._respond(
                session,
                action_id,
                "Error",
                f"Invalid/unknown command: {name}. "
                "Use Action: ListCommands to show available commands.",
            )
            return
        if authority and session.user is not None and not (session.user.write & authority):
            self._respond(session, action_id, "Error", "Permission denied")
            return
        if handler is None:
            self._respond(session, action_id, "Error", f"{name} is not simulated")
            return
        handler(self, session, message, action_id)

    def _login(self, session: Session, message: Message, action_id: str | None) -> None:
        username = message.get("Username") or ""
        user = self._users.get(username)
        secret = message.get("Secret") or ""
        if user is None or not hmac.compare_digest(user.secret.encode(), secret.encode()):
            log.info("simulator: AMI login refused for user %r", username)
            # Asterisk sleeps a second before refusing, then ends the session.
            session.ignore_input = True

            def refuse() -> None:
                self._respond(session, action_id, "Error", "Authentication failed")
                session.close()

            asyncio.get_running_loop().call_later(self.time_scale, refuse)
            return
        if "Events" in message:
            session.mask = parse_event_mask(message["Events"])
        session.set_user(user)
        self._respond(session, action_id, "Success", "Authentication accepted")
        if "system" in session.receive:
            uptime = int(self._now())
            session.write(
                (
                    "Event: FullyBooted\r\nPrivilege: system,all\r\n"
                    f"Uptime: {uptime}\r\nLastReload: {uptime}\r\nStatus: Fully Booted\r\n\r\n"
                ).encode()
            )

    def _logoff(self, session: Session, message: Message, action_id: str | None) -> None:
        self._respond(session, action_id, "Goodbye", "Thanks for all the fish.")
        session.close()

    def _ping(self, session: Session, message: Message, action_id: str | None) -> None:
        self._respond(
            session, action_id, "Success", extra=f"Ping: Pong\r\nTimestamp: {time.time():.6f}\r\n"
        )

    def _events(self, session: Session, message: Message, action_id: str | None) -> None:
        session.set_mask(parse_event_mask(message.get("EventMask") or "off"))
        state = "On" if session.mask else "Off"
        self._respond(session, action_id, "Success", extra=f"Events: {state}\r\n")

    def _originate(self, session: Session, message: Message, action_id: str | None) -> None:
        request = message.get("Channel") or ""
        if not request:
            self._respond(session, action_id, "Error", "Channel not specified")
            return
        if message.get("Application"):
            self._respond(
                session, action_id, "Error", "Originate to an application is not simulated"
            )
            return
        # A power session's contact: its volunteer leg is the session's conference.
        joins = power_join_session(request)
        if request.lower().startswith("local/") and joins is None:
            # A volunteer's own number (Local/<number>@dialer-outbound/n): not
            # imitated yet; refused plainly, never played wrong.
            self._respond(session, action_id, "Error", "A Local volunteer channel is not simulated")
            return
        context = message.get("Context") or ""
        exten = message.get("Exten") or ""
        # An organizer's phone rung into a live call (ami_bridge.simulator.spying).
        spying = context == SUPERVISION_CONTEXT
        # A power session's leg: the volunteer's phone into its conference.
        powering = context == POWER_CONTEXT
        if spying:
            known = exten in SPY_OPTIONS
        elif powering:
            known = bool(POWER_SESSION.match(exten))
        else:
            known = bool(_EXTEN.match(exten))
        if not known or not context or not self._context_exists(context):
            self._respond(session, action_id, "Error", "Extension does not exist.")
            return
        try:
            priority = int(message.get("Priority") or "1")
        except ValueError:
            self._respond(session, action_id, "Error", "Invalid priority")
            return
        timeout_text = message.get("Timeout") or "30000"
        timeout_ms = int(timeout_text) if timeout_text.isdigit() else 30000
        is_async = (message.get("Async") or "false").lower() in _TRUE
        variables: list[tuple[str, str]] = []
        for header in message.getall("Variable"):
            # Asterisk splits a Variable header on commas: the injection the
            # encoder refuses on our side.
            for part in header.split(","):
                var, _, value = part.partition("=")
                if var:
                    variables.append((var, value))
        cid_num, cid_name = _parse_caller_id(message.get("CallerID"))
        tech, _, resource = request.partition("/")
        channel_id = message.get("ChannelId") or None
        exists = (tech.upper() == "PJSIP" and self._endpoint_exists(resource)) or (
            joins is not None and self._context_exists(POWER_JOIN_CONTEXT)
        )
        failed_uniqueid = channel_id or "<unknown>"
        # A ChannelId already in use: Asterisk cannot allocate the channel,
        # which fails like a missing endpoint (but under no Uniqueid: the
        # one asked for belongs to another call).
        if channel_id is not None and (channel_id in self._calls or channel_id in self._uniqueids):
            exists = False
            failed_uniqueid = "<unknown>"
        if is_async:
            self._respond(session, action_id, "Success", "Originate successfully queued")
        if not exists:

            def fail() -> None:
                if is_async:
                    # Asterisk names the channel it was asked for, under the
                    # ChannelId it would have had.
                    self._originate_response(
                        action_id, "Failure", request, context, exten, 0, failed_uniqueid,
                        cid_num or "<unknown>", cid_name or "<unknown>",
                    )  # fmt: skip
                else:
                    self._respond(session, action_id, "Error", "Originate failed")

            asyncio.get_running_loop().call_soon(fail)
            return
        play: type[Call] = Call
        if spying:
            play = SpyCall
        elif powering:
            play = PowerSessionCall
        elif joins is not None:
            play = PowerContactCall
        call = play(
            self,
            request=request,
            resource=resource,
            context=context,
            exten=exten,
            priority=priority,
            timeout=timeout_ms / 1000,
            channel_id=channel_id,
            other_channel_id=message.get("OtherChannelId") or None,
            variables=variables,
            cid=(cid_num, cid_name),
            action_id=action_id,
            sync_session=None if is_async else session,
        )
        self._calls[call.linkedid] = call
        call.task = asyncio.create_task(call.run())

    def _context_exists(self, context: str) -> bool:
        return self.contexts is None or context in self.contexts

    def _endpoint_exists(self, resource: str) -> bool:
        if not resource.isdigit():
            return False
        return self.endpoints is None or resource in self.endpoints

    def _getvar(self, session: Session, message: Message, action_id: str | None) -> None:
        # Only the dialplan functions `dialer check-pbx` reads without a
        # channel; Asterisk answers an unknown endpoint with an empty value.
        variable = message.get("Variable") or ""
        if not variable:
            self._respond(session, action_id, "Error", "No variable specified")
            return
        value = ""
        endpoint = _PJSIP_ENDPOINT_FUNCTION.fullmatch(variable)
        if endpoint is not None and self._endpoint_exists(endpoint.group(1)):
            value = {"context": "from-phones", "aors": endpoint.group(1)}.get(endpoint.group(2), "")
        self._respond(
            session, action_id, "Success", extra=f"Variable: {variable}\r\nValue: {value}\r\n"
        )

    def _hangup(self, session: Session, message: Message, action_id: str | None) -> None:
        target = message.get("Channel") or ""
        try:
            cause = int(message.get("Cause") or "16")
        except ValueError:
            cause = 16
        if not target:
            self._respond(session, action_id, "Error", "No channel specified")
            return
        if len(target) > 1 and target.startswith("/") and target.endswith("/"):
            try:
                pattern = re.compile(target[1:-1])
            except re.error:
                self._respond(session, action_id, "Error", "Invalid regex")
                return
            matched = [c for name, c in self._channels.items() if pattern.search(name)]
            self._respond(
                session,
                action_id,
                "Success",
                "Channels hung up will follow",
                "EventList: start\r\n",
            )
            for channel in matched:
                session.write(
                    (
                        f"Event: ChannelHungup\r\nChannel: {channel.name}\r\n"
                        f"{self._id_line(action_id)}\r\n"
                    ).encode()
                )
            session.write(
                (
                    f"Event: ChannelsHungupListComplete\r\n{self._id_line(action_id)}"
                    f"EventList: Complete\r\nListItems: {len(matched)}\r\n\r\n"
                ).encode()
            )
            for channel in matched:
                if channel.name in self._channels:
                    channel.call.hangup_by_action(channel, cause)
            return
        found = self._channels.get(target)
        if found is None:
            self._respond(session, action_id, "Error", "No such channel")
            return
        self._respond(session, action_id, "Success", "Channel Hungup")
        found.call.hangup_by_action(found, cause)

    def _duration(self, channel: Channel) -> int:
        return int((time.monotonic() - channel.created) / self.time_scale)

    def _core_show_channels(
        self, session: Session, message: Message, action_id: str | None
    ) -> None:
        self._respond(session, action_id, "Success", "Channels will follow", "EventList: start\r\n")
        id_line = self._id_line(action_id)
        channels = list(self._channels.values())
        for channel in channels:
            seconds = self._duration(channel)
            hours, rest = divmod(seconds, 3600)
            duration = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
            session.write(
                (
                    f"Event: CoreShowChannel\r\n{id_line}{channel.block()}"
                    f"Application: {channel.application}\r\n"
                    f"ApplicationData: {channel.app_data}\r\n"
                    f"Duration: {duration}\r\nBridgeId: {channel.bridge_id}\r\n\r\n"
                ).encode()
            )
        session.write(
            (
                f"Event: CoreShowChannelsComplete\r\n{id_line}EventList: Complete\r\n"
                f"ListItems: {len(channels)}\r\n\r\n"
            ).encode()
        )

    def _status(self, session: Session, message: Message, action_id: str | None) -> None:
        wanted = message.get("Channel")
        if wanted:
            found = self._channels.get(wanted)
            if found is None:
                self._respond(session, action_id, "Error", "No such channel")
                return
            channels = [found]
        else:
            channels = list(self._channels.values())
        self._respond(
            session, action_id, "Success", "Channel status will follow", "EventList: start\r\n"
        )
        id_line = self._id_line(action_id)
        for c in channels:
            session.write(
                (
                    f"Event: Status\r\nPrivilege: Call\r\n{c.block()}Type: {c.tech}\r\nDNID: \r\n"
                    f"EffectiveConnectedLineNum: {c.conn_num}\r\n"
                    f"EffectiveConnectedLineName: {c.conn_name}\r\nTimeToHangup: 0\r\n"
                    f"BridgeID: {c.bridge_id}\r\nApplication: {c.application}\r\n"
                    f"Data: {c.app_data}\r\nNativeformats: (ulaw)\r\nReadformat: ulaw\r\n"
                    "Readtrans: \r\nWriteformat: ulaw\r\nWritetrans: \r\nCallgroup: 0\r\n"
                    f"Pickupgroup: 0\r\nSeconds: {self._duration(c)}\r\n{id_line}\r\n"
                ).encode()
            )
        session.write(
            (
                f"Event: StatusComplete\r\n{id_line}EventList: Complete\r\n"
                f"ListItems: {len(channels)}\r\nItems: {len(channels)}\r\n\r\n"
            ).encode()
        )

    _handlers: ClassVar[
        dict[str, Callable[[ActionHandlers, Session, Message, str | None], None]]
    ] = {
        "login": _login,
        "logoff": _logoff,
        "ping": _ping,
        "events": _events,
        "originate": _originate,
        "hangup": _hangup,
        "coreshowchannels": _core_show_channels,
        "status": _status,
        "getvar": _getvar,
    }


def _parse_caller_id(text: str | None) -> tuple[str | None, str | None]:
    """``"Name" <num>`` / ``Name <num>`` / ``num`` -> (num, name)."""
    if not text:
        return None, None
    match = _CALLER_ID.match(text)
    if match is None:
        return text.strip(), ""
    name = match.group("qname")
    if name is None:
        name = match.group("name") or ""
    return match.group("num").strip(), name.strip()
