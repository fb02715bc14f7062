"""Creating, finding and changing users and teams."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.i18n import _
from dialer.domain.passwords import generate_password, hash_password
from dialer.domain.vocabulary import Role, VolunteerPhone
from dialer.services.access import can_act_on_account, can_manage_user, scope_of
from dialer.services.campaigns import teams_in_view
from dialer.services.volunteer_phones import (
    NumberRules,
    PhoneChoice,
    PhoneError,
    new_sip_secret,
    phone_columns,
)
from dialer.store import audit, people, sign_ins
from dialer.store.models import Team, TeamMember, User

_USERNAME = re.compile(r"[A-Za-z0-9_.@-]{2,100}\Z")
_EXTENSION = re.compile(r"[0-9A-Za-z_-]{1,40}\Z")
_PBX_NAME = re.compile(r"[0-9A-Za-z._-]{1,100}\Z")


class UserError(ValueError):
    """A user cannot be created as asked; ``field`` is the culprit (username or extension)."""

    def __init__(self, message: str, field: str = "username") -> None:
        super().__init__(message)
        self.field = field


def check_extension(extension: str) -> str:
    # The extension ends up in the Originate's Channel header through the
    # volunteer channel template, so only dial-string-safe characters pass.
    if not _EXTENSION.match(extension):
        raise UserError(
            _("a SIP extension may only use letters, digits, '_' and '-'"), field="extension"
        )
    return extension


def check_pbx_name(pbx: str) -> str:
    # Matched against DIALER_PBX_NAME of the workers; also an MQTT topic level.
    if not _PBX_NAME.match(pbx):
        raise UserError(_("a PBX name may only use letters, digits, '.', '_' and '-'"), field="pbx")
    return pbx


async def get_or_create_team(session: AsyncSession, name: str) -> Team:
    team = await session.scalar(select(Team).where(Team.name == name))
    if team is None:
        team = await people.add_team(session, name)
    return team


async def _check_extension_free(
    session: AsyncSession, extension: str, *, other_than: int | None = None
) -> None:
    """A valid extension no other user has: one desk phone rings for one person."""
    check_extension(extension)
    taken_by = select(User.username).where(User.sip_extension == extension)
    if other_than is not None:
        taken_by = taken_by.where(User.id != other_than)
    taken = await session.scalar(taken_by)
    if taken is not None:
        raise UserError(
            _(
                "extension %(extension)s is already used by %(username)s",
                extension=extension,
                username=taken,
            ),
            field="extension",
        )


async def add_user(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    role: Role = Role.VOLUNTEER,
    display_name: str = "",
    email: str | None = None,
    extension: str | None = None,
    teams: tuple[str, ...] = (),
    language: str | None = None,
    pbx: str | None = None,
    phone: PhoneChoice | None = None,
    numbers: NumberRules | None = None,
    approver_id: int | None = None,
    actor_label: str = "cli",
) -> User:
    if not _USERNAME.match(username):
        raise UserError(_("a username is 2-100 letters, digits or . _ @ -"))
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserError(_("user %(username)s already exists", username=repr(username)))
    if extension is not None:
        await _check_extension_free(session, extension)
    if pbx is not None:
        check_pbx_name(pbx)
    # ``extension`` is the one typed, whatever the phone.
    choice = replace(phone or PhoneChoice(VolunteerPhone.DESK), extension=extension)
    try:
        columns = await phone_columns(session, None, choice, rules=numbers, approver_id=approver_id)
    except PhoneError as error:
        raise UserError(str(error), field=error.field) from None
    user = User(
        username=username,
        pbx=pbx,
        display_name=display_name or username,
        email=email,
        role=role,
        password_hash=hash_password(password, user_inputs=(username, display_name)),
        language=language,
    )
    await people.add_user(session, user)
    await people.set_phone(session, user, columns)
    for name in teams:
        team = await get_or_create_team(session, name)
        await people.add_memberships(session, user.id, [team.id])
    await audit.record(
        session,
        action="user.create",
        entity_type="user",
        entity_id=user.id,
        changes={
            "username": username,
            "role": role.value,
            "pbx": pbx,
            "teams": list(teams),
            **_phone_changes(columns),
        },
        actor_label=actor_label,
    )
    return user


def _phone_changes(columns: people.PhoneColumns) -> dict[str, str | None]:
    """A phone as the audit log records it: never the browser phone's secret."""
    return {
        "phone": columns.phone.value,
        "extension": columns.sip_extension,
        "own_number": columns.own_number,
    }


async def change_phone(
    session: AsyncSession,
    user: User,
    choice: PhoneChoice,
    *,
    numbers: NumberRules | None,
    approver_id: int | None,
) -> people.PhoneColumns:
    """Give ``user`` the phone of ``choice``; raises :class:`UserError`."""
    try:
        columns = await phone_columns(session, user, choice, rules=numbers, approver_id=approver_id)
    except PhoneError as error:
        raise UserError(str(error), field=error.field) from None
    if columns.sip_extension is not None:
        await _check_extension_free(session, columns.sip_extension, other_than=user.id)
    await people.set_phone(session, user, columns)
    return columns


async def set_phone(
    session: AsyncSession,
    username: str,
    choice: PhoneChoice,
    *,
    numbers: NumberRules | None = None,
    actor_label: str = "cli",
) -> User:
    """Give ``username`` a desk phone, a browser phone or their own number
    (the CLI's ``user phone``, an administrator's act: an own number given
    here counts as approved).  Raises :class:`UserError`.
    """
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        raise UserError(_("no user %(username)s", username=repr(username)))
    # No extension given: theirs stays (the web's form always sends one).
    kept = replace(choice, extension=choice.extension or user.sip_extension)
    columns = await change_phone(session, user, kept, numbers=numbers, approver_id=None)
    await audit.record(
        session,
        action="user.update",
        entity_type="user",
        entity_id=user.id,
        changes=_phone_changes(columns),
        actor_label=actor_label,
    )
    return user


class UserWarning(StrEnum):
    """Why a volunteer cannot make calls yet."""

    # No desk phone or softphone extension: Call has nothing to ring.
    NO_EXTENSION = "no_extension"
    # In no team: no campaign, no list, nothing to call.
    NO_TEAM = "no_team"


def user_warnings(user: User, team_count: int) -> list[UserWarning]:
    """What keeps an active volunteer from calling; nothing for staff or inactive people."""
    if user.role is not Role.VOLUNTEER or not user.is_active:
        return []
    warnings: list[UserWarning] = []
    if user.phone is not VolunteerPhone.OWN_NUMBER and not user.sip_extension:
        warnings.append(UserWarning.NO_EXTENSION)
    if team_count == 0:
        warnings.append(UserWarning.NO_TEAM)
    return warnings


@dataclass(frozen=True, slots=True)
class UsersOverview:
    users: list[User]
    teams: list[Team]
    # Team names by user id.
    memberships: dict[int, list[str]]
    # What keeps each volunteer from calling, by user id (only those with a warning).
    warnings: dict[int, list[UserWarning]]


@dataclass(frozen=True, slots=True)
class UserDetail:
    user: User
    # The names of the user's teams the viewer sees.
    teams: list[str]
    warnings: list[UserWarning]
    # The roles the viewer may give this user.
    roles: list[Role]


class UserChangeRefusal(StrEnum):
    NOT_FOUND = "not_found"
    ADMIN_ONLY = "admin_only"
    # A password, role or deactivation of someone who is more than a volunteer
    # of the organizer's own teams (see access.can_act_on_account).
    ACCOUNT_ADMIN_ONLY = "account_admin_only"
    # The change would leave no active administrator.
    LAST_ADMIN = "last_admin"
    # Nobody deactivates themselves (they would lock themselves out at once).
    SELF = "self"


class UserChangeRefused(Exception):
    def __init__(self, reason: UserChangeRefusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


async def _teams_named(session: AsyncSession, actor: User, names: Iterable[str]) -> set[int]:
    """The ids of the teams called ``names``, as ``actor`` may hand them out.

    An administrator names any team, and a new name makes a new team; an
    organizer only their own teams.  Raises :class:`UserError` (field ``teams``).
    """
    scope = await scope_of(session, actor)
    wanted: set[int] = set()
    for name in names:
        if scope.teams is None:
            wanted.add((await get_or_create_team(session, name)).id)
            continue
        team_id = await session.scalar(select(Team.id).where(Team.name == name))
        if team_id is None or team_id not in scope.teams:
            raise UserError(_("only your own teams can be given"), field="teams")
        wanted.add(team_id)
    return wanted


class UserService:
    """The staff's user admin: who exists, in which teams, with which extension.

    An organizer sees and manages the people of their own teams; an
    administrator, everyone (:func:`dialer.services.access.can_manage_user`).
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], numbers: NumberRules | None = None
    ) -> None:
        self._sessions = sessions
        # How own numbers are read and which may be dialed (None: none may be set).
        self._numbers = numbers

    async def overview(self, actor: User) -> UsersOverview:
        async with self._sessions() as session:
            scope = await scope_of(session, actor)
            users = list(
                await session.scalars(
                    select(User).where(scope.user_filter()).order_by(User.role, User.username)
                )
            )
            teams = await teams_in_view(session, actor)
            team_names = {team.id: team.name for team in teams}
            memberships: dict[int, list[str]] = {}
            # Every team counts for the warning, seen or not: a volunteer of
            # another team can call there.
            team_counts: dict[int, int] = {}
            for user_id, team_id in await session.execute(
                select(TeamMember.user_id, TeamMember.team_id)
            ):
                team_counts[user_id] = team_counts.get(user_id, 0) + 1
                if team_id in team_names:
                    memberships.setdefault(user_id, []).append(team_names[team_id])
        warnings = {
            user.id: found
            for user in users
            if (found := user_warnings(user, team_counts.get(user.id, 0)))
        }
        return UsersOverview(users, teams, memberships, warnings)

    async def detail(self, actor: User, user_id: int) -> UserDetail:
        """One user as ``actor`` may manage them; raises :class:`UserChangeRefused`
        (NOT_FOUND) for anyone outside their view."""
        async with self._sessions() as session:
            user = await self._manageable(session, actor, user_id)
            scope = await scope_of(session, actor)
            all_teams = list(
                await session.execute(
                    select(Team.id, Team.name)
                    .join(TeamMember, TeamMember.team_id == Team.id)
                    .where(TeamMember.user_id == user.id)
                    .order_by(Team.name)
                )
            )
            teams = [name for team_id, name in all_teams if scope.covers(team_id)]
            roles = [role for role in Role if actor.role is Role.ADMIN or role is not Role.ADMIN]
            return UserDetail(user, teams, user_warnings(user, len(all_teams)), roles)

    @staticmethod
    async def _manageable(
        session: AsyncSession,
        actor: User,
        user_id: int,
        *,
        for_update: bool = False,
        account: bool = False,
    ) -> User:
        """The user ``actor`` may change, or :class:`UserChangeRefused`.

        An administrator is changed by administrators only (ADMIN_ONLY for an
        organizer of their team, NOT_FOUND outside the organizer's teams).
        ``account``: the change acts on the whole account (password, role,
        deactivation), which asks more (ACCOUNT_ADMIN_ONLY).
        """
        query = select(User).where(User.id == user_id)
        if for_update:
            # Two administrators demoting each other at once must not both pass
            # the "last active administrator" check.
            query = query.with_for_update()
        user = await session.scalar(query)
        if user is None:
            raise UserChangeRefused(UserChangeRefusal.NOT_FOUND)
        if user.role is Role.ADMIN and actor.role is not Role.ADMIN:
            raise UserChangeRefused(
                UserChangeRefusal.ADMIN_ONLY
                if actor.role is Role.ORGANIZER
                else UserChangeRefusal.NOT_FOUND
            )
        if not await can_manage_user(session, actor, user):
            raise UserChangeRefused(UserChangeRefusal.NOT_FOUND)
        if account and not await can_act_on_account(session, actor, user):
            raise UserChangeRefused(UserChangeRefusal.ACCOUNT_ADMIN_ONLY)
        return user

    @staticmethod
    async def _other_active_admins(session: AsyncSession, user: User) -> int:
        # Locks the administrators' rows on PostgreSQL (SQLite serialises writers
        # anyway), so concurrent demotions see each other.
        others = await session.scalars(
            select(User.id)
            .where(User.role == Role.ADMIN, User.is_active.is_(True), User.id != user.id)
            .with_for_update()
        )
        return len(list(others))

    async def reset_password(
        self,
        actor: User,
        user_id: int,
        *,
        password: str | None,
        keep_session: str | None = None,
    ) -> str:
        """Give ``user_id`` a new password (``password``, or a generated one when
        None) and end their sessions; returns the password, to show once.

        ``keep_session`` is the actor's own session id, kept when they reset
        their own password.  Raises :class:`UserChangeRefused` or
        :class:`~dialer.domain.passwords.WeakPassword`; the password never
        reaches the audit log.
        """
        chosen = password if password is not None else generate_password()
        async with self._sessions.begin() as session:
            user = await self._manageable(session, actor, user_id, account=True)
            # argon2 and zxcvbn take a good part of a second: off the event loop.
            password_hash = await asyncio.to_thread(
                hash_password, chosen, user_inputs=(user.username, user.display_name)
            )
            await people.set_password_hash(session, user.id, password_hash)
            # Whoever read the browser phone's password in a session ended
            # here must not keep using it.
            await people.renew_sip_secret(session, user.id, new_sip_secret())
            ended = await sign_ins.end_user_sessions(
                session, user.id, keep=keep_session if user.id == actor.id else None
            )
            await audit.record(
                session,
                action="user.password_reset",
                entity_type="user",
                entity_id=user.id,
                changes={"generated": password is None, "sessions_ended": ended},
                actor_id=actor.id,
            )
        return chosen

    async def change_role(self, actor: User, user_id: int, role: Role) -> None:
        """Give ``user_id`` another role.

        Only an administrator makes (or unmakes) administrators, and the last
        active administrator stays one: someone must be able to manage the
        rest.  An organizer changes the roles of their teams' people, between
        volunteer and organizer.  Raises :class:`UserChangeRefused`.
        """
        async with self._sessions.begin() as session:
            if role is Role.ADMIN and actor.role is not Role.ADMIN:
                raise UserChangeRefused(UserChangeRefusal.ADMIN_ONLY)
            user = await self._manageable(session, actor, user_id, for_update=True, account=True)
            previous = user.role
            if previous is role:
                return
            if (
                previous is Role.ADMIN
                and user.is_active
                and await self._other_active_admins(session, user) == 0
            ):
                raise UserChangeRefused(UserChangeRefusal.LAST_ADMIN)
            await people.set_role(session, user, role)
            await audit.record(
                session,
                action="user.role",
                entity_type="user",
                entity_id=user.id,
                changes={"from": previous.value, "to": role.value},
                actor_id=actor.id,
            )

    async def set_active(self, actor: User, user_id: int, active: bool) -> None:
        """Deactivate (sign-in refused, every session ended) or reactivate a user.

        Nobody deactivates themselves, so the last active administrator
        stays.  Raises :class:`UserChangeRefused`.
        """
        if user_id == actor.id:
            raise UserChangeRefused(UserChangeRefusal.SELF)
        async with self._sessions.begin() as session:
            user = await self._manageable(session, actor, user_id, for_update=True, account=True)
            await self._set_active(session, actor, user, active)

    @staticmethod
    async def _set_active(session: AsyncSession, actor: User, user: User, active: bool) -> None:
        if user.is_active is active:
            return
        if user.id == actor.id:
            raise UserChangeRefused(UserChangeRefusal.SELF)
        await people.set_active(session, user, active)
        if not active:
            await people.renew_sip_secret(session, user.id, new_sip_secret())
        ended = 0 if active else await sign_ins.end_user_sessions(session, user.id)
        await audit.record(
            session,
            action="user.reactivate" if active else "user.deactivate",
            entity_type="user",
            entity_id=user.id,
            changes={"active": active, "sessions_ended": ended},
            actor_id=actor.id,
        )

    async def add_user(
        self,
        actor: User,
        *,
        username: str,
        password: str,
        role: Role = Role.VOLUNTEER,
        display_name: str = "",
        email: str | None = None,
        extension: str | None = None,
        teams: tuple[str, ...] = (),
        language: str | None = None,
        phone: PhoneChoice | None = None,
    ) -> User:
        """Raises :class:`UserError` or :class:`~dialer.domain.passwords.WeakPassword`.

        An organizer adds people to their own teams only, and to one at least
        (their only team when they name none): someone in no team of theirs
        would leave their view at once.
        """
        async with self._sessions.begin() as session:
            if role is Role.ADMIN and actor.role is not Role.ADMIN:
                raise UserError(_("only an administrator can create administrators"), "role")
            await _teams_named(session, actor, teams)
            if actor.role is not Role.ADMIN and not teams:
                own = await teams_in_view(session, actor)
                if len(own) != 1:
                    raise UserError(_("choose at least one of your teams"), field="teams")
                teams = (own[0].name,)
            return await add_user(
                session,
                username=username,
                password=password,
                role=role,
                display_name=display_name,
                email=email,
                extension=extension,
                teams=teams,
                language=language,
                phone=phone,
                numbers=self._numbers,
                approver_id=actor.id,
                actor_label=f"web:{actor.username}",
            )

    async def update_user(
        self,
        actor: User,
        user_id: int,
        *,
        extension: str | None,
        pbx: str | None,
        teams: list[str],
        active: bool | None = None,
        phone: PhoneChoice | None = None,
    ) -> None:
        """Set a user's extension, PBX, teams, phone (unchanged when None) and
        (for someone else, when ``active`` is not None) whether they are active.

        An organizer changes only the memberships of their own teams; the
        user's other teams stay.  Raises :class:`UserChangeRefused`, or
        :class:`UserError` naming the field (``extension``, ``pbx`` or
        ``teams``) that is taken or not valid; nothing is written then.
        """
        async with self._sessions.begin() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise UserChangeRefused(UserChangeRefusal.NOT_FOUND)
            if user.role is Role.ADMIN and actor.role is not Role.ADMIN:
                raise UserChangeRefused(UserChangeRefusal.ADMIN_ONLY)
            if not await can_manage_user(session, actor, user):
                raise UserChangeRefused(UserChangeRefusal.NOT_FOUND)
            if extension is not None:
                await _check_extension_free(session, extension, other_than=user.id)
            if pbx is not None:
                check_pbx_name(pbx)
            wanted = await _teams_named(session, actor, teams)
            scope = await scope_of(session, actor)
            current = {
                member.team_id
                for member in await session.scalars(
                    select(TeamMember).where(TeamMember.user_id == user.id)
                )
            }
            changeable = current if scope.teams is None else current & scope.teams
            phone_before = (user.phone, user.own_number)
            # The extension is the phone's: change_phone writes it, knowing
            # the one it replaces (a browser phone keeps its own when none is typed).
            await people.update_user(
                session, user, sip_extension=user.sip_extension, pbx=pbx, is_active=user.is_active
            )
            columns = await change_phone(
                session,
                user,
                replace(phone or PhoneChoice(user.phone), extension=extension),
                numbers=self._numbers,
                approver_id=actor.id,
            )
            # What rings, and which number the dialer may call, belong to the
            # whole account: an organizer of only one of the person's teams
            # must not send their calls to a number of the organizer's choosing.
            if (columns.phone, columns.own_number) != phone_before and not (
                await can_act_on_account(session, actor, user)
            ):
                raise UserChangeRefused(UserChangeRefusal.ACCOUNT_ADMIN_ONLY)
            if active is not None and active is not user.is_active and user.id != actor.id:
                # The same action as the Deactivate button, with its rules: sessions end too.
                if not await can_act_on_account(session, actor, user):
                    raise UserChangeRefused(UserChangeRefusal.ACCOUNT_ADMIN_ONLY)
                await self._set_active(session, actor, user, active)
            await people.add_memberships(session, user.id, wanted - current)
            await people.remove_memberships(session, user.id, changeable - wanted)
            await audit.record(
                session,
                action="user.update",
                entity_type="user",
                entity_id=user.id,
                changes={
                    **_phone_changes(columns),
                    "pbx": pbx,
                    "teams": teams,
                    "active": user.is_active,
                },
                actor_id=actor.id,
            )
