"""The Teams page: each team's hours for manual calls (outside any campaign).

Organizers see and change their own teams, administrators every team; a
team that is not the organizer's is a 403.
"""

from __future__ import annotations

from datetime import time
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from dialer.domain.survey import CallingHours, TimeWindow
from dialer.services.common import NotAllowed
from web.deps import deps_key, templates_key
from web.forms import Reader, parse_id, read_form
from web.i18n.translate import _
from web.security import forbidden, not_found, require_staff
from web.templating import render

routes = web.RouteTableDef()

HOURS_FIELDS = ("weekday_start", "weekday_end", "weekend_enabled", "weekend_start", "weekend_end")


def hours_values(hours: CallingHours) -> dict[str, str]:
    """The form's values for ``hours``."""
    return {
        "weekday_start": hours.weekday.start.strftime("%H:%M"),
        "weekday_end": hours.weekday.end.strftime("%H:%M"),
        "weekend_enabled": "1" if hours.weekend else "",
        "weekend_start": hours.weekend.start.strftime("%H:%M") if hours.weekend else "10:00",
        "weekend_end": hours.weekend.end.strftime("%H:%M") if hours.weekend else "18:00",
    }


def read_hours(reader: Reader) -> CallingHours | None:
    """The hours of the form, or None with the problems left in ``reader.errors``.

    Every time is required: an empty one is an error, not a silent default.
    """
    times: dict[str, time | None] = {}
    weekend = reader.flag("weekend_enabled")
    for name in ("weekday_start", "weekday_end", "weekend_start", "weekend_end"):
        if not weekend and name.startswith("weekend"):
            continue
        if not reader.raw(name).strip():
            reader.errors[name] = _("Enter a time.")
            times[name] = None
        else:
            times[name] = reader.clock(name)
    if reader.errors:
        return None
    try:
        weekday_window = TimeWindow(start=times["weekday_start"], end=times["weekday_end"])
    except ValidationError:
        reader.errors["weekday_end"] = _("A calling window must start before it ends.")
        return None
    weekend_window: TimeWindow | None = None
    if weekend:
        try:
            weekend_window = TimeWindow(start=times["weekend_start"], end=times["weekend_end"])
        except ValidationError:
            reader.errors["weekend_end"] = _("A calling window must start before it ends.")
            return None
    return CallingHours(weekday=weekday_window, weekend=weekend_window)


async def _teams_page(
    request: web.Request,
    *,
    edited: int | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    saved: int | None = None,
    status: int = 200,
) -> web.Response:
    actor = require_staff(request)
    teams = await request.app[deps_key].teams.teams_in_view(actor)
    rows: list[dict[str, Any]] = []
    for team in teams:
        mine = team.id == edited
        rows.append(
            {
                "team": team,
                "values": values
                if mine and values is not None
                else hours_values(team.calling_hours),
                "errors": errors if mine and errors else {},
                "saved": team.id == saved,
            }
        )
    return render(
        request, request.app[templates_key], "ops_teams.html", {"rows": rows}, status=status
    )


@routes.get("/ops/teams")
async def teams_page(request: web.Request) -> web.Response:
    require_staff(request)
    return await _teams_page(request, saved=parse_id(request.query.get("saved", "")))


@routes.post("/ops/teams/{team_id:\\d{1,9}}")
async def team_hours_save(request: web.Request) -> web.StreamResponse:
    actor = require_staff(request)
    team_id = int(request.match_info["team_id"])
    form = await read_form(request)
    reader = Reader(form)
    hours = read_hours(reader)
    if hours is None:
        values = {name: reader.raw(name) for name in HOURS_FIELDS}
        return await _teams_page(
            request, edited=team_id, errors=reader.errors, values=values, status=422
        )
    try:
        await request.app[deps_key].teams.set_calling_hours(actor, team_id, hours)
    except LookupError:
        raise not_found(request) from None
    except NotAllowed:
        raise forbidden(request) from None
    raise web.HTTPSeeOther(f"/ops/teams?saved={team_id}#team-{team_id}")
