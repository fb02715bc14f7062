"""The tasks page: my follow-up tasks by due date, and their Done / Reopen buttons."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from web.deps import deps_key, templates_key
from web.forms import read_form
from web.i18n import translate as i18n
from web.security import not_found, require_user, safe_next
from web.templating import render

routes = web.RouteTableDef()


@routes.get("/tasks")
async def tasks_page(request: web.Request) -> web.Response:
    user = require_user(request)
    # "Overdue" is by the reader's calendar, not the server's.
    today = datetime.now(i18n.current().zone).date()
    found = await request.app[deps_key].tasks.page(user, today=today)
    return render(request, request.app[templates_key], "tasks.html", {"found": found})


async def _settle(request: web.Request, done: bool) -> web.StreamResponse:
    user = require_user(request)
    form = await read_form(request)
    changed = await request.app[deps_key].tasks.set_done(
        user, int(request.match_info["task_id"]), done
    )
    if not changed:
        # Not there, or not this user's to change: the same answer, so ids of
        # other teams' tasks reveal nothing.
        raise not_found(request)
    raise web.HTTPSeeOther(safe_next(str(form.get("next", "")), "/tasks"))


@routes.post("/tasks/{task_id:\\d{1,9}}/done")
async def task_done(request: web.Request) -> web.StreamResponse:
    return await _settle(request, True)


@routes.post("/tasks/{task_id:\\d{1,9}}/reopen")
async def task_reopen(request: web.Request) -> web.StreamResponse:
    return await _settle(request, False)
