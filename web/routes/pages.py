"""Pages for everyone signed in: sign-in, campaigns, lists, contacts, the call screen."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select

from dialer.domain.compliance import contact_zones
from dialer.domain.numbers import display as display_number
from dialer.domain.survey import SurveyDefinition
from dialer.domain.vocabulary import LIVE_CALL_STATES, DispositionOutcome, PhoneType, Role
from dialer.services import campaigns as campaign_data
from dialer.services import contacts as contact_data
from dialer.services.accounts import (
    LoginRefusalCode,
    LoginRefused,
    end_session,
    set_language,
    sign_in,
)
from dialer.store.access import STAFF_ROLES
from dialer.store.models import CallAttempt, Campaign, User, utcnow
from web.deps import config_key, deps_key, templates_key
from web.forms import read_form
from web.i18n import labels
from web.i18n import translate as i18n
from web.i18n.translate import _
from web.routes.api import set_session_cookie
from web.security import (
    LANGUAGE_COOKIE,
    SESSION_COOKIE,
    client_ip,
    current_session,
    current_user,
    not_found,
    require_user,
    safe_next,
)
from web.templating import render

routes = web.RouteTableDef()


def page(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    return render(request, request.app[templates_key], template, context, status=status)


def _query_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name, "")
    return int(raw) if raw.isdigit() and len(raw) <= 9 else None


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
    password = str(form.get("password", ""))[:1000]
    target = safe_next(str(form.get("next", "")))
    try:
        signed = await sign_in(
            runtime.sessions,
            username=username,
            password=password,
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
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
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    await end_session(request.app[deps_key].sessions, request.cookies.get(SESSION_COOKIE, ""))
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
            await set_language(request.app[deps_key].sessions, user.id, language)
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
    runtime = request.app[deps_key]
    async with runtime.sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        if campaign is None or not await runtime.service.can_access_campaign(
            session, user, campaign
        ):
            raise not_found(request)
    return campaign


@routes.get("/campaigns")
async def campaigns_page(request: web.Request) -> web.Response:
    user = require_user(request)
    async with request.app[deps_key].sessions() as session:
        cards = await campaign_data.campaign_cards(session, user)
        tasks = await contact_data.open_tasks_for(session, user.id)
    return page(request, "campaigns.html", {"cards": cards, "tasks": tasks})


@routes.post("/campaigns/{campaign_id:\\d{1,9}}/attendance")
async def attendance(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    campaign = await _campaign_for(request, user, int(request.match_info["campaign_id"]))
    form = await read_form(request)
    attending = str(form.get("attending", "")) == "yes"
    async with request.app[deps_key].sessions.begin() as session:
        await campaign_data.set_attendance(
            session, user_id=user.id, campaign_id=campaign.id, attending=attending
        )
    raise web.HTTPSeeOther(safe_next(str(form.get("next", "")), "/campaigns"))


@routes.get("/campaigns/{campaign_id:\\d{1,9}}")
async def campaign_page(request: web.Request) -> web.Response:
    user = require_user(request)
    campaign = await _campaign_for(request, user, int(request.match_info["campaign_id"]))
    owner_id = _query_int(request, "owner") or user.id
    async with request.app[deps_key].sessions() as session:
        members = await campaign_data.team_members(session, campaign.team_id)
        if owner_id != user.id and owner_id not in {member.id for member in members}:
            raise not_found(request)
        rows = await campaign_data.list_rows(session, campaign.id, owner_id)
        going = await campaign_data.attendees(session, campaign.id)
        due = await campaign_data.callbacks_due(session, campaign.id, owner_id, utcnow())
    owner = next((member for member in members if member.id == owner_id), user)
    message = request.query.get("empty", "")
    return page(
        request,
        "campaign.html",
        {
            "campaign": campaign,
            "owner": owner,
            "teammates": [m for m in members if m.id != user.id and m.role is Role.VOLUNTEER],
            "rows": rows,
            "attendees": going,
            "callbacks_due": due,
            "attending": any(person.id == user.id for person in going),
            "now": utcnow(),
            "empty_message": labels.empty_list_reason(message, None)
            if message in ("all_done", "empty")
            else "",
        },
    )


@routes.get("/campaigns/{campaign_id:\\d{1,9}}/next")
async def next_contact(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    campaign = await _campaign_for(request, user, int(request.match_info["campaign_id"]))
    owner = _query_int(request, "owner")
    runtime = request.app[deps_key]
    found = await runtime.service.next_contact(user.id, campaign.id, list_owner_id=owner)
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


# -- contacts -----------------------------------------------------------------------


def _filter_from_query(request: web.Request) -> contact_data.ContactFilter:
    query = request.query
    scores = tuple(
        int(value) for value in query.getall("score", []) if value in {"1", "2", "3", "4", "5"}
    )
    outcome = query.get("outcome", "")
    page_number = _query_int(request, "page") or 1
    tags = tuple(tag[:100] for tag in query.getall("tag", []) if tag)[:20]
    if query.get("list") == "voters":
        tags = (*tags, "voter")
    return contact_data.ContactFilter(
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
        offset=(min(page_number, 10_000) - 1) * 50,
    )


@routes.get("/contacts")
async def contacts_page(request: web.Request) -> web.Response:
    user = require_user(request)
    wanted = _filter_from_query(request)
    runtime = request.app[deps_key]
    async with runtime.sessions() as session:
        result = await contact_data.search(session, user, wanted, now=utcnow())
        tags = await contact_data.known_tags(session, user)
        languages = await contact_data.known_languages(session)
        campaigns = await campaign_data.visible_campaigns(session, user)
    web_session = current_session(request)
    page_number = wanted.offset // 50 + 1
    return page(
        request,
        "contacts.html",
        {
            "result": result,
            "wanted": wanted,
            "tags": tags,
            "languages": languages,
            "campaigns": campaigns,
            "outcomes": list(DispositionOutcome),
            "confirm_before_dial": web_session.confirm_before_dial if web_session else True,
            "page_number": page_number,
            "has_next": wanted.offset + len(result.rows) < result.total,
            "list_kind": request.query.get("list", ""),
            "display_number": display_number,
            "query_without_page": urlencode(
                [(key, value) for key, value in request.query.items() if key != "page"]
            ),
        },
    )


@routes.get("/contacts/{contact_id:\\d{1,9}}")
async def contact_page(request: web.Request) -> web.Response:
    """The contact's record; its Call tab is the call screen."""
    user = require_user(request)
    contact_id = int(request.match_info["contact_id"])
    runtime = request.app[deps_key]
    campaign_id = _query_int(request, "campaign")
    owner_id = _query_int(request, "owner")
    async with runtime.sessions() as session:
        if not await runtime.service.can_access_contact(session, user, contact_id):
            raise not_found(request)
        record = await contact_data.contact_record(session, contact_id)
        if record is None:
            raise not_found(request)
        campaign: Campaign | None = None
        if campaign_id is not None:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None or not await runtime.service.can_access_campaign(
                session, user, campaign
            ):
                raise not_found(request)
            if not any(
                entry_campaign.id == campaign.id for entry_campaign, _entry in record.campaigns
            ):
                raise not_found(request)
        caller_ids = await runtime.service.allowed_caller_ids(session, user, campaign)
        people = await campaign_data.colleagues(session, user)
        live_call = await session.scalar(
            select(CallAttempt).where(
                CallAttempt.volunteer_id == user.id,
                CallAttempt.contact_id == contact_id,
                CallAttempt.state.in_([state.value for state in LIVE_CALL_STATES]),
            )
        )
    contact = record.contact
    usable = [p for p in contact.phones if not p.wrong_number and not p.do_not_call]
    zones = contact_zones(
        (usable or contact.phones)[0].e164 if contact.phones else "",
        contact.timezone,
        runtime.service.fallback_zone,
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
            "caller_ids": caller_ids,
            "people": people,
            "phones": usable,
            "all_phones": contact.phones,
            "display_number": display_number,
            "contact_zone": zones[0],
            "contact_zone_name": i18n.timezone_label(zones[0]),
            "several_zones": len(zones) > 1,
            "now": utcnow(),
            "live_call_id": live_call.call_id if live_call is not None else "",
            "outcomes": list(DispositionOutcome),
            "phone_types": list(PhoneType),
            "confirm_before_dial": web_session.confirm_before_dial if web_session else True,
            "tab": request.query.get("tab", "call"),
        },
    )


@routes.get("/tasks")
async def tasks_page(request: web.Request) -> web.Response:
    user = require_user(request)
    async with request.app[deps_key].sessions() as session:
        tasks = await contact_data.open_tasks_for(session, user.id)
    return page(request, "tasks.html", {"tasks": tasks})
