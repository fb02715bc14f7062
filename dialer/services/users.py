"""Creating, finding and changing users and teams."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.i18n import _
from dialer.domain.passwords import hash_password
from dialer.domain.vocabulary import Role
from dialer.services.campaigns import all_teams
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
        password_hash=hash_password(password),
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


class UserService:
    """The staff's user admin: who exists, in which teams, with which extension."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def overview(self) -> UsersOverview:
        async with self._sessions() as session:
            users = list(await session.scalars(select(User).order_by(User.role, User.username)))
            teams = await all_teams(session)
            memberships: dict[int, list[str]] = {}
            for user_id, name in await session.execute(
                select(TeamMember.user_id, Team.name).join(Team, Team.id == TeamMember.team_id)
            ):
                memberships.setdefault(user_id, []).append(name)
        return UsersOverview(users, teams, memberships)

    async def add_user(
        self,
        *,
        username: str,
        password: str,
        role: Role = Role.VOLUNTEER,
        display_name: str = "",
        email: str | None = None,
        extension: str | None = None,
        teams: tuple[str, ...] = (),
        language: str | None = None,
        actor_label: str = "cli",
    ) -> User:
        """Raises :class:`UserError` or :class:`~dialer.domain.passwords.WeakPassword`."""
        async with self._sessions.begin() as session:
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
                actor_label=actor_label,
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

        Raises :class:`UserChangeRefused`, or :class:`UserError` naming the
        field (``extension`` or ``pbx``) that is taken or not valid; nothing
        is written then.
        """
        async with self._sessions.begin() as session:
            user = await session.get(User, user_id)
            if user is None:
                raise UserChangeRefused(UserChangeRefusal.NOT_FOUND)
            if user.role is Role.ADMIN and actor.role is not Role.ADMIN:
                raise UserChangeRefused(UserChangeRefusal.ADMIN_ONLY)
            if extension is not None:
                await _check_extension_free(session, extension, other_than=user.id)
            if pbx is not None:
                check_pbx_name(pbx)
            await people.update_user(
                session,
                user,
                sip_extension=extension,
                pbx=pbx,
                is_active=active if user.id != actor.id else user.is_active,
            )
            current = {
                member.team_id
                for member in await session.scalars(
                    select(TeamMember).where(TeamMember.user_id == user.id)
                )
            }
            wanted = {(await get_or_create_team(session, name)).id for name in teams}
            await people.add_memberships(session, user.id, wanted - current)
            await people.remove_memberships(session, user.id, current - wanted)
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
