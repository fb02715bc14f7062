"""The JSON API: what the pages use and what integrations call.

Authentication is the session cookie (sign in with ``POST /api/session``);
every state-changing call carries the ``X-CSRF-Token`` header.  Errors are
``{"error": {"code", "message", "fields"?}}`` with a stable ``code``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from dialer.domain.numbers import display as display_number
from dialer.domain.outcomes import parse_submission
from dialer.domain.passwords import MAX_PASSWORD_LENGTH
from dialer.domain.ports import spy_mode
from dialer.domain.vocabulary import CallState, VolunteerPhone
from dialer.services.accounts import LoginRefusalCode, LoginRefused
from dialer.services.call_history import PendingOutcome
from dialer.services.calling import OutcomePending, SupervisionRefused
from dialer.services.common import NotAllowed
from dialer.services.contacts import MAX_NOTE
from dialer.services.lists import NextContact
from dialer.services.live_calls import call_payload, session_payload
from dialer.services.outcomes import MAX_SKIP_NOTE, SKIP_REASONS, OutcomeAlreadyRecorded
from dialer.services.power import PowerService, SessionView
from dialer.services.volunteer_phones import phone_choices
from dialer.store.models import CallAttempt, User
from web.config import ice_urls
from web.deps import config_key, deps_key, hub_key
from web.errors import ApiError
from web.forms import parse_id
from web.i18n import labels
from web.i18n.translate import _, fmt_datetime
from web.input_guard import parse_json_object
from web.live.sse import stream
from web.routes.openapi import openapi_document
from web.security import (
    DEVICE_COOKIE,
    SESSION_COOKIE,
    client_ip,
    current_session,
    not_found,
    require_user,
    session_phone,
    set_device_cookie,
)

routes = web.RouteTableDef()

MAX_JSON = 64 * 1024


async def read_json(request: web.Request, *, limit: int = MAX_JSON) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type", _("Send JSON (Content-Type: application/json).")
        )
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", _("The request is too large."))
    body = b""
    # read(n) returns what has arrived so far: a body sent in several packets
    # needs several reads.
    while len(body) <= limit and (chunk := await request.content.read(limit + 1 - len(body))):
        body += chunk
    if len(body) > limit:
        raise ApiError(413, "too_large", _("The request is too large."))
    # Depth, NUL bytes and lone surrogates are refused there, with the field named.
    return parse_json_object(body)


def _int(value: Any, field: str, *, required: bool = True) -> int | None:
    if value is None or value == "":
        if required:
            raise ApiError(
                422, "invalid", _("Some answers need fixing."), fields={field: _("Required.")}
            )
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ApiError(
            422,
            "invalid",
            _("Some answers need fixing."),
            fields={field: _("Enter a whole number.")},
        )
    try:
        number = int(value)
    except ValueError:
        raise ApiError(
            422,
            "invalid",
            _("Some answers need fixing."),
            fields={field: _("Enter a whole number.")},
        ) from None
    if not 0 < number < 2**31:
        raise ApiError(
            422, "invalid", _("Some answers need fixing."), fields={field: _("Out of range.")}
        )
    return number


def _query_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    value = parse_id(raw)
    if value is None:
        raise ApiError(400, "bad_request", _("Bad parameter: %(name)s.", name=name))
    return value


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role.value,
        "extension": user.sip_extension,
        "language": user.language,
    }


def call_json(call: CallAttempt, contact_name: str | None = None) -> dict[str, Any]:
    payload = call_payload(call)
    payload["state_label"] = labels.call_state(call.state)
    payload["outcome_label"] = labels.call_outcome(call.outcome)
    if contact_name is not None:
        payload["contact_name"] = contact_name
    return payload


def pending_url(contact_id: int, campaign_id: int | None, call_id: str) -> str:
    """The contact page that reopens the outcome form of a pending call."""
    query: dict[str, str | int] = {"call": call_id}
    if campaign_id is not None:
        query = {"campaign": campaign_id, **query}
    return f"/contacts/{contact_id}?{urlencode(query)}"


def pending_json(pending: PendingOutcome) -> dict[str, Any]:
    call = pending.call
    return {
        "call_id": call.call_id,
        "contact_id": call.contact_id,
        "campaign_id": call.campaign_id,
        "contact_name": pending.contact.full_name,
        "url": pending_url(call.contact_id, call.campaign_id, call.call_id),
    }


def outcome_pending_error(pending: OutcomePending) -> ApiError:
    return ApiError(
        409,
        "outcome_pending",
        _("Record the outcome of your last answered call, or skip it, before calling again."),
        extra={
            "call_id": pending.call_id,
            "contact_id": pending.contact_id,
            "campaign_id": pending.campaign_id,
            "url": pending_url(pending.contact_id, pending.campaign_id, pending.call_id),
        },
    )


# -- session -----------------------------------------------------------------------


@routes.post("/api/session")
async def api_sign_in(request: web.Request) -> web.Response:
    runtime = request.app[deps_key]
    config = request.app[config_key]
    # Room for the longest password, each character escaped (12 bytes at worst).
    body = await read_json(request, limit=4096 + 12 * MAX_PASSWORD_LENGTH)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(422, "invalid", _("Give a username and a password."))
    try:
        signed = await runtime.accounts.sign_in(
            username=username,
            # Never cut: sign-in refuses what is longer than any password could be.
            password=password,
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
            device_token=request.cookies.get(DEVICE_COOKIE, ""),
            policy=config.session_policy,
            limits=config.login_limits,
        )
    except LoginRefused as refused:
        if refused.code is LoginRefusalCode.TOO_MANY_ATTEMPTS:
            seconds = int(refused.retry_after.total_seconds()) + 1 if refused.retry_after else 60
            raise ApiError(
                429,
                "too_many_attempts",
                _("Too many failed sign-ins; wait a few minutes and try again."),
                headers={"Retry-After": str(seconds)},
            ) from None
        raise ApiError(401, "bad_credentials", _("Wrong username or password.")) from None
    response = web.json_response(
        {"user": user_json(signed.user), "csrf_token": signed.session.csrf_token}
    )
    set_session_cookie(request, response, signed.token)
    set_device_cookie(request, response, signed.device_token)
    return response


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    config = request.app[config_key]
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        secure=config.secure_cookies,
        samesite="Lax",
        path="/",
        max_age=int(config.session_policy.absolute.total_seconds()),
    )


@routes.delete("/api/session")
async def api_sign_out(request: web.Request) -> web.Response:
    require_user(request)
    await request.app[deps_key].accounts.end_session(request.cookies.get(SESSION_COOKIE, ""))
    response = web.json_response({"signed_out": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@routes.get("/api/me")
async def api_me(request: web.Request) -> web.Response:
    user = require_user(request)
    web_session = current_session(request)
    pending = await request.app[deps_key].calls.pending_outcome(user)
    return web.json_response(
        {
            "user": user_json(user),
            "confirm_before_dial": web_session.confirm_before_dial if web_session else True,
            # The answered call whose outcome is still owed: the form reopens there.
            "outcome_pending": pending_json(pending) if pending is not None else None,
        }
    )


@routes.get("/api/phone")
async def api_phone(request: web.Request) -> web.Response:
    """The signed-in user's phone; for a browser phone, what it registers with.

    The SIP password goes to its own user's browser only, in this response
    (never cached: every API response is no-store) and nowhere else.
    """
    user = require_user(request)
    kind = session_phone(request) or user.phone
    choices = [choice.value for choice in phone_choices(user)]
    if kind is not VolunteerPhone.BROWSER:
        return web.json_response({"kind": kind.value, "choices": choices})
    config = request.app[config_key]
    if not config.phone_ws_url or not user.sip_extension or not user.sip_secret:
        raise ApiError(
            503,
            "phone_not_configured",
            _(
                "The browser phone is not set up on this server yet. "
                "Ask an administrator to set DIALER_WEB_PHONE_WS_URL (docs/deploy.md)."
            ),
        )
    ice: list[dict[str, Any]] = []
    for url in ice_urls(config.phone_ice_servers):
        server: dict[str, Any] = {"urls": url}
        if url.startswith("turn") and config.phone_turn_username:
            server["username"] = config.phone_turn_username
            server["credential"] = config.phone_turn_password.get_secret_value()
        ice.append(server)
    return web.json_response(
        {
            "kind": VolunteerPhone.BROWSER.value,
            "choices": choices,
            "websocket": config.phone_ws_url,
            "uri": f"sip:{user.sip_extension}@{config.phone_domain}",
            "username": user.sip_extension,
            "password": user.sip_secret,
            "display_name": user.display_name or user.username,
            "ice_servers": ice,
            # The extension the test call dials: Echo() in [from-phones].
            "echo_test": "*43",
        }
    )


@routes.post("/api/phone")
async def api_choose_phone(request: web.Request) -> web.Response:
    """This session's calls ring ``kind``: the user's usual phone or their approved own number."""
    user = require_user(request)
    body = await read_json(request, limit=1024)
    kind = body.get("kind")
    offered = {choice.value: choice for choice in phone_choices(user)}
    if not isinstance(kind, str) or kind not in offered:
        raise ApiError(
            422,
            "invalid",
            _("Some answers need fixing."),
            fields={"kind": _("Choose one of your phones.")},
        )
    web_session = current_session(request)
    assert web_session is not None
    await request.app[deps_key].accounts.set_session_phone(web_session.id, offered[kind])
    return web.json_response({"kind": kind, "choices": list(offered)})


@routes.post("/api/preferences")
async def api_preferences(request: web.Request) -> web.Response:
    require_user(request)
    body = await read_json(request, limit=1024)
    confirm = body.get("confirm_before_dial")
    if not isinstance(confirm, bool):
        raise ApiError(
            422,
            "invalid",
            _("Some answers need fixing."),
            fields={"confirm_before_dial": _("Answer yes or no.")},
        )
    web_session = current_session(request)
    assert web_session is not None
    await request.app[deps_key].accounts.set_confirm_before_dial(web_session.id, confirm)
    return web.json_response({"confirm_before_dial": confirm})


# -- calls -------------------------------------------------------------------------


@routes.post("/api/calls")
async def api_start_call(request: web.Request) -> web.Response:
    user = require_user(request)
    body = await read_json(request, limit=4096)
    caller_id = body.get("caller_id")
    if caller_id is not None and (not isinstance(caller_id, str) or len(caller_id) > 40):
        raise ApiError(
            422,
            "invalid",
            _("Some answers need fixing."),
            fields={"caller_id": _("Not a caller ID.")},
        )
    service = request.app[deps_key].service
    try:
        call = await service.start_call(
            volunteer_id=user.id,
            contact_id=_int(body.get("contact_id"), "contact_id") or 0,
            phone_id=_int(body.get("phone_id"), "phone_id", required=False),
            campaign_id=_int(body.get("campaign_id"), "campaign_id", required=False),
            caller_id=caller_id or None,
            volunteer_phone=session_phone(request),
        )
    except OutcomePending as pending:
        raise outcome_pending_error(pending) from None
    return web.json_response(
        call_json(call), status=201, headers={"Location": f"/api/calls/{call.call_id}"}
    )


async def _visible_call(request: web.Request, user: User) -> tuple[CallAttempt, str]:
    call_id = request.match_info["call_id"]
    if len(call_id) > 64:
        raise not_found(request)
    found = await request.app[deps_key].calls.call(user, call_id)
    if found is None:
        raise not_found(request)
    return found.call, found.contact_name


@routes.get("/api/calls/{call_id}")
async def api_call_state(request: web.Request) -> web.Response:
    user = require_user(request)
    call, name = await _visible_call(request, user)
    return web.json_response(call_json(call, name))


@routes.post("/api/calls/{call_id}/hangup")
async def api_hang_up(request: web.Request) -> web.Response:
    user = require_user(request)
    call, _name = await _visible_call(request, user)
    await request.app[deps_key].service.hang_up(user.id, call.call_id)
    return web.json_response(
        {"call_id": call.call_id, "hangup_requested": call.state is not CallState.ENDED}, status=202
    )


@routes.post("/api/calls/{call_id}/supervise")
async def api_supervise(request: web.Request) -> web.Response:
    """Ring the organizer's own phone into a live call: listen, whisper or barge.

    Only the mode comes from the body; which channel is spied on is the
    worker's to know.  A call the user may not supervise answers as one
    they cannot see.
    """
    user = require_user(request)
    call, _name = await _visible_call(request, user)
    body = await read_json(request, limit=1024)
    mode = spy_mode(body.get("mode"))
    if mode is None:
        raise ApiError(
            422,
            "invalid",
            _("Choose listen, whisper or barge."),
            fields={"mode": _("Choose listen, whisper or barge.")},
        )
    try:
        await request.app[deps_key].service.supervise(user.id, call.call_id, mode)
    except SupervisionRefused as refused:
        if refused.code == "no_phone":
            raise ApiError(
                409, "no_phone", _("You have no phone the dialer can ring; ask an administrator.")
            ) from None
        if refused.code == "bad_mode":
            raise ApiError(
                422,
                "invalid",
                _("Choose listen, whisper or barge."),
                fields={"mode": _("Choose listen, whisper or barge.")},
            ) from None
        raise ApiError(
            409, "call_not_live", _("Only a call whose volunteer has answered can be joined.")
        ) from None
    return web.json_response({"call_id": call.call_id, "mode": mode, "ringing": True}, status=202)


def power_json(view: SessionView | None) -> dict[str, Any]:
    """A volunteer's power session, as their page and integrations read it."""
    if view is None:
        return {"session": None}
    row = view.session
    payload = session_payload(row)
    payload["state_label"] = labels.power_state(row.state)
    payload["end_reason_label"] = labels.power_end_reason(row.end_reason)
    payload["waiting_label"] = labels.power_waiting(row.waiting_reason, row.waiting_until)
    call = view.call
    payload["call"] = (
        None
        if call is None
        else {
            **call_json(call, call.contact.full_name),
            "url": pending_url(call.contact_id, call.campaign_id, call.call_id),
        }
    )
    # Dialed while ``call``'s outcome is still owed (a campaign that dials
    # the next contact as a call ends): shown beside the outcome form.
    following = view.next_call
    payload["next_call"] = (
        None if following is None else call_json(following, following.contact.full_name)
    )
    return {"session": payload}


@routes.get("/api/power")
async def api_power_session(request: web.Request) -> web.Response:
    """The caller's power session: live, else their last one (how it ended)."""
    user = require_user(request)
    view = await request.app[deps_key].power.current(user.id)
    return web.json_response(power_json(view))


@routes.post("/api/power")
async def api_start_power(request: web.Request) -> web.Response:
    """Start calling in power mode: the caller's phone is called once, then
    the contacts of their list one after the other."""
    user = require_user(request)
    body = await read_json(request, limit=1024)
    campaign_id = _int(body.get("campaign_id"), "campaign_id") or 0
    power = request.app[deps_key].power
    try:
        await power.start(user.id, campaign_id, phone=session_phone(request))
    except OutcomePending as pending:
        raise outcome_pending_error(pending) from None
    return web.json_response(
        power_json(await power.current(user.id)), status=201, headers={"Location": "/api/power"}
    )


async def _power_changed(
    request: web.Request, change: Callable[[PowerService, int], Awaitable[object]]
) -> web.Response:
    user = require_user(request)
    power = request.app[deps_key].power
    try:
        await change(power, user.id)
    except NotAllowed:
        raise ApiError(409, "no_power_session", _("You are not in a power session.")) from None
    return web.json_response(power_json(await power.current(user.id)))


@routes.post("/api/power/pause")
async def api_power_pause(request: web.Request) -> web.Response:
    """No new contact after the current one, until resumed; the reason is kept."""
    body = await read_json(request, limit=1024)
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise ApiError(
            422,
            "invalid",
            _("Some answers need fixing."),
            fields={"reason": _("Write a few words.")},
        )
    return await _power_changed(request, lambda power, user: power.pause(user, reason))


@routes.post("/api/power/resume")
async def api_power_resume(request: web.Request) -> web.Response:
    return await _power_changed(request, lambda power, user: power.resume(user))


@routes.post("/api/power/last-call")
async def api_power_last_call(request: web.Request) -> web.Response:
    """The session ends once the current contact is wrapped up."""
    return await _power_changed(request, lambda power, user: power.last_call(user))


@routes.post("/api/power/leave")
async def api_power_leave(request: web.Request) -> web.Response:
    """Hang the caller's line up now; the session ends."""
    return await _power_changed(request, lambda power, user: power.leave(user))


@routes.post("/api/calls/{call_id}/skip-outcome")
async def api_skip_outcome(request: web.Request) -> web.Response:
    """Leave an answered call without its outcome, saying why."""
    user = require_user(request)
    call, _name = await _visible_call(request, user)
    body = await read_json(request, limit=4096)
    reason, note = body.get("reason"), body.get("note", "")
    fields: dict[str, str] = {}
    if not isinstance(reason, str) or reason not in SKIP_REASONS:
        fields["reason"] = _("Choose a reason.")
    if not isinstance(note, str):
        fields["note"] = _("Write a few words.")
    elif len(note) > MAX_SKIP_NOTE:
        fields["note"] = _("At most %(count)s characters.", count=MAX_SKIP_NOTE)
    elif reason == "other" and not note.strip():
        fields["note"] = _("Say why in a few words.")
    if fields:
        raise ApiError(422, "invalid", _("Some answers need fixing."), fields=fields)
    assert isinstance(reason, str) and isinstance(note, str)
    try:
        result = await request.app[deps_key].outcomes.skip_outcome(
            user.id, call.call_id, reason=reason, note=note
        )
    except OutcomeAlreadyRecorded:
        raise ApiError(
            409, "outcome_recorded", _("This call's outcome is already recorded.")
        ) from None
    return web.json_response({"call_id": result.call_id, "skipped": result.skipped})


# -- outcomes, notes, lists ---------------------------------------------------------


@routes.post("/api/outcomes")
async def api_record_outcome(request: web.Request) -> web.Response:
    user = require_user(request)
    body = await read_json(request)
    submission = parse_submission(body)
    result = await request.app[deps_key].outcomes.record_outcome(user.id, submission)
    return web.json_response(
        {
            "submission_id": submission.submission_id,
            "disposition_id": result.disposition_id,
            "duplicate": result.duplicate,
        },
        status=200 if result.duplicate else 201,
    )


@routes.post("/api/contacts/{contact_id:\\d{1,9}}/notes")
async def api_add_note(request: web.Request) -> web.Response:
    user = require_user(request)
    contact_id = int(request.match_info["contact_id"])
    body = await read_json(request)
    text = body.get("body")
    call_id = body.get("call_id")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(
            422,
            "invalid",
            _("Some answers need fixing."),
            fields={"body": _("Write a note first.")},
        )
    if len(text) > MAX_NOTE:
        raise ApiError(
            422,
            "invalid",
            _("Some answers need fixing."),
            fields={"body": _("At most %(count)s characters.", count=MAX_NOTE)},
        )
    if call_id is not None and (not isinstance(call_id, str) or len(call_id) > 64):
        raise ApiError(
            422, "invalid", _("Some answers need fixing."), fields={"call_id": _("Not a call.")}
        )
    note = await request.app[deps_key].contacts.add_note(
        user, contact_id, body=text.strip(), call_id=call_id
    )
    if note is None:
        raise not_found(request)
    return web.json_response(
        {
            "id": note.id,
            "created_at": note.created_at.isoformat(),
            "created_label": fmt_datetime(note.created_at, "short"),
        },
        status=201,
    )


def next_contact_json(found: NextContact) -> dict[str, Any]:
    contact = found.contact
    return {
        "contact": None
        if contact is None
        else {
            "id": contact.id,
            "name": contact.full_name,
            "language": contact.language,
            "phones": [
                {"id": phone.id, "number": phone.e164, "display": display_number(phone.e164)}
                for phone in contact.phones
                if not phone.wrong_number and not phone.do_not_call
            ],
        },
        "is_callback": found.is_callback,
        "empty_reason": found.empty_reason,
        "message": labels.empty_list_reason(found.empty_reason, found.available_at)
        if contact is None
        else "",
        "available_at": found.available_at.isoformat() if found.available_at else None,
    }


@routes.get("/api/campaigns/{campaign_id:\\d{1,9}}/next")
async def api_next_contact(request: web.Request) -> web.Response:
    user = require_user(request)
    campaign_id = int(request.match_info["campaign_id"])
    owner = _query_int(request, "owner")
    runtime = request.app[deps_key]
    if await runtime.campaigns.visible_to(user, campaign_id) is None:
        raise not_found(request)
    pending = await runtime.calls.pending_outcome(user)
    if pending is not None:
        # Back to the contact whose outcome is owed, not on to a new one.
        answer = next_contact_json(NextContact(contact=pending.contact))
        answer["outcome_pending"] = pending_json(pending)
        return web.json_response(answer)
    found = await runtime.lists.next_contact(user.id, campaign_id, list_owner_id=owner)
    return web.json_response(next_contact_json(found) | {"outcome_pending": None})


# -- live --------------------------------------------------------------------------


@routes.get("/api/live/events")
async def api_live_events(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    config = request.app[config_key]
    return await stream(request, request.app[hub_key], user, keepalive=config.sse_keepalive_seconds)


@routes.get("/api/live/snapshot")
async def api_live_snapshot(request: web.Request) -> web.Response:
    user = require_user(request)
    hub = request.app[hub_key]
    client = await hub.join(user)
    try:
        snapshot = await hub.snapshot_for(client)
    finally:
        hub.unregister(client)
    return web.json_response(snapshot)


@routes.get("/api/openapi.json")
async def api_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())
