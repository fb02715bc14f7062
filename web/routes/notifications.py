"""The notifications page: the bell's list, opening one, marking all read, the email choice."""

from __future__ import annotations

from aiohttp import web

from web.deps import deps_key, templates_key
from web.forms import read_form
from web.security import not_found, require_user, safe_next
from web.templating import render

routes = web.RouteTableDef()


@routes.get("/notifications")
async def notifications_page(request: web.Request) -> web.Response:
    user = require_user(request)
    found = await request.app[deps_key].notifications.page(user)
    return render(
        request,
        request.app[templates_key],
        "notifications.html",
        {"found": found, "unread_notifications": found.unread},
    )


@routes.post("/notifications/{notification_id:\\d{1,9}}/open")
async def open_notification(request: web.Request) -> web.StreamResponse:
    """Marks it read and follows its link (a POST: reading changes state)."""
    user = require_user(request)
    target = await request.app[deps_key].notifications.open(
        user, int(request.match_info["notification_id"])
    )
    if target is None:
        raise not_found(request)
    raise web.HTTPSeeOther(safe_next(target, "/notifications"))


@routes.post("/notifications/read")
async def mark_all_read(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    await request.app[deps_key].notifications.mark_all_read(user)
    raise web.HTTPSeeOther("/notifications")


@routes.post("/notifications/email")
async def email_preference(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    form = await read_form(request)
    await request.app[deps_key].notifications.set_email(user, str(form.get("email", "")) == "on")
    raise web.HTTPSeeOther("/notifications")
