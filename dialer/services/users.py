"""Creating, finding and changing users and teams."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.i18n import _
from dialer.domain.passwords import hash_password
from dialer.domain.vocabulary import Role
from dialer.services.access import can_manage_user, scope_of
from dialer.services.campaigns import teams_in_view
from dialer.store import audit, people
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
    user = User(
        username=username,
        pbx=pbx,
        display_name=display_name or username,
        email=email,
        role=role,
        password_hash=hash_password(password, user_inputs=(username, display_name)),
        sip_extension=extension,
        language=language,
    )
    await people.add_user(session, user)
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
            "extension": extension,
            "pbx": pbx,
            "teams": list(teams),
        },
        actor_label=actor_label,
    )
    return user


@dataclass(frozen=True, slots=True)
class UsersOverview:
    users: list[User]
    teams: list[Team]
    # Team names by user id.
    memberships: dict[int, list[str]]


class UserChangeRefusal(StrEnum):
    NOT_FOUND = "not_found"
    ADMIN_ONLY = "admin_only"


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

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

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
            for user_id, team_id in await session.execute(
                select(TeamMember.user_id, TeamMember.team_id)
            ):
                if team_id in team_names:
                    memberships.setdefault(user_id, []).append(team_names[team_id])
        return UsersOverview(users, teams, memberships)

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
        active: bool,
    ) -> None:
        """Set a user's extension, PBX, teams and (for someone else) whether they are active.

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
            await people.update_user(
                session,
                user,
                sip_extension=extension,
                pbx=pbx,
                is_active=active if user.id != actor.id else user.is_active,
            )
            await people.add_memberships(session, user.id, wanted - current)
            await people.remove_memberships(session, user.id, changeable - wanted)
            await audit.record(
                session,
                action="user.update",
                entity_type="user",
                entity_id=user.id,
                changes={
                    "extension": extension,
                    "pbx": pbx,
                    "teams": teams,
                    "active": user.is_active,
                },
                actor_id=actor.id,
            )
