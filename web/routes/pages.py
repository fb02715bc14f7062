"""Pages for everyone signed in: sign-in, campaigns, lists, contacts, the call screen."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from dialer.domain.compliance import CallRefused, RefusalCode, contact_zones
from dialer.domain.numbers import display as display_number
from dialer.domain.survey import SurveyDefinition
from dialer.domain.vocabulary import (
    DialingMode,
    DispositionOutcome,
    PhoneType,
    Role,
    VolunteerPhone,
)
from dialer.services.accounts import LoginRefusalCode, LoginRefused
from dialer.services.call_endings import AUTOMATIC_ABSENT
from dialer.services.calling import OutcomePending
from dialer.services.contacts import ContactFilter
from dialer.store.access import STAFF_ROLES
from dialer.store.models import Campaign, User, utcnow
from web.deps import config_key, deps_key, templates_key
from web.forms import parse_id, read_form
from web.i18n import labels
from web.i18n import translate as i18n
from web.i18n.translate import _
from web.routes.api import pending_url, power_json, set_session_cookie
from web.security import (
    DEVICE_COOKIE,
    LANGUAGE_COOKIE,
    SESSION_COOKIE,
    client_ip,
    current_session,
    current_user,
    not_found,
    require_user,
    safe_next,
    session_phone,
    set_device_cookie,
)
from web.templating import render

routes = web.RouteTableDef()


def page(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    return render(request, request.app[templates_key], template, context, status=status)


def _query_int(request: web.Request, name: str) -> int | None:
    return parse_id(request.query.get(name, ""))


# -- signing in and out -----------------------------------------------------------


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    raise web.HTTPSeeOther("/ops/live" if user.role in STAFF_ROLES else "/campaigns")


@routes.get("/favicon.ico")
async def favicon(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    return page(
        request,
        "login.html",
        {"next": safe_next(request.query.get("next")), "error": "", "username": ""},
    )


@routes.post("/login")
async def login_submit(request: web.Request) -> web.StreamResponse:
    runtime = request.app[deps_key]
    config = request.app[config_key]
    form = await read_form(request)
    username = str(form.get("username", ""))[:100]
    # Never cut: sign-in refuses what is longer than any password could be.
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")))
    try:
        signed = await runtime.accounts.sign_in(
            username=username,
            password=password,
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
            device_token=request.cookies.get(DEVICE_COOKIE, ""),
            policy=config.session_policy,
            limits=config.login_limits,
        )
    except LoginRefused as refused:
        if refused.code is LoginRefusalCode.TOO_MANY_ATTEMPTS:
            error, status = _("Too many failed sign-ins; wait a few minutes and try again."), 429
        else:
            error, status = _("Wrong username or password."), 401
        return page(
            request,
            "login.html",
            {"next": target, "error": error, "username": username},
            status=status,
        )
    if target == "/":
        target = "/ops/live" if signed.user.role in STAFF_ROLES else "/campaigns"
    response = web.HTTPSeeOther(target)
    set_session_cookie(request, response, signed.token)
    set_device_cookie(request, response, signed.device_token)
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    await request.app[deps_key].accounts.end_session(request.cookies.get(SESSION_COOKIE, ""))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


@routes.post("/lang")
async def switch_language(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    language = i18n.normalise_language(str(form.get("language", "")))
    target = safe_next(str(form.get("next", "")))
    response = web.HTTPSeeOther(target)
    if language is not None:
        user = current_user(request)
        if user is not None:
            await request.app[deps_key].accounts.set_language(user.id, language)
        response.set_cookie(
            LANGUAGE_COOKIE,
            language,
            max_age=365 * 24 * 3600,
            samesite="Lax",
            secure=request.app[config_key].secure_cookies,
            httponly=True,
            path="/",
        )
    raise response


# -- campaigns and lists ------------------------------------------------------------


async def _campaign_for(request: web.Request, user: User, campaign_id: int) -> Campaign:
    campaign = await request.app[deps_key].campaigns.visible_to(user, campaign_id)
    if campaign is None:
        raise not_found(request)
    return campaign


@routes.get("/campaigns")
async def campaigns_page(request: web.Request) -> web.Response:
    user = require_user(request)
    home = await request.app[deps_key].campaigns.volunteer_home(user)
    return page(request, "campaigns.html", {"cards": home.cards, "tasks": home.tasks})


@routes.post("/campaigns/{campaign_id:\\d{1,9}}/attendance")
async def attendance(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    campaign = await _campaign_for(request, user, int(request.match_info["campaign_id"]))
    form = await read_form(request)
    attending = str(form.get("attending", "")) == "yes"
    await request.app[deps_key].campaigns.set_attendance(
        user_id=user.id, campaign_id=campaign.id, attending=attending
    )
    raise web.HTTPSeeOther(safe_next(str(form.get("next", "")), "/campaigns"))


@routes.get("/campaigns/{campaign_id:\\d{1,9}}")
async def campaign_page(request: web.Request) -> web.Response:
    user = require_user(request)
    campaign = await _campaign_for(request, user, int(request.match_info["campaign_id"]))
    return await _campaign_view(request, user, campaign, "campaign.html", {})


async def _campaign_view(
    request: web.Request, user: User, campaign: Campaign, template: str, extra: dict[str, Any]
) -> web.Response:
    owner_id = _query_int(request, "owner") or user.id
    found = await request.app[deps_key].campaigns.campaign_page(
        campaign, viewer_id=user.id, owner_id=owner_id, now=utcnow()
    )
    if found is None:
        raise not_found(request)
    members, going = found.members, found.attendees
    owner = next((member for member in members if member.id == owner_id), user)
    message = request.query.get("empty", "")
    view = await request.app[deps_key].power.current(user.id)
    live = view is not None and view.session.ended_at is None
    return page(
        request,
        template,
        extra
        | {
            "campaign": campaign,
            "owner": owner,
            "teammates": [m for m in members if m.id != user.id and m.role is Role.VOLUNTEER],
            "rows": found.rows,
            "attendees": going,
            "callbacks_due": found.callbacks_due,
            "attending": any(person.id == user.id for person in going),
            "now": utcnow(),
            "empty_message": labels.empty_list_reason(message, None)
            if message in ("all_done", "empty")
            else "",
            "power_mode": campaign.dialing_mode is DialingMode.POWER,
            # Their session in progress, wherever it is: the way back to it.
            "power_live_campaign": view.session.campaign_id if live and view else None,
        },
    )


@routes.get("/campaigns/{campaign_id:\\d{1,9}}/next")
async def next_contact(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    runtime = request.app[deps_key]
    pending = await runtime.calls.pending_outcome(user)
    campaign = await runtime.campaigns.visible_to(user, int(request.match_info["campaign_id"]))
    if campaign is None:
        if pending is None:
            raise not_found(request)
        # The campaign left their view with an outcome owed (from a screen
        # left open): where that outcome is recorded or skipped, never a 404.
        call = pending.call
        raise web.HTTPSeeOther(pending_url(call.contact_id, call.campaign_id, call.call_id))
    owner = _query_int(request, "owner")
    if campaign.dialing_mode is DialingMode.POWER and owner in (None, user.id):
        # Their own list of a power campaign is dialed for them: "Next
        # contact" after an outcome leads back to the session screen.
        raise web.HTTPSeeOther(_power_path(campaign.id))
    if pending is not None:
        # Back to the answered call whose outcome is owed, not on to a new
        # contact; but not to a record they may no longer open (their team
        # left, the campaign moved): then it is skipped from this campaign's
        # page, or calling would stay locked for good.
        call = pending.call
        if await runtime.contacts.call_screen(user, call.contact_id, call.campaign_id) is not None:
            raise web.HTTPSeeOther(pending_url(call.contact_id, call.campaign_id, call.call_id))
        return await _campaign_view(
            request,
            user,
            campaign,
            "campaign_outcome_pending.html",
            {"pending": pending, "skip_next": request.path_qs, "skip_open": True},
        )
    found = await runtime.lists.next_contact(user.id, campaign.id, list_owner_id=owner)
    owner_part = f"&owner={owner}" if owner and owner != user.id else ""
    if found.contact is not None:
        raise web.HTTPSeeOther(f"/contacts/{found.contact.id}?campaign={campaign.id}{owner_part}")
    return page(
        request,
        "list_empty.html",
        {
            "campaign": campaign,
            "message": labels.empty_list_reason(found.empty_reason, found.available_at),
            "owner_part": owner_part,
        },
    )


# -- power mode -----------------------------------------------------------------------


def _power_path(campaign_id: int) -> str:
    return f"/campaigns/{campaign_id}/power"


def _power_strings() -> dict[str, str]:
    """What power.js writes, in the viewer's language (placeholders filled there)."""
    return {
        "paused_because": _("Paused: %(reason)s. No new contact is dialed until you resume."),
        "paused": _("Paused. No new contact is dialed until you resume."),
        "previous": _("Previous contact: %(name)s (%(result)s)"),
        "previous_plain": _("Previous contact: %(name)s"),
        "announce_dialing": _("Dialing %(name)s"),
        "announce_talking": _("Talking with %(name)s"),
        "announce_wrap_up": _("Call ended: record the outcome for %(name)s"),
        "announce_ended": _("Session ended: %(reason)s"),
        "confirm_leave_call": _("Leave the session now? The call in progress is hung up."),
        "last_call_asked": _("Last call asked"),
        "calls_made_n": _("Calls made in this session: %(num)s"),
        "reason_needed": _("Write a few words."),
        # TRANSLATORS: a pause's reason (Break, Technical problem, Other) and the volunteer's words.
        "reason_with_words": _("%(reason)s: %(words)s"),
        "start_again": _("Start again"),
        "session_ended": _("Session ended"),
        "starting": _("Starting…"),
        "saved_waiting": _("Outcome saved. The next contact is dialed for you."),
        "ending": _("Ending the session…"),
        "connecting_hint": _("Your phone is ringing: answer it and stay on the line."),
        "nobody_now": _("Nobody on your list can be called right now; the dialer keeps trying."),
        "phone_not_ready": _(
            "Your browser phone is not connected yet: turn it on at the top of the page, "
            "then start again."
        ),
        "record_it": _("Record it first"),
        # TRANSLATORS: the next contact's name and the state of their call
        # (e.g. "Ringing the contact"), shown while the outcome of the
        # previous call is being recorded.
        "next_call": _("Next contact, %(name)s: %(state)s"),
    }


@routes.get("/campaigns/{campaign_id:\\d{1,9}}/power")
async def power_page(request: web.Request) -> web.StreamResponse:
    """The volunteer's power session screen: start, follow, pause, leave.

    A page of its own rather than a panel of the campaign page: it must
    stay open for the whole session (a browser phone's line lives in it),
    so it holds nothing that navigates away, and it has an address to come
    back to after an outcome recorded elsewhere.
    """
    user = require_user(request)
    campaign = await _campaign_for(request, user, int(request.match_info["campaign_id"]))
    return await _power_view(request, user, campaign, error="")


async def _power_view(
    request: web.Request, user: User, campaign: Campaign, *, error: str, status: int = 200
) -> web.Response:
    view = await request.app[deps_key].power.current(user.id)
    live = view is not None and view.session.ended_at is None
    elsewhere = (
        view.session.campaign_id
        if live and view is not None and view.session.campaign_id != campaign.id
        else None
    )
    if campaign.dialing_mode is not DialingMode.POWER and (not live or elsewhere is not None):
        raise web.HTTPSeeOther(f"/campaigns/{campaign.id}")
    # Another campaign's session, or the last one of another campaign: not
    # this page's to show (its end reason belongs to that campaign).
    shown = view if view is not None and view.session.campaign_id == campaign.id else None
    return page(
        request,
        "power.html",
        {
            "campaign": campaign,
            "initial": power_json(shown),
            "elsewhere_campaign_id": elsewhere,
            "browser_phone": session_phone(request) is VolunteerPhone.BROWSER,
            "error": error,
            "power_strings": _power_strings(),
        },
        status=status,
    )


@routes.post("/campaigns/{campaign_id:\\d{1,9}}/power")
async def power_start(request: web.Request) -> web.StreamResponse:
    """Start a power session from a form (the campaign pages, or without scripts)."""
    user = require_user(request)
    runtime = request.app[deps_key]
    campaign = await _campaign_for(request, user, int(request.match_info["campaign_id"]))
    form = await read_form(request)
    phone = session_phone(request)
    if phone is VolunteerPhone.BROWSER and str(form.get("from", "")) == "campaign":
        # A browser phone lives in the page: the session must start from the
        # screen that stays open, once the phone there is ready to answer.
        raise web.HTTPSeeOther(_power_path(campaign.id))
    try:
        await runtime.power.start(user.id, campaign.id, phone=phone)
    except OutcomePending as pending:
        raise web.HTTPSeeOther(
            pending_url(pending.contact_id, pending.campaign_id, pending.call_id)
        ) from None
    except CallRefused as refused:
        if refused.refusal.code is RefusalCode.IN_POWER_SESSION:
            view = await runtime.power.current(user.id)
            if view is not None and view.session.campaign_id is not None:
                raise web.HTTPSeeOther(_power_path(view.session.campaign_id)) from None
        return await _power_view(
            request, user, campaign, error=labels.refusal(refused.refusal), status=409
        )
    raise web.HTTPSeeOther(_power_path(campaign.id))


# -- contacts -----------------------------------------------------------------------


def _filter_from_query(request: web.Request) -> ContactFilter:
    query = request.query
    scores = tuple(
        int(value) for value in query.getall("score", []) if value in {"1", "2", "3", "4", "5"}
    )
    outcome = query.get("outcome", "")
    tags = tuple(tag[:100] for tag in query.getall("tag", []) if tag)[:20]
    if query.get("list") == "voters":
        tags = (*tags, "voter")
    return ContactFilter(
        query=query.get("q", "")[:200],
        tags=tags,
        support_scores=scores,
        language=query.get("language", "")[:16],
        never_called=query.get("never_called") == "1",
        callback_due=query.get("callback_due") == "1",
        outcome=DispositionOutcome(outcome)
        if outcome in DispositionOutcome._value2member_map_
        else None,
        campaign_id=_query_int(request, "campaign"),
        limit=50,
        after=query.get("after", "")[:2000],
        before=query.get("before", "")[:2000],
    )


@routes.get("/contacts")
async def contacts_page(request: web.Request) -> web.Response:
    user = require_user(request)
    wanted = _filter_from_query(request)
    found = await request.app[deps_key].contacts.search_page(user, wanted, now=utcnow())
    result = found.result
    web_session = current_session(request)
    # The page's filters stay in its Previous and Next links; only where it starts changes.
    filters = urlencode(
        [
            (key, value)
            for key, value in request.query.items()
            if key not in {"after", "before", "page"}
        ]
    )
    return page(
        request,
        "contacts.html",
        {
            "result": result,
            "wanted": wanted,
            "tags": found.tags,
            "languages": found.languages,
            "campaigns": found.campaigns,
            "outcomes": list(DispositionOutcome),
            "confirm_before_dial": web_session.confirm_before_dial if web_session else True,
            "list_kind": request.query.get("list", ""),
            "display_number": display_number,
            "next_link": _page_link(filters, "after", result.next_cursor),
            "previous_link": _page_link(filters, "before", result.previous_cursor),
        },
    )


def _page_link(filters: str, direction: str, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    where = urlencode({direction: cursor})
    return f"/contacts?{filters}&{where}" if filters else f"/contacts?{where}"


@routes.get("/contacts/{contact_id:\\d{1,9}}")
async def contact_page(request: web.Request) -> web.Response:
    """The contact's record; its Call tab is the call screen."""
    user = require_user(request)
    contact_id = int(request.match_info["contact_id"])
    runtime = request.app[deps_key]
    campaign_id = _query_int(request, "campaign")
    owner_id = _query_int(request, "owner")
    pending = await runtime.calls.pending_outcome(user)
    if (
        pending is not None
        and pending.call.contact_id == contact_id
        and pending.call.campaign_id is not None
        and campaign_id != pending.call.campaign_id
    ):
        # The form of a pending call reopens with its campaign's survey.
        call = pending.call
        target = pending_url(call.contact_id, call.campaign_id, call.call_id)
        if "tab" in request.query:
            target += "&" + urlencode({"tab": request.query["tab"][:20]})
        raise web.HTTPSeeOther(target)
    screen = await runtime.contacts.call_screen(user, contact_id, campaign_id)
    if screen is None:
        if pending is not None and pending.call.contact_id == contact_id:
            # Their call's contact, out of their view since (team left,
            # campaign moved): the outcome owed is skipped here, not lost
            # behind a 404 that would keep them from calling for good.
            return page(
                request,
                "outcome_skip.html",
                {"pending": pending, "skip_next": "/campaigns", "skip_open": True},
            )
        raise not_found(request)
    survey_answers = await runtime.calls.survey_answers(
        item.disposition for item in screen.record.history if item.disposition is not None
    )
    record, campaign = screen.record, screen.campaign
    contact = record.contact
    usable = [p for p in contact.phones if not p.wrong_number and not p.do_not_call]
    zones = contact_zones(
        (usable or contact.phones)[0].e164 if contact.phones else "",
        contact.timezone,
        runtime.service.fallback_zone,
    )
    hours_note = await runtime.teams.hours_note(
        user, contact_id, campaign.id if campaign is not None else None, now=utcnow()
    )
    web_session = current_session(request)
    survey = campaign.survey if campaign is not None else SurveyDefinition()
    return page(
        request,
        "contact.html",
        {
            "contact": contact,
            "record": record,
            "campaign": campaign,
            "survey": survey,
            "owner_id": owner_id,
            "caller_ids": screen.caller_ids,
            "people": screen.people,
            "phones": usable,
            "all_phones": contact.phones,
            "display_number": display_number,
            "contact_zone": zones[0],
            "contact_zone_name": i18n.timezone_label(zones[0]),
            "several_zones": len(zones) > 1,
            "now": utcnow(),
            "live_call_id": screen.live_call_id,
            "pending": pending,
            "survey_answers": survey_answers,
            # Ends that get an automatic "absent": the form preselects it.
            "auto_absent": sorted(outcome.value for outcome in AUTOMATIC_ABSENT),
            "hours_note": hours_note,
            "outcomes": list(DispositionOutcome),
            "phone_types": list(PhoneType),
            "confirm_before_dial": web_session.confirm_before_dial if web_session else True,
            "tab": request.query.get("tab", "call"),
        },
    )
