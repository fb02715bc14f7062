"""Pages for organizers and admins: live panel, dashboards, editor, import, lists, DNC, users."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import tempfile
from datetime import time
from pathlib import Path
from typing import IO, Any

from aiohttp import BodyPartReader, web
from pydantic import ValidationError

from dialer.domain.numbers import InvalidPhoneNumber, to_e164
from dialer.domain.numbers import display as display_number
from dialer.domain.passwords import WeakPassword, generate_password
from dialer.domain.survey import (
    CallingHours,
    SurveyDefinition,
    SurveyInvalid,
    TimeWindow,
    parse_survey,
)
from dialer.domain.vocabulary import (
    CallOutcome,
    CampaignStatus,
    DialingMode,
    DispositionOutcome,
    PowerNextCall,
    Role,
    VolunteerPhone,
)
from dialer.services.campaigns import (
    CampaignChanges,
    UnknownTeam,
    UnknownVolunteer,
    lacks_caller_id,
)
from dialer.services.dashboard import COMPARISON_HOURS
from dialer.services.export import ExportError
from dialer.services.importer import (
    UPLOAD_PREFIX,
    ImportFileError,
    ImportJobView,
    field_label,
)
from dialer.services.users import UserChangeRefusal, UserChangeRefused, UserError, UserWarning
from dialer.services.volunteer_phones import PhoneChoice
from dialer.store.models import Campaign, Team, utcnow
from web.deps import config_key, deps_key, templates_key
from web.errors import PageError
from web.forms import Reader, parse_id, read_form
from web.i18n import translate as i18n
from web.i18n.labels import volunteer_phone
from web.i18n.translate import _
from web.input_guard import unstorable
from web.security import CSRF_HEADER, current_session, not_found, require_staff, safe_next
from web.templating import render

routes = web.RouteTableDef()

MAX_BRIEF = 20_000
MAX_SURVEY_JSON = 100_000


def page(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    campaign = context.get("campaign")
    if isinstance(campaign, Campaign):
        # The campaign pages (_campaign_nav.html) warn for as long as no call
        # of an active campaign can start; activating one is not refused.
        context = {
            **context,
            "caller_id_missing": lacks_caller_id(
                campaign, request.app[deps_key].service.default_caller_id
            ),
        }
    return render(request, request.app[templates_key], template, context, status=status)


async def _campaign(request: web.Request) -> Campaign:
    """The campaign of the path, when it is one of the organizer's teams' (404 otherwise)."""
    user = require_staff(request)
    campaign = await request.app[deps_key].campaigns.visible_to(
        user, int(request.match_info["campaign_id"])
    )
    if campaign is None:
        raise not_found(request)
    return campaign


# -- live panel ---------------------------------------------------------------------


def _caller_id_key(number: str) -> str:
    """The digits of a caller ID with its leading +: how panel.js looks one up."""
    digits = "".join(character for character in number if character.isdigit())
    return ("+" if number.strip().startswith("+") else "") + digits


@routes.get("/ops/live")
async def live_panel(request: web.Request) -> web.Response:
    user = require_staff(request)
    runtime = request.app[deps_key]
    # The panel's calls present one of these numbers; the browser has no phone
    # number library, so the page hands it each one formatted as the server
    # formats numbers (display_number), and panel.js looks them up.
    numbers = {runtime.service.default_caller_id} if runtime.service.default_caller_id else set()
    for campaign in await runtime.campaigns.visible_campaigns(user):
        numbers.update(campaign.allowed_caller_ids or ())
    formatted: dict[str, str] = {}
    for number in sorted(numbers):
        try:
            formatted[_caller_id_key(number)] = display_number(
                to_e164(number, runtime.default_region)
            )
        except InvalidPhoneNumber:
            continue
    return page(request, "live.html", {"caller_ids": formatted})


# -- campaigns -----------------------------------------------------------------------


@routes.get("/ops/campaigns")
async def campaigns_list(request: web.Request) -> web.Response:
    user = require_staff(request)
    campaigns, teams = await request.app[deps_key].campaigns.campaigns_and_teams(user)
    return page(request, "ops_campaigns.html", _campaigns_context(request, campaigns, teams, {}))


def _campaigns_context(
    request: web.Request, campaigns: list[Campaign], teams: list[Team], errors: dict[str, str]
) -> dict[str, Any]:
    default = request.app[deps_key].service.default_caller_id
    return {
        "campaigns": campaigns,
        "teams": teams,
        "errors": errors,
        "no_caller_id": {
            campaign.id for campaign in campaigns if lacks_caller_id(campaign, default)
        },
    }


@routes.post("/ops/campaigns")
async def campaign_create(request: web.Request) -> web.StreamResponse:
    user = require_staff(request)
    reader = Reader(await read_form(request))
    title = reader.text("title", max_length=300, required=True)
    team_id = reader.integer("team_id", low=1, high=2**31 - 1)
    if not reader.errors:
        try:
            campaign = await request.app[deps_key].campaigns.create(
                user, title=title, team_id=team_id
            )
        except UnknownTeam:
            reader.errors["team_id"] = _("Choose one of your teams.")
    if reader.errors:
        campaigns, teams = await request.app[deps_key].campaigns.campaigns_and_teams(user)
        return page(
            request,
            "ops_campaigns.html",
            _campaigns_context(request, campaigns, teams, reader.errors),
            status=422,
        )
    raise web.HTTPSeeOther(f"/ops/campaigns/{campaign.id}/edit")


@routes.get("/ops/campaigns/{campaign_id:\\d{1,9}}")
async def dashboard(request: web.Request) -> web.Response:
    campaign = await _campaign(request)
    zone = i18n.current().zone
    now = utcnow()
    dashboard = request.app[deps_key].dashboard
    stats = await dashboard.campaign_stats(campaign.id, now=now, zone=zone)
    # The comparison's period: one of a few, the chart's 12 hours unless asked.
    asked = request.query.get("compare", "")
    hours = int(asked) if asked in {str(h) for h in COMPARISON_HOURS} else COMPARISON_HOURS[0]
    comparison = await dashboard.mode_comparison(campaign.id, now=now, hours=hours)
    return page(
        request,
        "dashboard.html",
        {
            "campaign": campaign,
            "stats": stats,
            "comparison": comparison,
            "comparison_hours": hours,
            "comparison_periods": COMPARISON_HOURS,
            "disposition_outcomes": list(DispositionOutcome),
            "call_outcomes": list(CallOutcome),
        },
    )


def _survey_text(survey: SurveyDefinition) -> str:
    return json.dumps(survey.to_json(), indent=2, ensure_ascii=False)


def _editor_values(campaign: Campaign) -> dict[str, str]:
    zone = i18n.current().zone

    def local(moment: Any) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if moment else ""

    hours = campaign.calling_hours
    return {
        "title": campaign.title,
        "brief": campaign.brief,
        "team_id": str(campaign.team_id or ""),
        "status": campaign.status.value,
        "scheduled_on": campaign.scheduled_on.isoformat() if campaign.scheduled_on else "",
        "starts_at": local(campaign.starts_at),
        "ends_at": local(campaign.ends_at),
        "caller_ids": "\n".join(campaign.allowed_caller_ids),
        "weekday_start": hours.weekday.start.strftime("%H:%M"),
        "weekday_end": hours.weekday.end.strftime("%H:%M"),
        "weekend_enabled": "1" if hours.weekend else "",
        "weekend_start": hours.weekend.start.strftime("%H:%M") if hours.weekend else "10:00",
        "weekend_end": hours.weekend.end.strftime("%H:%M") if hours.weekend else "18:00",
        "max_attempts": str(campaign.max_attempts),
        "retry_delay_minutes": str(campaign.retry_delay_minutes),
        "dialing_mode": campaign.dialing_mode.value,
        "power_next_call": campaign.power_next_call.value,
        "survey": _survey_text(campaign.survey),
    }


async def _editor(
    request: web.Request,
    campaign: Campaign,
    values: dict[str, str],
    errors: dict[str, str],
    *,
    saved: bool = False,
    status: int = 200,
) -> web.Response:
    teams = await request.app[deps_key].campaigns.teams_in_view(require_staff(request))
    return page(
        request,
        "campaign_edit.html",
        {
            "campaign": campaign,
            "values": values,
            "errors": errors,
            "teams": teams,
            "statuses": list(CampaignStatus),
            "saved": saved,
        },
        status=status,
    )


@routes.get("/ops/campaigns/{campaign_id:\\d{1,9}}/edit")
async def campaign_edit(request: web.Request) -> web.Response:
    campaign = await _campaign(request)
    return await _editor(
        request, campaign, _editor_values(campaign), {}, saved=request.query.get("saved") == "1"
    )


def _parse_survey(reader: Reader) -> SurveyDefinition:
    """The survey builder's JSON; each problem keyed ``survey.questions.0.label``.

    ``survey`` itself carries a summary, shown above the builder and with the
    JSON when scripts are off.
    """
    text = reader.text("survey", max_length=MAX_SURVEY_JSON)
    if not text.strip() or "survey" in reader.errors:
        return SurveyDefinition()
    try:
        return parse_survey(json.loads(text))
    except json.JSONDecodeError as error:
        reader.errors["survey"] = _(
            "The survey's JSON is not valid (line %(line)s, column %(column)s): %(reason)s",
            line=error.lineno,
            column=error.colno,
            reason=error.msg,
        )
    except SurveyInvalid as invalid:
        reader.errors["survey"] = _(
            "The survey has %(count)s problem(s), marked at each question.",
            count=len(invalid.errors),
        )
        for path, message in invalid.errors.items():
            reader.errors[f"survey.{path}" if path else "survey"] = message
    return SurveyDefinition()


def _parse_changes(reader: Reader, region: str) -> CampaignChanges:
    zone = i18n.current().zone
    title = reader.text("title", max_length=300, required=True)
    brief = reader.text("brief", max_length=MAX_BRIEF)
    team_id = reader.integer("team_id", low=1, high=2**31 - 1)
    status_raw = reader.raw("status")
    status = (
        CampaignStatus(status_raw)
        if status_raw in CampaignStatus._value2member_map_
        else CampaignStatus.DRAFT
    )
    scheduled_on = reader.day("scheduled_on")
    starts_at = reader.local_datetime("starts_at", zone)
    ends_at = reader.local_datetime("ends_at", zone)
    if starts_at and ends_at and ends_at <= starts_at:
        reader.errors["ends_at"] = _("The end must come after the start.")
    caller_ids: list[str] = []
    for line in reader.text("caller_ids", max_length=2000).splitlines():
        if not line.strip():
            continue
        try:
            number = to_e164(line, region)
        except InvalidPhoneNumber:
            reader.errors["caller_ids"] = _(
                "%(number)s is not a valid phone number.", number=line.strip()[:40]
            )
            continue
        if number not in caller_ids:
            caller_ids.append(number)
    weekday_start = reader.clock("weekday_start", time(9)) or time(9)
    weekday_end = reader.clock("weekday_end", time(21)) or time(21)
    weekend_start = reader.clock("weekend_start", time(10)) or time(10)
    weekend_end = reader.clock("weekend_end", time(18)) or time(18)
    hours = CallingHours()
    try:
        hours = CallingHours(
            weekday=TimeWindow(start=weekday_start, end=weekday_end),
            weekend=TimeWindow(start=weekend_start, end=weekend_end)
            if reader.flag("weekend_enabled")
            else None,
        )
    except ValidationError:
        reader.errors["calling_hours"] = _("A calling window must start before it ends.")
    max_attempts = reader.integer("max_attempts", low=1, high=50, required=True, default=3) or 3
    retry_delay = reader.integer(
        "retry_delay_minutes", low=0, high=100_000, required=True, default=240
    )
    survey = _parse_survey(reader)
    mode_raw = reader.raw("dialing_mode")
    dialing_mode = (
        DialingMode(mode_raw) if mode_raw in DialingMode._value2member_map_ else DialingMode.CLICK
    )
    next_raw = reader.raw("power_next_call")
    power_next_call = (
        PowerNextCall(next_raw)
        if next_raw in PowerNextCall._value2member_map_
        else PowerNextCall.AFTER_OUTCOME
    )
    return CampaignChanges(
        title=title,
        brief=brief,
        team_id=team_id,
        status=status,
        scheduled_on=scheduled_on,
        starts_at=starts_at,
        ends_at=ends_at,
        allowed_caller_ids=caller_ids,
        calling_hours=hours,
        max_attempts=max_attempts,
        retry_delay_minutes=retry_delay if retry_delay is not None else 240,
        survey=survey,
        dialing_mode=dialing_mode,
        power_next_call=power_next_call,
    )


@routes.post("/ops/campaigns/{campaign_id:\\d{1,9}}/edit")
async def campaign_save(request: web.Request) -> web.StreamResponse:
    campaign = await _campaign(request)
    user = require_staff(request)
    form = await read_form(request)
    reader = Reader(form)
    changes = _parse_changes(reader, request.app[deps_key].default_region)
    if reader.errors:
        values = {key: reader.raw(key) for key in _editor_values(campaign)}
        return await _editor(request, campaign, values, reader.errors, status=422)
    try:
        await request.app[deps_key].campaigns.update(
            campaign.id,
            changes,
            actor=user,
            default_caller_id=request.app[deps_key].service.default_caller_id,
        )
    except UnknownTeam:
        raise PageError(422, _("Unknown team"), _("Choose one of the teams offered.")) from None
    raise web.HTTPSeeOther(f"/ops/campaigns/{campaign.id}/edit?saved=1")


# -- import, lists, export ------------------------------------------------------------

# Form fields other than the file are short; a longer one is refused, not held in memory.
_IMPORT_FIELD_MAX = 4096
# One file, the encoding and up to 500 volunteers to share the contacts among.
_IMPORT_PARTS_MAX = 600
_UPLOAD_CHUNK = 256 * 1024


class _UploadRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _import_page(
    request: web.Request,
    campaign: Campaign,
    error: str = "",
    status: int = 200,
    job: ImportJobView | None = None,
) -> web.Response:
    members = await request.app[deps_key].campaigns.team_members(campaign.team_id)
    report = job.report if job is not None else None
    return page(
        request,
        "import.html",
        {
            "campaign": campaign,
            "report": report,
            "error": error,
            "members": members,
            "job": job,
            "field_label": field_label,
        },
        status=status,
    )


@routes.get("/ops/campaigns/{campaign_id:\\d{1,9}}/import")
async def import_form(request: web.Request) -> web.Response:
    campaign = await _campaign(request)
    job_id = request.query.get("job", "")
    if not job_id:
        return await _import_page(request, campaign)
    job = await _import_job(request, campaign, job_id)
    return await _import_page(request, campaign, job=job)


@routes.get("/ops/campaigns/{campaign_id:\\d{1,9}}/import/jobs/{job_id:\\d{1,9}}")
async def import_progress(request: web.Request) -> web.Response:
    """How far a background import has gone, for the import page's progress bar."""
    campaign = await _campaign(request)
    job = await _import_job(request, campaign, request.match_info["job_id"])
    return web.json_response(job.progress_json(), headers={"Cache-Control": "no-store"})


async def _import_job(request: web.Request, campaign: Campaign, job_id: str) -> ImportJobView:
    wanted = parse_id(job_id)
    job = (
        await request.app[deps_key].imports.job(wanted, campaign_id=campaign.id)
        if wanted is not None
        else None
    )
    if job is None:
        raise not_found(request)
    return job


@routes.post("/ops/campaigns/{campaign_id:\\d{1,9}}/import")
async def import_upload(request: web.Request) -> web.Response:
    """Receive the file onto disk, check its header, and import it in the background.

    The page's script sends the CSRF token as a header, so the body arrives
    untouched and is streamed to a temporary file; a plain form post has been
    read by the CSRF check already (aiohttp spools it to disk) and is copied.
    Either way the rows are imported by a background job that the page
    follows: the request returns as soon as the header is checked.
    """
    campaign = await _campaign(request)
    user = require_staff(request)
    runtime = request.app[deps_key]
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        fields, upload, file_name = await _receive_upload(request)
    except _UploadRefused as refused:
        if wants_json:
            return _import_refused(refused.status, refused.message)
        return await _import_page(request, campaign, error=refused.message, status=refused.status)
    encoding = fields.get("encoding", ["utf-8"])[0]
    if encoding not in ("utf-8", "latin-1", "cp1252"):
        encoding = "utf-8"
    assign_to = [name[:100] for name in fields.get("assign_to", [])][:500]
    # A checkbox: present ("1") only when ticked.  Unticked, the file fills
    # empty fields and never replaces a value on file.
    overwrite = fields.get("overwrite", [""])[0] == "1"
    try:
        job_id = await runtime.imports.start_import(
            upload,
            file_name=file_name,
            region=runtime.default_region,
            campaign_id=campaign.id,
            assign_to=assign_to,
            encoding=encoding,
            actor_id=user.id,
            overwrite=overwrite,
        )
    except ImportFileError as error:
        message = _("The file could not be imported: %(reason)s", reason=str(error))
        if wants_json:
            return _import_refused(422, message)
        return await _import_page(request, campaign, error=message, status=422)
    job_page = f"/ops/campaigns/{campaign.id}/import?job={job_id}"
    if wants_json:
        return web.json_response(
            {
                "job": job_id,
                "page": job_page,
                "progress": f"/ops/campaigns/{campaign.id}/import/jobs/{job_id}",
            },
            status=202,
        )
    raise web.HTTPSeeOther(job_page)


@routes.get("/ops/campaigns/{campaign_id:\\d{1,9}}/import/jobs/{job_id:\\d{1,9}}/rejected.csv")
async def import_rejected_csv(request: web.Request) -> web.Response:
    """Every rejected row of an import, as it was in the file, with the reason."""
    campaign = await _campaign(request)
    job = await _import_job(request, campaign, request.match_info["job_id"])
    buffer = io.StringIO()
    await request.app[deps_key].imports.write_rejected_csv(job, buffer)
    return _csv_download(buffer, f"import-{job.id}-rejected-rows.csv")


@routes.get("/ops/campaigns/{campaign_id:\\d{1,9}}/import/jobs/{job_id:\\d{1,9}}/changes.csv")
async def import_changes_csv(request: web.Request) -> web.Response:
    """Every field-level change, conflict and flagged number of an import."""
    campaign = await _campaign(request)
    job = await _import_job(request, campaign, request.match_info["job_id"])
    buffer = io.StringIO()
    await request.app[deps_key].imports.write_changes_csv(job, buffer)
    return _csv_download(buffer, f"import-{job.id}-changes.csv")


def _csv_download(buffer: io.StringIO, file_name: str) -> web.Response:
    # A byte-order mark, so that spreadsheets open the accents as UTF-8.
    return web.Response(
        body=("\ufeff" + buffer.getvalue()).encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{file_name}"',
            "Cache-Control": "no-store",
        },
    )


def _import_refused(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"code": "import_refused", "message": message}}, status=status
    )


async def _receive_upload(request: web.Request) -> tuple[dict[str, list[str]], Path, str]:
    """The form's fields, and its file saved to a temporary file (the caller's to delete)."""
    limit = int(request.app[config_key].max_upload_mb * 1024 * 1024)
    fields: dict[str, list[str]] = {}
    upload: Path | None = None
    file_name = "upload.csv"
    try:
        if request.headers.get(CSRF_HEADER) and request.content_type == "multipart/form-data":
            reader = await request.multipart()
            parts = 0
            while (part := await reader.next()) is not None:
                parts += 1
                if parts > _IMPORT_PARTS_MAX:
                    raise _UploadRefused(413, _("The form has too many fields."))
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "file" and part.filename is not None and upload is None:
                    file_name = part.filename or file_name
                    upload = await _save_part(part, limit)
                elif part.name:
                    fields.setdefault(part.name, []).append(await _read_field(part))
        else:
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, str):
                    fields.setdefault(name, []).append(value)
            found = form.get("file")
            if isinstance(found, web.FileField):
                file_name = found.filename or file_name
                upload = await asyncio.to_thread(_copy_to_temporary, found.file)
    except BaseException:
        if upload is not None:
            await asyncio.to_thread(upload.unlink, missing_ok=True)
        raise
    if upload is None:
        raise _UploadRefused(422, _("Choose a CSV file."))
    if any(unstorable(value) for values in fields.values() for value in values) or unstorable(
        file_name
    ):
        await asyncio.to_thread(upload.unlink, missing_ok=True)
        raise _UploadRefused(
            422,
            _(
                "The request contains a character that cannot be stored (a NUL byte or a lone "
                "surrogate). Remove it and try again."
            ),
        )
    return fields, upload, Path(file_name).name[:200]


async def _save_part(part: BodyPartReader, limit: int) -> Path:
    handle = await asyncio.to_thread(_new_temporary)
    path = Path(handle.name)
    try:
        size = 0
        while chunk := await part.read_chunk(_UPLOAD_CHUNK):
            size += len(chunk)
            if size > limit:
                raise _UploadRefused(
                    413,
                    _(
                        "The file is larger than %(size)s MB; split it into smaller files, "
                        "or ask an administrator to import it on the server.",
                        size=_megabytes(limit),
                    ),
                )
            await asyncio.to_thread(handle.write, chunk)
    except BaseException:
        await asyncio.to_thread(handle.close)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    await asyncio.to_thread(handle.close)
    return path


def _megabytes(limit: int) -> str:
    return f"{limit / (1024 * 1024):g}"


async def _read_field(part: BodyPartReader) -> str:
    data = b""
    while chunk := await part.read_chunk(_IMPORT_FIELD_MAX):
        data += chunk
        if len(data) > _IMPORT_FIELD_MAX:
            raise _UploadRefused(413, _("A form field is too long."))
    return data.decode("utf-8", errors="replace")


def _new_temporary() -> IO[bytes]:
    return tempfile.NamedTemporaryFile(prefix=UPLOAD_PREFIX, suffix=".csv", delete=False)


def _copy_to_temporary(source: IO[bytes]) -> Path:
    source.seek(0)
    handle = _new_temporary()
    path = Path(handle.name)
    try:
        with handle:
            shutil.copyfileobj(source, handle, _UPLOAD_CHUNK)
    except BaseException:
        # A full disk, say: the half-written copy would otherwise stay behind.
        path.unlink(missing_ok=True)
        raise
    return path


async def _assign_page(request: web.Request, campaign: Campaign, done: str = "") -> web.Response:
    overview = await request.app[deps_key].campaigns.list_overview(campaign)
    return page(request, "assign.html", {"campaign": campaign, "overview": overview, "done": done})


@routes.get("/ops/campaigns/{campaign_id:\\d{1,9}}/assign")
async def assign_form(request: web.Request) -> web.Response:
    campaign = await _campaign(request)
    done = request.query.get("moved", "")
    return await _assign_page(
        request, campaign, _("%(count)s contacts assigned.", count=done) if done.isdecimal() else ""
    )


@routes.post("/ops/campaigns/{campaign_id:\\d{1,9}}/assign")
async def assign_submit(request: web.Request) -> web.StreamResponse:
    campaign = await _campaign(request)
    user = require_staff(request)
    form = await read_form(request)
    action = str(form.get("action", ""))
    campaigns = request.app[deps_key].campaigns
    if action == "share":
        chosen = [
            volunteer
            for volunteer in map(parse_id, form.getall("volunteer", []))
            if volunteer is not None
        ]
        count = await campaigns.share_unassigned(campaign, chosen, actor_id=user.id)
    elif action == "move":
        source, target = str(form.get("from", "")), str(form.get("to", ""))
        from_id, to_id = parse_id(source), parse_id(target)
        try:
            count = await campaigns.move_open_entries(campaign, from_id, to_id, actor_id=user.id)
        except UnknownVolunteer:
            raise PageError(
                422, _("Unknown volunteer"), _("Choose volunteers from this campaign's team.")
            ) from None
    else:
        raise PageError(400, _("Unknown action"), _("Use the buttons of the form."))
    raise web.HTTPSeeOther(f"/ops/campaigns/{campaign.id}/assign?moved={count}")


@routes.get("/ops/campaigns/{campaign_id:\\d{1,9}}/export.csv")
async def export_csv(request: web.Request) -> web.StreamResponse:
    """The campaign's results, sent chunk by chunk as the database reads them.

    Each chunk waits for the client to take the one before (the write is
    awaited), so a slow download slows the export rather than filling memory.
    """
    campaign = await _campaign(request)
    try:
        async with request.app[deps_key].exports.results(campaign.id) as export:
            response = web.StreamResponse(
                headers={
                    "Content-Disposition": (
                        f'attachment; filename="campaign-{campaign.id}-results.csv"'
                    )
                }
            )
            response.content_type = "text/csv"
            response.charset = "utf-8"
            response.enable_chunked_encoding()
            await response.prepare(request)
            await export.write_to(response.write)
            await response.write_eof()
            return response
    except ExportError:
        # Raised on opening, before anything is sent: the campaign went meanwhile.
        raise not_found(request) from None


# -- do-not-call -----------------------------------------------------------------------


async def _dnc_page(
    request: web.Request, *, errors: dict[str, str] | None = None, status: int = 200
) -> web.Response:
    query = request.query.get("q", "")[:200]
    contacts = await request.app[deps_key].contacts.dnc_list(require_staff(request), query=query)
    return page(
        request,
        "dnc.html",
        {
            "contacts": contacts,
            "q": query,
            "errors": errors or {},
            "display_number": display_number,
        },
        status=status,
    )


@routes.get("/ops/dnc")
async def dnc_page(request: web.Request) -> web.Response:
    require_staff(request)
    return await _dnc_page(request)


@routes.post("/ops/dnc")
async def dnc_add(request: web.Request) -> web.StreamResponse:
    user = require_staff(request)
    reader = Reader(await read_form(request))
    number = reader.text("number", max_length=40, required=True)
    reason = reader.text("reason", max_length=500)
    if reader.errors:
        return await _dnc_page(request, errors=reader.errors, status=422)
    runtime = request.app[deps_key]
    try:
        await runtime.contacts.add_number_to_dnc(
            number=number, region=runtime.default_region, reason=reason, actor_id=user.id
        )
    except InvalidPhoneNumber:
        return await _dnc_page(
            request, errors={"number": _("This is not a valid phone number.")}, status=422
        )
    raise web.HTTPSeeOther("/ops/dnc")


@routes.post("/ops/dnc/{contact_id:\\d{1,9}}/remove")
async def dnc_remove(request: web.Request) -> web.StreamResponse:
    user = require_staff(request)
    if not await request.app[deps_key].contacts.remove_from_dnc(
        contact_id=int(request.match_info["contact_id"]), actor=user
    ):
        raise not_found(request)
    raise web.HTTPSeeOther("/ops/dnc")


# -- users ----------------------------------------------------------------------------


def _user_warning_text(warning: UserWarning) -> str:
    return {
        UserWarning.NO_EXTENSION: _("No phone extension: Call cannot ring them."),
        UserWarning.NO_TEAM: _("In no team: no campaign to call for."),
    }[warning]


async def _users_page(
    request: web.Request,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    created: tuple[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    actor = require_staff(request)
    overview = await request.app[deps_key].users.overview(actor)
    roles = [role for role in Role if actor.role is Role.ADMIN or role is not Role.ADMIN]
    return page(
        request,
        "users.html",
        {
            "users": overview.users,
            "teams": overview.teams,
            "memberships": overview.memberships,
            "warnings": overview.warnings,
            "warning_text": _user_warning_text,
            "roles": roles,
            "phone_kinds": phone_kinds(),
            "errors": errors or {},
            "values": values or {},
            "created": created,
            "languages": i18n.LANGUAGES,
        },
        status=status,
    )


@routes.get("/ops/users")
async def users_page(request: web.Request) -> web.Response:
    require_staff(request)
    return await _users_page(request)


@routes.post("/ops/users")
async def users_add(request: web.Request) -> web.Response:
    actor = require_staff(request)
    form = await read_form(request)
    reader = Reader(form)
    username = reader.text("username", max_length=100, required=True)
    display_name = reader.text("display_name", max_length=200)
    role_raw = reader.raw("role")
    role = Role(role_raw) if role_raw in Role._value2member_map_ else Role.VOLUNTEER
    if role is Role.ADMIN and actor.role is not Role.ADMIN:
        reader.errors["role"] = _("Only an administrator can create administrators.")
    extension = reader.text("extension", max_length=40) or None
    phone = _phone_choice(reader) or PhoneChoice(VolunteerPhone.DESK)
    email = reader.text("email", max_length=320) or None
    language = i18n.normalise_language(reader.raw("language"))
    teams = tuple(_team_names(reader))
    password = reader.raw("password")
    generated = not password
    if generated:
        password = generate_password()
    values = {
        key: reader.raw(key)
        for key in (
            "username",
            "display_name",
            "role",
            "extension",
            "phone",
            "own_number",
            "email",
            "language",
            "teams",
        )
    }
    if reader.errors:
        return await _users_page(request, errors=reader.errors, values=values, status=422)
    try:
        await request.app[deps_key].users.add_user(
            actor,
            username=username,
            password=password,
            role=role,
            display_name=display_name,
            email=email,
            extension=extension,
            teams=teams,
            language=language,
            phone=phone,
        )
    except WeakPassword as weak:
        return await _users_page(
            request,
            errors={"password": str(weak)},
            values=values,
            status=422,
        )
    except UserError as error:
        return await _users_page(
            request, errors={error.field: _user_error(error)}, values=values, status=422
        )
    return await _users_page(request, created=(username, password if generated else ""))


def _phone_choice(reader: Reader) -> PhoneChoice | None:
    """The ``phone`` and ``own_number`` fields, None when no phone is sent; a
    value not offered is left in ``reader.errors``."""
    raw = reader.raw("phone")
    # Sent empty: they have no own number (any longer); not sent: unchanged.
    own_number = reader.text("own_number", max_length=40) if "own_number" in reader.form else None
    if not raw:
        return None
    if raw not in VolunteerPhone._value2member_map_:
        reader.errors["phone"] = _("Choose a desk phone, the browser or their own number.")
        return None
    return PhoneChoice(VolunteerPhone(raw), own_number=own_number)


def phone_kinds() -> list[tuple[VolunteerPhone, str]]:
    return [(kind, volunteer_phone(kind)) for kind in VolunteerPhone]


def _team_names(reader: Reader) -> list[str]:
    """The comma-separated names of the ``teams`` field; a problem is left in ``reader``."""
    names = [name.strip() for name in reader.text("teams", max_length=1000).split(",")]
    for name in names:
        if len(name) > 200:
            reader.errors["teams"] = _("A team name has at most %(count)s characters.", count=200)
    return [name for name in names if name]


def _user_error(error: UserError) -> str:
    if error.field == "own_number":
        # Says what is wrong with the number: invalid, or outside the dialing policy.
        return str(error)
    messages = {
        "extension": _("This extension is taken or not valid (letters, digits, _ and - only)."),
        "pbx": _("A PBX name may only use letters, digits, '.', '_' and '-'."),
        "teams": _("Choose among your own teams; at least one."),
        "role": _("Only an administrator can create administrators."),
    }
    return messages.get(
        error.field,
        _("This username is taken or not valid (2-100 letters, digits or . _ @ -)."),
    )


def _refused(request: web.Request, refused: UserChangeRefused) -> Exception:
    """The error page for a refused change of a user."""
    match refused.reason:
        case UserChangeRefusal.NOT_FOUND:
            return not_found(request)
        case UserChangeRefusal.ADMIN_ONLY:
            return PageError(
                403, _("Not allowed"), _("Only an administrator can change an administrator.")
            )
        case UserChangeRefusal.ACCOUNT_ADMIN_ONLY:
            return PageError(
                403,
                _("Not allowed"),
                _(
                    "Only an administrator can change this account: it belongs to an "
                    "organizer, or to someone who is also in teams that are not yours."
                ),
            )
        case UserChangeRefusal.LAST_ADMIN:
            return PageError(
                409,
                _("Not possible"),
                _(
                    "This is the last active administrator; make someone else "
                    "an administrator first."
                ),
            )
        case UserChangeRefusal.SELF:
            return PageError(409, _("Not possible"), _("You cannot deactivate yourself."))


@routes.post("/ops/users/{user_id:\\d{1,9}}")
async def users_update(request: web.Request) -> web.StreamResponse:
    actor = require_staff(request)
    form = await read_form(request)
    reader = Reader(form)
    extension = reader.text("extension", max_length=40) or None
    pbx = reader.text("pbx", max_length=100) or None
    phone = _phone_choice(reader)
    teams = _team_names(reader)
    # The list's row no longer carries the flag (Deactivate is its own,
    # confirmed action); a form that still sends it is honoured.
    active = reader.flag("active") if "active" in form else None
    if reader.errors:
        # Nothing is half-applied: a cut extension or a lost team list would
        # silently change someone's phone or memberships.
        labels = {
            "extension": _("Extension"),
            "pbx": _("PBX"),
            "phone": _("Phone"),
            "own_number": _("Own number"),
            "teams": _("Teams"),
        }
        field, problem = next(iter(reader.errors.items()))
        raise PageError(
            422, _("Not valid"), _("%(field)s: %(problem)s", field=labels[field], problem=problem)
        )
    try:
        await request.app[deps_key].users.update_user(
            actor,
            int(request.match_info["user_id"]),
            extension=extension,
            pbx=pbx,
            teams=teams,
            active=active,
            phone=phone,
        )
    except UserChangeRefused as refused:
        raise _refused(request, refused) from None
    except UserError as error:
        raise PageError(422, _("Not valid"), _user_error(error)) from None
    raise web.HTTPSeeOther(safe_next(str(form.get("next", "")), "/ops/users"))


async def _user_page(
    request: web.Request,
    *,
    errors: dict[str, str] | None = None,
    new_password: str = "",
    confirm_active: bool | None = None,
    done: str = "",
    status: int = 200,
) -> web.Response:
    """One user's page: password reset, role, deactivation."""
    actor = require_staff(request)
    try:
        detail = await request.app[deps_key].users.detail(actor, int(request.match_info["user_id"]))
    except UserChangeRefused as refused:
        raise _refused(request, refused) from None
    return page(
        request,
        "user_manage.html",
        {
            "target": detail.user,
            "target_teams": detail.teams,
            "target_warnings": [_user_warning_text(w) for w in detail.warnings],
            "roles": detail.roles,
            "is_self": detail.user.id == actor.id,
            "errors": errors or {},
            "new_password": new_password,
            "confirm_active": confirm_active,
            "done": done,
        },
        status=status,
    )


@routes.get("/ops/users/{user_id:\\d{1,9}}")
async def user_manage(request: web.Request) -> web.Response:
    require_staff(request)
    return await _user_page(request)


@routes.post("/ops/users/{user_id:\\d{1,9}}/password")
async def user_reset_password(request: web.Request) -> web.Response:
    actor = require_staff(request)
    form = await read_form(request)
    typed = form.get("password", "")
    typed = typed if isinstance(typed, str) else ""
    if unstorable(typed):
        return await _user_page(
            request, errors={"password": _("This value is not valid.")}, status=422
        )
    session = current_session(request)
    try:
        chosen = await request.app[deps_key].users.reset_password(
            actor,
            int(request.match_info["user_id"]),
            # Empty: generate one.  Never stripped: spaces are part of a password.
            password=typed or None,
            keep_session=session.id if session is not None else None,
        )
    except UserChangeRefused as refused:
        raise _refused(request, refused) from None
    except WeakPassword as weak:
        return await _user_page(request, errors={"password": str(weak)}, status=422)
    # A typed password is not echoed back: whoever typed it knows it.
    return await _user_page(
        request, new_password=chosen if not typed else "", done=_("The password was reset.")
    )


@routes.post("/ops/users/{user_id:\\d{1,9}}/role")
async def user_change_role(request: web.Request) -> web.Response:
    actor = require_staff(request)
    form = await read_form(request)
    raw = form.get("role", "")
    if not isinstance(raw, str) or raw not in Role._value2member_map_:
        return await _user_page(request, errors={"role": _("Choose a role.")}, status=422)
    try:
        await request.app[deps_key].users.change_role(
            actor, int(request.match_info["user_id"]), Role(raw)
        )
    except UserChangeRefused as refused:
        raise _refused(request, refused) from None
    return await _user_page(request, done=_("The role was changed."))


@routes.post("/ops/users/{user_id:\\d{1,9}}/active")
async def user_set_active(request: web.Request) -> web.Response:
    """Deactivate or reactivate; deactivating asks for a confirmation first."""
    actor = require_staff(request)
    form = await read_form(request)
    raw = form.get("active", "")
    if raw not in ("0", "1"):
        raise PageError(422, _("Not valid"), _("This value is not valid."))
    active = raw == "1"
    if not active and form.get("confirm", "") != "1":
        # The page again, with the question and a button that confirms.
        return await _user_page(request, confirm_active=False)
    try:
        await request.app[deps_key].users.set_active(
            actor, int(request.match_info["user_id"]), active
        )
    except UserChangeRefused as refused:
        raise _refused(request, refused) from None
    return await _user_page(
        request,
        done=_("The account was reactivated.")
        if active
        else _("The account was deactivated; its sessions were ended."),
    )
