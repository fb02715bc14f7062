"""Campaign numbers for the organizers' dashboard.

Counted in SQL where it is cheap and portable (PostgreSQL and SQLite),
bucketed by hour in Python so the buckets follow the viewer's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.vocabulary import CallOutcome, DispositionOutcome
from dialer.store.models import CallAttempt, CallingListEntry, Disposition, User


@dataclass(slots=True)
class VolunteerStats:
    user_id: int
    name: str
    dials: int = 0
    reached: int = 0
    talk_seconds: float = 0.0
    outcomes: int = 0


@dataclass(slots=True)
class HourBucket:
    start: datetime
    dials: int = 0
    reached: int = 0


@dataclass(slots=True)
class CampaignStats:
    dials: int = 0
    reached: int = 0
    talk_seconds: float = 0.0
    live_calls: int = 0
    outcomes: dict[DispositionOutcome, int] = field(default_factory=dict)
    call_outcomes: dict[CallOutcome, int] = field(default_factory=dict)
    hours: list[HourBucket] = field(default_factory=list)
    volunteers: list[VolunteerStats] = field(default_factory=list)
    list_total: int = 0
    list_done: int = 0
    callbacks_pending: int = 0
    mobilized: int = 0

    @property
    def contact_rate(self) -> float | None:
        return self.reached / self.dials if self.dials else None

    @property
    def list_progress(self) -> float | None:
        return self.list_done / self.list_total if self.list_total else None

    @property
    def busiest_hour(self) -> int:
        return max((bucket.dials for bucket in self.hours), default=0)


async def campaign_stats(
    session: AsyncSession,
    campaign_id: int,
    *,
    now: datetime,
    zone: tzinfo,
    hours: int = 12,
) -> CampaignStats:
    stats = CampaignStats()
    calls = await session.execute(
        select(
            CallAttempt.volunteer_id,
            CallAttempt.requested_at,
            CallAttempt.contact_answered_at,
            CallAttempt.ended_at,
            CallAttempt.outcome,
            CallAttempt.ended_at.is_(None),
        ).where(CallAttempt.campaign_id == campaign_id)
    )
    names = {
        user_id: display or username
        for user_id, display, username in (
            await session.execute(select(User.id, User.display_name, User.username))
        )
    }
    per_volunteer: dict[int, VolunteerStats] = {}
    local_now = now.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    first_hour = local_now - timedelta(hours=hours - 1)
    buckets = [HourBucket(first_hour + timedelta(hours=offset)) for offset in range(hours)]
    for volunteer_id, requested_at, answered_at, ended_at, outcome, live in calls:
        stats.dials += 1
        volunteer = per_volunteer.setdefault(
            volunteer_id, VolunteerStats(volunteer_id, names.get(volunteer_id, "?"))
        )
        volunteer.dials += 1
        if live:
            stats.live_calls += 1
        if outcome is not None:
            stats.call_outcomes[outcome] = stats.call_outcomes.get(outcome, 0) + 1
        if answered_at is not None:
            stats.reached += 1
            volunteer.reached += 1
            talk = ((ended_at or now) - answered_at).total_seconds()
            stats.talk_seconds += max(0.0, talk)
            volunteer.talk_seconds += max(0.0, talk)
        local = requested_at.astimezone(zone)
        index = int((local - first_hour).total_seconds() // 3600)
        if 0 <= index < hours:
            buckets[index].dials += 1
            if answered_at is not None:
                buckets[index].reached += 1
    stats.hours = buckets
    for outcome, volunteer_id, count, mobilized in await session.execute(
        select(
            Disposition.outcome,
            Disposition.volunteer_id,
            func.count(),
            func.sum(case((Disposition.mobilized.is_(True), 1), else_=0)),
        )
        .where(Disposition.campaign_id == campaign_id)
        .group_by(Disposition.outcome, Disposition.volunteer_id)
    ):
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + count
        stats.mobilized += int(mobilized or 0)
        if volunteer_id is not None:
            volunteer = per_volunteer.setdefault(
                volunteer_id, VolunteerStats(volunteer_id, names.get(volunteer_id, "?"))
            )
            volunteer.outcomes += count
    stats.volunteers = sorted(per_volunteer.values(), key=lambda item: (-item.dials, item.name))
    total, done, callbacks = (
        await session.execute(
            select(
                func.count(),
                func.sum(case((CallingListEntry.done.is_(True), 1), else_=0)),
                func.sum(
                    case(
                        (
                            (CallingListEntry.callback_at.is_not(None))
                            & CallingListEntry.done.is_(False),
                            1,
                        ),
                        else_=0,
                    )
                ),
            ).where(CallingListEntry.campaign_id == campaign_id)
        )
    ).one()
    stats.list_total, stats.list_done = int(total or 0), int(done or 0)
    stats.callbacks_pending = int(callbacks or 0)
    return stats


class DashboardService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def campaign_stats(
        self, campaign_id: int, *, now: datetime, zone: tzinfo
    ) -> CampaignStats:
        async with self._sessions() as session:
            return await campaign_stats(session, campaign_id, now=now, zone=zone)
