"""The ``dialer`` command line.

Messages go through gettext (:mod:`dialer.domain.i18n`) in the language the
environment asks for (``LC_ALL``, ``LC_MESSAGES``, ``LANG``), English by
default; the help texts stay in English.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dialer import __version__
from dialer.domain import i18n
from dialer.domain.i18n import _, ngettext, pgettext
from dialer.domain.vocabulary import Role, VolunteerPhone
from dialer.runtime.settings import Settings

if TYPE_CHECKING:
    from dialer.services.volunteer_phones import NumberRules

T = TypeVar("T")

EXIT_ROWS_REJECTED = 3


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.find_object(Settings)
    if settings is None:
        raise click.ClickException(_("settings not loaded"))
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dialer")
@click.pass_context
def main(ctx: click.Context) -> None:
    """A self-hosted phone bank on your own Asterisk.

    Settings come from DIALER_* environment variables and a .env file in
    the current directory; see docs/configuration.md for the full list.
    """
    token = i18n.activate_scoped(i18n.language_from_environment())
    ctx.call_on_close(lambda: i18n.deactivate(token))
    try:
        ctx.obj = Settings()
    except ValueError as error:
        raise click.ClickException(_("invalid settings: %(error)s", error=error)) from None


@main.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Bring the database schema up to REVISION (default: the latest)."""
    from dialer.store import engine as database

    database.upgrade(_settings(ctx).database_url_value, revision)
    click.echo(_("database upgraded to %(revision)s", revision=revision))


@db.command("downgrade")
@click.argument("revision")
@click.pass_context
def db_downgrade(ctx: click.Context, revision: str) -> None:
    """Take the database schema back to REVISION ('base' removes every table)."""
    from dialer.store import engine as database

    database.downgrade(_settings(ctx).database_url_value, revision)
    click.echo(_("database downgraded to %(revision)s", revision=revision))


@main.group()
def user() -> None:
    """Volunteers, organizers and admins."""


@user.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice([role.value for role in Role]),
    default=Role.VOLUNTEER.value,
    show_default=True,
)
@click.option("--extension", help="The volunteer's SIP extension, e.g. 1001.")
@click.option(
    "--pbx",
    help="The PBX the desk phone is on (a worker's DIALER_PBX_NAME); "
    "default: that of the process taking the call.",
)
@click.option(
    "--phone",
    type=click.Choice([kind.value for kind in VolunteerPhone]),
    default=VolunteerPhone.DESK.value,
    show_default=True,
    help="What rings on Call: a desk SIP phone, the browser (WebRTC; an extension "
    "is chosen when --extension is not given), or their own number (--own-number).",
)
@click.option(
    "--own-number",
    help="With --phone own_number: the volunteer's own phone, dialed over the trunk "
    "(approved by giving it here).",
)
@click.option("--team", "teams", multiple=True, help="Team to join (repeatable; created if new).")
@click.option("--name", "display_name", default="", help="Name shown to others.")
@click.option("--email")
@click.option("--language", help="Interface language, e.g. fr or en.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def user_add(
    ctx: click.Context,
    username: str,
    role: str,
    extension: str | None,
    pbx: str | None,
    teams: tuple[str, ...],
    display_name: str,
    email: str | None,
    language: str | None,
    password_stdin: bool,
    phone: str,
    own_number: str | None,
) -> None:
    """Create a user.  Without --password-stdin a password is generated and shown once."""
    from dialer.domain.passwords import WeakPassword, generate_password
    from dialer.services.users import UserError, add_user
    from dialer.services.volunteer_phones import PhoneChoice
    from dialer.store.engine import open_database

    generated = not password_stdin
    password = generate_password() if generated else sys.stdin.readline().rstrip("\r\n")

    settings = _settings(ctx)

    async def create() -> None:
        async with open_database(settings.database_url_value) as sessions:
            async with sessions.begin() as session:
                await add_user(
                    session,
                    username=username,
                    password=password,
                    role=Role(role),
                    display_name=display_name,
                    email=email,
                    extension=extension,
                    teams=teams,
                    language=language,
                    pbx=pbx,
                    phone=PhoneChoice(VolunteerPhone(phone), own_number=own_number),
                    numbers=_number_rules(settings),
                )

    try:
        _run(create())
    except (UserError, WeakPassword) as error:
        raise click.ClickException(str(error)) from None
    click.echo(_("created %(role)s %(username)s", role=_role_label(role), username=username))
    if generated:
        click.echo(_("password: %(password)s", password=password))


@user.command("phone")
@click.argument("username")
@click.argument("phone", type=click.Choice([kind.value for kind in VolunteerPhone]))
@click.option("--extension", help="A new extension (default: keep theirs, or choose a free one).")
@click.option("--own-number", help="With own_number: their own phone number (approved by this).")
@click.pass_context
def user_phone(
    ctx: click.Context, username: str, phone: str, extension: str | None, own_number: str | None
) -> None:
    """Make USERNAME's phone a desk SIP phone, the browser, or their own number.

    A browser phone exists in Asterisk as soon as this returns (realtime,
    docs/deploy.md); nothing in Asterisk's files changes.  An own number is
    dialed over the trunk under the dialing policy, which it must pass now.
    """
    from dialer.services.users import UserError, set_phone
    from dialer.services.volunteer_phones import PhoneChoice
    from dialer.store.engine import open_database

    settings = _settings(ctx)
    choice = PhoneChoice(VolunteerPhone(phone), extension=extension, own_number=own_number)

    async def change() -> str:
        async with open_database(settings.database_url_value) as sessions:
            async with sessions.begin() as session:
                changed = await set_phone(
                    session, username, choice, numbers=_number_rules(settings)
                )
                if changed.phone is VolunteerPhone.OWN_NUMBER:
                    return changed.own_number or "-"
                return changed.sip_extension or "-"

    try:
        reached_at = _run(change())
    except UserError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        _(
            "%(username)s now calls with: %(phone)s (%(address)s)",
            username=username,
            phone=_phone_label(phone),
            address=reached_at,
        )
    )


def _phone_label(phone: str) -> str:
    labels = {
        VolunteerPhone.DESK.value: _("desk phone"),
        VolunteerPhone.BROWSER.value: _("browser"),
        VolunteerPhone.OWN_NUMBER.value: _("their own phone number"),
    }
    return labels.get(phone, phone)


def _number_rules(settings: Settings) -> NumberRules:
    from dialer.services.volunteer_phones import NumberRules

    return NumberRules(settings.default_region, settings.dialing_policy)


def _role_label(role: str) -> str:
    labels = {
        Role.VOLUNTEER.value: pgettext("role", "volunteer"),
        Role.ORGANIZER.value: pgettext("role", "organizer"),
        Role.ADMIN.value: pgettext("role", "admin"),
    }
    return labels.get(role, role)


@main.command("import-contacts")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--campaign", "campaign_id", type=int, help="Add the contacts to this campaign.")
@click.option(
    "--assign-to",
    help="Comma-separated usernames; contacts are shared out among them in turn.",
)
@click.option("--encoding", default="utf-8", show_default=True)
@click.option("--region", help="Region for national numbers (default: DIALER_DEFAULT_REGION).")
@click.option(
    "--errors-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every rejected row (line, reason, then the row as it was) to this CSV file.",
)
@click.option(
    "--changes-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every change, conflict and flagged number to this CSV file.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Let the file replace different values on file (each one is reported and audited); "
    "by default it only fills empty fields.",
)
@click.option(
    "--bulk/--no-bulk",
    default=None,
    help="Import through worker processes and COPY (PostgreSQL; same rules and report), "
    "or in batches as for small files.  Default: the bulk path for files of "
    "DIALER_IMPORT_BULK_MIN_BYTES or more.",
)
@click.pass_context
def import_contacts_command(
    ctx: click.Context,
    file: Path,
    campaign_id: int | None,
    assign_to: str | None,
    encoding: str,
    region: str | None,
    errors_file: Path | None,
    changes_file: Path | None,
    overwrite: bool,
    bulk: bool | None,
) -> None:
    """Import contacts from a CSV FILE (headers mapped by name; see docs/user-guide.md).

    A number already on file merges the row into that contact: empty fields
    are filled, different values are kept and listed as conflicts (unless
    --overwrite).  Numbers the dialing policy refuses are imported and listed.

    Exit status: 0 when every row went in, 3 when some rows were rejected
    (the rest were imported), 1 when the file could not be imported at all.
    """
    import codecs
    import csv

    from dialer.services.export import spreadsheet_safe
    from dialer.services.importer import ImportFileError, import_contacts
    from dialer.store.engine import open_database

    settings = _settings(ctx)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise click.BadParameter(
            _("unknown encoding %(encoding)s", encoding=repr(encoding)), param_hint="--encoding"
        ) from None
    names = [name.strip() for name in (assign_to or "").split(",") if name.strip()]
    total_lines = file.read_bytes().count(b"\n")

    async def run() -> Any:
        async with open_database(settings.database_url_value) as sessions:
            with click.progressbar(
                length=max(total_lines, 1), label=_("importing"), file=sys.stderr
            ) as bar:
                return await import_contacts(
                    sessions,
                    file,
                    region=(region or settings.default_region).upper(),
                    campaign_id=campaign_id,
                    assign_to=names,
                    encoding=encoding,
                    progress=bar.update,
                    overwrite=overwrite,
                    policy=settings.dialing_policy,
                    bulk=bulk,
                    bulk_min_bytes=settings.import_bulk_min_bytes,
                )

    try:
        report = _run(run())
    except ImportFileError as error:
        raise click.ClickException(_("%(file)s: %(error)s", file=file, error=error)) from None
    shown = report.errors[:50]
    for row_error in shown:
        click.echo(f"{file}:{row_error}", err=True)
    more = len(report.errors) - len(shown)
    if more and errors_file:
        click.echo(
            ngettext(
                "... and %(num)s more rejected rows", "... and %(num)s more rejected rows", more
            ),
            err=True,
        )
    elif more:
        click.echo(
            ngettext(
                "... and %(num)s more rejected rows; use --errors-file to write them all",
                "... and %(num)s more rejected rows; use --errors-file to write them all",
                more,
            ),
            err=True,
        )
    if errors_file:
        with errors_file.open("w", newline="", encoding="utf-8") as handle:
            # The file's own cells go back into a spreadsheet: neutralised as the export is.
            writer = csv.writer(handle)
            writer.writerow([spreadsheet_safe(cell) for cell in ["line", "reason", *report.header]])
            writer.writerows(
                [spreadsheet_safe(cell) for cell in [error.line, error.reason, *error.cells]]
                for error in report.errors
            )
    # What the rows did to contacts already on file, then the numbers never dialed.
    lines = [*map(str, report.changes), *map(str, report.flags)]
    for text in lines[:50]:
        click.echo(f"{file}:{text}", err=True)
    if len(lines) > 50 and not changes_file:
        click.echo(
            ngettext(
                "... and %(num)s more changes; use --changes-file to write them all",
                "... and %(num)s more changes; use --changes-file to write them all",
                len(lines) - 50,
            ),
            err=True,
        )
    if changes_file:
        with changes_file.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["line", "contact_id", "contact", "field", "kind", "old", "new", "details"]
            )
            writer.writerows(
                [spreadsheet_safe(cell) for cell in [*change.to_json(), change.describe()]]
                for change in report.changes
            )
            writer.writerows(
                [
                    spreadsheet_safe(cell)
                    for cell in [
                        flag.line,
                        "",
                        "",
                        "phone",
                        "flagged",
                        "",
                        flag.number,
                        flag.reason,
                    ]
                ]
                for flag in report.flags
            )
    if report.ignored_columns:
        click.echo(
            _("ignored columns: %(columns)s", columns=", ".join(report.ignored_columns)), err=True
        )
    click.echo(report.summary())
    if report.rejected:
        ctx.exit(EXIT_ROWS_REJECTED)


@main.command("export-results")
@click.option("--campaign", "campaign_id", type=int, required=True)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def export_results_command(ctx: click.Context, campaign_id: int, file: Path) -> None:
    """Write a campaign's call results and survey answers to a CSV FILE ('-' for stdout)."""
    from dialer.services.export import ExportError, export_results
    from dialer.store.engine import open_database

    async def run() -> int:
        # Written as the database reads the rows: the file grows while it runs.
        async with open_database(_settings(ctx).database_url_value) as sessions:
            async with sessions() as session:
                if str(file) == "-":
                    sys.stdout.flush()
                    return await export_results(session, campaign_id, sys.stdout.buffer)
                with file.open("wb") as handle:
                    return await export_results(session, campaign_id, handle)

    try:
        count = _run(run())
    except ExportError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        ngettext(
            "exported %(num)s call(s) to %(file)s",
            "exported %(num)s call(s) to %(file)s",
            count,
            file=file,
        ),
        err=True,
    )


def _configure_logging(settings: Settings) -> None:
    from dialer.runtime.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the AMI worker and the web app in one process."""
    from dialer.runtime.bootstrap import run_serve

    settings = _settings(ctx)
    _configure_logging(settings)
    asyncio.run(run_serve(settings))


@main.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run only the AMI worker (one per Asterisk server).

    Started before its database, it waits for it (logging why, /healthz
    answering 503) instead of exiting; while it runs it writes a heartbeat
    that the web processes' /healthz reports.
    """
    from dialer.runtime.bootstrap import run_serve

    settings = _settings(ctx)
    _configure_logging(settings)
    asyncio.run(run_serve(settings, with_web=False))


@main.command("web")
@click.pass_context
def web_command(ctx: click.Context) -> None:
    """Run only the web app (any number of them, behind a load balancer)."""
    from dialer.runtime.bootstrap import run_serve

    settings = _settings(ctx)
    _configure_logging(settings)
    asyncio.run(run_serve(settings, with_worker=False))


@main.command()
@click.option("--port", type=int, default=None, help="Web port (default: DIALER_WEB_PORT).")
@click.option(
    "--ami-port",
    type=int,
    default=0,
    show_default=True,
    help="Port of the built-in PBX simulator (0: any free port).",
)
@click.option(
    "--time-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Speed of the simulated calls (0.1 = ten times faster).",
)
@click.pass_context
def demo(ctx: click.Context, port: int | None, ami_port: int, time_scale: float) -> None:
    """Run the whole product on this machine with no set-up.

    SQLite (dialer-demo.sqlite3 in the current directory), the built-in AMI
    simulator, demo users, a campaign and contacts whose numbers produce
    every kind of call outcome.
    """
    from dialer.runtime.demo import run_demo

    settings = _settings(ctx)
    _configure_logging(settings)
    asyncio.run(run_demo(settings, web_port=port, ami_port=ami_port, time_scale=time_scale))


@main.command("simulate-pbx")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=5038, show_default=True)
@click.option("--username", default=None, help="AMI user (default: DIALER_AMI_USERNAME).")
@click.option("--secret", default=None, help="AMI secret (default: DIALER_AMI_SECRET).")
@click.option("--least-privilege", is_flag=True, help="Behave as for a least-privilege user.")
@click.option("--time-scale", type=float, default=1.0, show_default=True)
@click.option(
    "--trunk",
    type=click.Choice(["carrier", "pjsip", "local"]),
    default="carrier",
    show_default=True,
    help="How contacts are reached: the shipped dialplan's carrier trunk, or the lab "
    "dialplans of the older recordings (a SIP trunk, or Local channels).",
)
@click.option("--no-dialplan-events", is_flag=True, help="Leave out VarSet and Newexten noise.")
@click.pass_context
def simulate_pbx(
    ctx: click.Context,
    host: str,
    port: int,
    username: str | None,
    secret: str | None,
    least_privilege: bool,
    time_scale: float,
    trunk: str,
    no_dialplan_events: bool,
) -> None:
    """Serve an AMI-speaking PBX simulator (see docs/command-line.md for its behaviour rule)."""
    from ami_bridge.simulator import TRUNKS, run_simulator

    settings = _settings(ctx)
    _configure_logging(settings)
    user = username or settings.ami_username
    password = secret if secret is not None else settings.ami_secret.get_secret_value()
    if not password:
        raise click.UsageError(_("give --secret or set DIALER_AMI_SECRET"))
    click.echo(
        _(
            "AMI simulator listening on %(host)s:%(port)s (user %(user)s)",
            host=host,
            port=port,
            user=user,
        ),
        err=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_simulator(
                host,
                port,
                username=user,
                secret=password,
                least_privilege=least_privilege,
                time_scale=time_scale,
                default_trunk=next(choice for choice in TRUNKS if choice == trunk),
                dialplan_events=not no_dialplan_events,
            )
        )


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def replay(files: tuple[str, ...]) -> None:
    """Replay recorded AMI sessions (FILE.ami ...) and print one JSON line per call.

    Give the files of one session in order (e.g. a connection lost and the
    next one) to see how the resync settled the calls.
    """
    from ami_bridge.tools.replay import main_replay

    sys.exit(main_replay(list(files), sys.stdout))


@main.command("check-pbx")
@click.option(
    "--extension",
    "extensions",
    multiple=True,
    help="Volunteer extension to look up (repeatable; default: every desk phone's).",
)
@click.option(
    "--number",
    help="A contact number to look up too: the dialplan must dial it if the dialing policy "
    "allows it, refuse it otherwise (default: an example number of each allowed region).",
)
@click.pass_context
def check_pbx_command(ctx: click.Context, extensions: tuple[str, ...], number: str | None) -> None:
    """Check that the configured PBX and AMI user can do what the dialer needs.

    Connects with DIALER_AMI_*, and reports in plain words: cannot connect,
    login refused, missing write class, outbound context missing, numbers
    the dialplan dials that it must refuse (toll fraud) or refuses that
    the dialer may call, the trunk or a volunteer's phone missing or
    unreachable.  Nothing rings.  Exit status 1 when something fails.
    """
    from ami_bridge.tools.check import check_pbx, probe_numbers

    settings = _settings(ctx)
    given = None
    if number is not None:
        from dialer.domain.number_reasons import phone_reason
        from dialer.domain.numbers import InvalidPhoneNumber, to_e164

        try:
            given = to_e164(number, settings.default_region)
        except InvalidPhoneNumber as error:
            message = _(
                "invalid phone number %(number)s: %(reason)s",
                number=repr(error.raw),
                reason=phone_reason(error.reason),
            )
            raise click.BadParameter(message, param_hint="--number") from None
    dial, refuse = probe_numbers(settings.dialing_policy, given)
    chosen = list(extensions) or _run(_user_extensions(settings))
    results = _run(
        check_pbx(
            settings.ami_host,
            settings.ami_port,
            settings.ami_username,
            settings.ami_secret,
            outbound_context=settings.outbound_context,
            dial=dial,
            refuse=refuse,
            extensions=chosen,
            volunteer_channel=settings.volunteer_channel,
            supervision_context=settings.supervision_context,
            power_contexts=(settings.power_context, settings.power_join_context),
        )
    )
    for result in results:
        click.echo(str(result))
    if not chosen:
        click.echo(_("note  no volunteer extensions to check (none given, none in the database)"))
    if not all(result.ok for result in results):
        ctx.exit(1)


async def _user_extensions(settings: Settings) -> list[str]:
    from sqlalchemy import or_, select
    from sqlalchemy.exc import SQLAlchemyError

    from dialer.store.engine import open_database
    from dialer.store.models import User

    try:
        async with open_database(settings.database_url_value) as sessions:
            async with sessions() as session:
                # Only the phones on this PBX: a user's own PBX, else
                # DIALER_PBX_NAME (as call requests pick it).  Only desk
                # phones: a browser phone registers only while its volunteer
                # has the app open, and an own number is no endpoint at all.
                on_this_pbx = or_(User.pbx == settings.pbx_name, User.pbx.is_(None))
                rows = await session.scalars(
                    select(User.sip_extension).where(
                        User.sip_extension.is_not(None),
                        User.is_active.is_(True),
                        User.phone == VolunteerPhone.DESK,
                        on_this_pbx,
                    )
                )
                return sorted(extension for extension in rows if extension)
    except (SQLAlchemyError, OSError):
        return []
