"""In-app notifications: what makes them, who sees which, and sending them out.

A notification is added inside the transaction of what caused it (a
campaign made active, contacts assigned, a task handed over) or by the
periodic call-back scan, always through a unique key per user, so a
repeated trigger adds nothing.  Team walls are checked when one is made
(only someone who may see the campaign or contact gets it) and again when
one is shown (someone who left the team no longer sees it).

Sending out (MQTT, email) is :class:`NotificationDispatcher`'s job, in a
background task of every web process: it claims the new rows with one
conditional UPDATE, so with several web processes each notification goes
out once, and a slow or failing SMTP server never touches a user's request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from dialer.domain import i18n
from dialer.domain.i18n import _, ngettext
from dialer.domain.notifications import NotificationKind, dedup_key
from dialer.domain.vocabulary import CampaignStatus, Role
from dialer.live.mailer import Mailer, MailFailed
from dialer.live.mqtt import NotificationPublisher
from dialer.store import notifications as rows
from dialer.store.models import (
    CallingListEntry,
    Campaign,
    Contact,
    FollowUpTask,
    Notification,
    NotificationPreference,
    TeamMember,
    User,
    utcnow,
)
from dialer.store.notifications import NewNotification

log = logging.getLogger(__name__)

# A call-back older than this when first seen (a process down for a long
# weekend, or the feature just deployed) is not announced any more.
CALLBACK_HORIZON = timedelta(days=7)


# -- who may get one -----------------------------------------------------------------


def _member_of_campaign_team(user_id: Any, campaign_id: Any) -> ColumnElement[bool]:
    """SQL: the user (a column or an id) is on the team of the campaign (a column or an id)."""
    return exists().where(
        Campaign.id == campaign_id,
        TeamMember.team_id == Campaign.team_id,
        TeamMember.user_id == user_id,
    )


def _visible(user: User) -> ColumnElement[bool]:
    """SQL on :class:`Notification`: the ones ``user`` may see now.

    A campaign's notification shows only while the reader is on its team
    (an administrator sees across teams); one about a task outside any
    campaign is the assignee's own.
    """
    if user.role is Role.ADMIN:
        return Notification.user_id == user.id
    return and_(
        Notification.user_id == user.id,
        or_(
            Notification.campaign_id.is_(None),
            _member_of_campaign_team(Notification.user_id, Notification.campaign_id),
        ),
    )


# -- the triggers, inside the caller's transaction ------------------------------------


async def campaign_activated(
    session: AsyncSession, campaign: Campaign, *, actor_id: int | None, at: datetime
) -> list[int]:
    """Tell every active volunteer of the campaign's team (but whoever did it)."""
    if campaign.status is not CampaignStatus.ACTIVE or campaign.team_id is None:
        return []
    volunteers = await session.scalars(
        select(User.id)
        .join(TeamMember, TeamMember.user_id == User.id)
        .where(
            TeamMember.team_id == campaign.team_id,
            User.role == Role.VOLUNTEER,
            User.is_active.is_(True),
        )
    )
    return await rows.add(
        session,
        [
            NewNotification(
                user_id=user_id,
                kind=NotificationKind.NEW_CAMPAIGN,
                dedup_key=dedup_key(NotificationKind.NEW_CAMPAIGN, campaign.id),
                campaign_id=campaign.id,
            )
            for user_id in volunteers
            if user_id != actor_id
        ],
        at=at,
    )


async def contacts_assigned(
    session: AsyncSession, campaign_id: int, counts: Mapping[int | None, int], *, at: datetime
) -> list[int]:
    """One notification per volunteer for one assignment batch (made at ``at``).

    Only volunteers on the campaign's team get one; a retried request finds
    nothing left to assign, and the batch's time is part of the key.
    """
    wanted = {user_id: count for user_id, count in counts.items() if user_id and count > 0}
    if not wanted:
        return []
    members = set(
        await session.scalars(
            select(User.id).where(
                User.id.in_(wanted),
                User.is_active.is_(True),
                _member_of_campaign_team(User.id, campaign_id),
            )
        )
    )
    return await rows.add(
        session,
        [
            NewNotification(
                user_id=user_id,
                kind=NotificationKind.ASSIGNMENT,
                dedup_key=dedup_key(NotificationKind.ASSIGNMENT, campaign_id, at.isoformat()),
                campaign_id=campaign_id,
                params={"count": count},
            )
            for user_id, count in sorted(wanted.items())
            if user_id in members
        ],
        at=at,
    )


async def tasks_handed_over(
    session: AsyncSession, disposition_id: int, *, at: datetime
) -> list[int]:
    """Tell the assignees of the tasks an outcome just made (not their own).

    Whether the assignee may see the contact was checked when the task was
    accepted (``may_hand_task_to``).
    """
    tasks = await session.scalars(
        select(FollowUpTask).where(FollowUpTask.disposition_id == disposition_id)
    )
    return await rows.add(
        session,
        [
            NewNotification(
                user_id=task.assignee_id,
                kind=NotificationKind.TASK,
                dedup_key=dedup_key(NotificationKind.TASK, task.id),
                campaign_id=task.campaign_id,
                contact_id=task.contact_id,
                task_id=task.id,
            )
            for task in tasks
            if task.assignee_id is not None and task.assignee_id != task.created_by_id
        ],
        at=at,
    )


async def callbacks_came_due(session: AsyncSession, now: datetime) -> list[int]:
    """Tell each volunteer of the call-backs on their list that came due.

    The entry's volunteer is the one who set the call-back (an outcome with
    a call-back puts the contact back on its author's list), or whom it was
    assigned to since.  Only while they are on the campaign's team, for an
    active campaign; one per call-back time (a new time is a new one).
    """
    earlier = aliased(Notification)
    found = await session.execute(
        select(CallingListEntry)
        .join(Campaign, Campaign.id == CallingListEntry.campaign_id)
        .join(User, User.id == CallingListEntry.volunteer_id)
        .where(
            CallingListEntry.callback_at <= now,
            CallingListEntry.callback_at > now - CALLBACK_HORIZON,
            CallingListEntry.done.is_(False),
            Campaign.status == CampaignStatus.ACTIVE,
            User.is_active.is_(True),
            or_(
                User.role == Role.ADMIN,
                _member_of_campaign_team(User.id, Campaign.id),
            ),
            # Already told since it came due: skip it here rather than
            # leaving every scan to the unique key.
            ~exists().where(
                earlier.user_id == CallingListEntry.volunteer_id,
                earlier.kind == NotificationKind.CALLBACK_DUE,
                earlier.campaign_id == CallingListEntry.campaign_id,
                earlier.contact_id == CallingListEntry.contact_id,
                earlier.created_at >= CallingListEntry.callback_at,
            ),
        )
        .order_by(CallingListEntry.callback_at)
        .limit(500)
    )
    entries = list(found.scalars())
    return await rows.add(
        session,
        [
            NewNotification(
                user_id=entry.volunteer_id,
                kind=NotificationKind.CALLBACK_DUE,
                dedup_key=dedup_key(
                    NotificationKind.CALLBACK_DUE, entry.id, entry.callback_at.isoformat()
                ),
                campaign_id=entry.campaign_id,
                contact_id=entry.contact_id,
            )
            for entry in entries
            if entry.volunteer_id is not None and entry.callback_at is not None
        ],
        at=now,
    )


# -- how one reads ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotificationView:
    id: int
    kind: NotificationKind
    text: str
    link: str
    created_at: datetime
    read: bool


def link_for(notification: Notification) -> str:
    if notification.kind is NotificationKind.TASK:
        return f"/tasks#task-{notification.task_id}"
    if notification.kind is NotificationKind.CALLBACK_DUE:
        return f"/contacts/{notification.contact_id}?campaign={notification.campaign_id}"
    return f"/campaigns/{notification.campaign_id}"


def describe(
    notification: Notification,
    *,
    campaign_title: str | None,
    contact_name: str | None,
    task_description: str | None,
) -> str:
    """The sentence, in the current language; with no contact name for an email."""
    title = campaign_title or ""
    kind = notification.kind
    if kind is NotificationKind.NEW_CAMPAIGN:
        return _("New calling action: %(title)s", title=title)
    if kind is NotificationKind.ASSIGNMENT:
        count = int(notification.params.get("count", 0))
        return ngettext(
            "%(num)d contact assigned to you in %(title)s",
            "%(num)d contacts assigned to you in %(title)s",
            count,
            title=title,
        )
    if kind is NotificationKind.TASK:
        if contact_name is None:
            return _("You have a new follow-up task.")
        return _(
            "New task about %(name)s: %(description)s",
            name=contact_name or _("(no name)"),
            description=task_description or "",
        )
    if contact_name is None:
        return _("A call-back is due in %(title)s.", title=title)
    return _(
        "Call-back due: %(name)s (%(title)s)", name=contact_name or _("(no name)"), title=title
    )


async def _views(session: AsyncSession, user: User, limit: int) -> list[NotificationView]:
    found = await session.execute(
        select(Notification, Campaign.title, Contact, FollowUpTask.description)
        .outerjoin(Campaign, Campaign.id == Notification.campaign_id)
        .outerjoin(Contact, Contact.id == Notification.contact_id)
        .outerjoin(FollowUpTask, FollowUpTask.id == Notification.task_id)
        .where(_visible(user))
        .order_by(Notification.id.desc())
        .limit(limit)
    )
    return [
        NotificationView(
            id=notification.id,
            kind=notification.kind,
            text=describe(
                notification,
                campaign_title=title,
                contact_name=contact.full_name if contact is not None else "",
                task_description=description,
            ),
            link=link_for(notification),
            created_at=notification.created_at,
            read=notification.read_at is not None,
        )
        for notification, title, contact, description in found
    ]


@dataclass(frozen=True, slots=True)
class NotificationsPage:
    items: list[NotificationView]
    unread: int
    # Emails can be sent (SMTP is set up); then whether this user gets them.
    email_available: bool
    has_email_address: bool
    email_on: bool


class NotificationService:
    """The bell, the notifications page and the email preference."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, email_available: bool = False
    ) -> None:
        self._sessions = sessions
        self.email_available = email_available

    async def unread_count(self, user: User) -> int:
        """One COUNT on the partial index of unread rows: every page's bell."""
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count(Notification.id)).where(
                    _visible(user), Notification.read_at.is_(None)
                )
            )
        return int(count or 0)

    async def page(self, user: User, limit: int = 100) -> NotificationsPage:
        async with self._sessions() as session:
            items = await _views(session, user, limit)
            unread = await session.scalar(
                select(func.count(Notification.id)).where(
                    _visible(user), Notification.read_at.is_(None)
                )
            )
            preference = await session.get(NotificationPreference, user.id)
        return NotificationsPage(
            items=items,
            unread=int(unread or 0),
            email_available=self.email_available,
            has_email_address=bool(user.email),
            email_on=preference is None or preference.email,
        )

    async def open(self, user: User, notification_id: int) -> str | None:
        """Mark one read and return where it leads; None when it is not ``user``'s to see."""
        async with self._sessions.begin() as session:
            notification = await session.scalar(
                select(Notification).where(Notification.id == notification_id, _visible(user))
            )
            if notification is None:
                return None
            await rows.mark_read(session, user.id, [notification.id], at=utcnow())
            return link_for(notification)

    async def mark_all_read(self, user: User) -> int:
        async with self._sessions.begin() as session:
            return await rows.mark_read(session, user.id, None, at=utcnow())

    async def set_email(self, user: User, on: bool) -> None:
        async with self._sessions.begin() as session:
            await rows.set_email_preference(session, user.id, on, at=utcnow())


# -- sending out ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Mail:
    notification_id: int
    user_id: int
    to: str
    subject: str
    body: str


class NotificationDispatcher:
    """Runs in every web process: the call-back scan, MQTT and email.

    Safe with several processes: the scan's rows have unique keys, and each
    new row is claimed by one process only (``claim_undispatched``).
    Claiming is "at most once": a process that dies between its claim and
    the broker or the SMTP server loses that message, never the in-app
    notification.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        mqtt: NotificationPublisher | None = None,
        mailer: Mailer | None = None,
        site_url: str = "",
        default_language: str = "en",
        interval: float = 2.0,
        callback_interval: float = 30.0,
        mail_backlog: int = 1000,
    ) -> None:
        self._sessions = sessions
        self.mqtt = mqtt
        self.mailer = mailer
        self.site_url = site_url.rstrip("/")
        self.default_language = default_language
        self.interval = interval
        self.callback_interval = callback_interval
        self._mail: asyncio.Queue[_Mail] = asyncio.Queue(maxsize=mail_backlog)
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def scan_callbacks(self, now: datetime | None = None) -> int:
        async with self._sessions.begin() as session:
            return len(await callbacks_came_due(session, now or utcnow()))

    async def dispatch_once(self, now: datetime | None = None, limit: int = 200) -> int:
        """Claim the new notifications and send them out; returns how many."""
        at = now or utcnow()
        async with self._sessions.begin() as session:
            claimed = await rows.claim_undispatched(session, at=at, limit=limit)
            if not claimed:
                return 0
            found = await session.execute(
                select(Notification, User, Campaign.title, NotificationPreference.email)
                .join(User, User.id == Notification.user_id)
                .outerjoin(Campaign, Campaign.id == Notification.campaign_id)
                .outerjoin(
                    NotificationPreference, NotificationPreference.user_id == Notification.user_id
                )
                .where(Notification.id.in_(claimed))
                .order_by(Notification.id)
            )
            batch = list(found)
        for notification, user, title, wants_email in batch:
            if self.mqtt is not None:
                self.mqtt.publish(user.id, _mqtt_payload(notification))
            if (
                self.mailer is not None
                and user.is_active
                and user.email
                and wants_email is not False
            ):
                self._queue_mail(self._mail_for(notification, user, title))
        return len(batch)

    def _mail_for(self, notification: Notification, user: User, title: str | None) -> _Mail:
        language = i18n.normalise_language(user.language) or self.default_language
        token = i18n.activate_scoped(language)
        try:
            # No contact name or task text: an email leaves the walls of the app.
            text = describe(
                notification, campaign_title=title, contact_name=None, task_description=None
            )
            link = f"{self.site_url}{link_for(notification)}"
            settings_page = f"{self.site_url}/notifications"
            body = "\n\n".join(
                [
                    text,
                    _("Open it: %(link)s", link=link),
                    _(
                        "You can turn these emails off on your notifications page: %(link)s",
                        link=settings_page,
                    ),
                ]
            )
            subject = _("Phone bank: %(text)s", text=text)
        finally:
            i18n.deactivate(token)
        return _Mail(notification.id, user.id, str(user.email), subject[:200], body)

    def _queue_mail(self, mail: _Mail) -> None:
        try:
            self._mail.put_nowait(mail)
        except asyncio.QueueFull:
            log.warning(
                "notification email to user %s dropped: %d emails already waiting",
                mail.user_id,
                self._mail.qsize(),
            )

    async def mail_idle(self) -> None:
        """Wait until every queued email was sent or given up (tests, shutdown)."""
        await self._mail.join()

    async def _send_mail(self) -> None:
        assert self.mailer is not None
        while True:
            mail = await self._mail.get()
            try:
                await self.mailer.send(mail.to, mail.subject, mail.body)
            except MailFailed as failed:
                # Logged without the address or the credentials: the user id
                # and the server's answer are enough to look into it.
                log.warning("notification email to user %s not sent: %s", mail.user_id, failed)
            except Exception:
                log.exception("notification email to user %s not sent", mail.user_id)
            finally:
                self._mail.task_done()

    async def run(self) -> None:
        """Scan and dispatch until cancelled; a database outage is logged and waited out."""
        loop = asyncio.get_running_loop()
        next_scan = loop.time()
        mail_task = asyncio.create_task(self._send_mail()) if self.mailer is not None else None
        try:
            while True:
                try:
                    if loop.time() >= next_scan:
                        next_scan = loop.time() + self.callback_interval
                        await self.scan_callbacks()
                    while await self.dispatch_once() > 0:
                        pass
                except Exception as error:
                    log.warning("notifications: %s; retrying", type(error).__name__)
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._wakeup.wait()
        finally:
            if mail_task is not None:
                mail_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await mail_task


def _mqtt_payload(notification: Notification) -> dict[str, object]:
    """Ids and a link, no names: the subscriber fetches the text from the app,
    where the team walls apply."""
    payload: dict[str, object] = {
        "id": notification.id,
        "kind": notification.kind.value,
        "link": link_for(notification),
        "created_at": notification.created_at.isoformat(),
    }
    for name in ("campaign_id", "contact_id", "task_id"):
        value = getattr(notification, name)
        if value is not None:
            payload[name] = value
    if "count" in notification.params:
        payload["count"] = notification.params["count"]
    return payload
