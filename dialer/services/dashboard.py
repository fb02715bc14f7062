"""Campaign numbers for the organizers' dashboard.

The totals come from the campaign's counters (dialer.store.counters), which
the database keeps in the transaction of every call, outcome and list
change; the live calls from a partial index that holds only them; the calls
per hour from the calls of the last hours alone, through the index on
(campaign, requested at).  Nothing reads all the calls of a campaign.

Why counters rather than aggregate queries, measured on PostgreSQL with 2 M
contacts, 50 campaigns of 40,000 entries, 500 volunteers and 1.5 M calls:
the old view, which read every call of the campaign into Python, took p50
3.8 s / p95 4.6 s on a campaign of 500,000 calls (p50 233 ms / p95 337 ms
on one of 20,000).  The same totals as aggregates over a covering index of
the calls still took about 200 ms for the calls (both cores, freshly
vacuumed) plus 150 ms for the outcomes, and grow with the campaign.  The
counters read a few thousand rows at most whatever its size: the whole view
takes p50 23 ms / p95 33 ms on the 500,000-call campaign (14 / 21 ms on the
20,000-call one).  Kept by triggers rather than by each store writer: a
trigger sees the old and the new row (the store's executemany UPDATEs only
know the new values), and counts what every writer does, a set-based
import merge or a foreign key's cascade included (see
dialer.store.counters).

The calls per hour are bucketed in the viewer's time zone as before: the
database groups the calls of the window by minute, and each minute goes to
the bucket its local time falls in (zone offsets are whole minutes).

The comparison of power mode with click-to-call (:func:`mode_comparison`)
reads only the period's rows: the campaign's power sessions through
(campaign, requested at), their calls through the calls' power-session
index, and the click-to-call calls through (campaign, requested at) again,
whose volunteer time the database sums itself (gaps and islands over a
window function) so that only three numbers come back.  Measured with
EXPLAIN ANALYZE on the 2 M seed with a busy month added to the statewide
campaign (300 sessions, 54,000 power calls, 200,000 click-to-call calls in
30 days), on two loaded cores: 11 ms for 12 hours, 150 to 240 ms for a
week, the click-to-call sort and window taking nearly all of it.  A partial
covering index of the click-to-call calls (campaign, volunteer, requested
at, with the end) saved the sort, halving a month's time, for 50 MB and one
more index written on every call: not worth it while periods stop at a week.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    case,
    cast,
    extract,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from dialer.domain.vocabulary import CallOutcome, DispositionOutcome, PowerSessionState
from dialer.store import counters
from dialer.store.models import CallAttempt, PowerSession, User, UTCDateTime


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


@dataclass(slots=True)
class ModeStats:
    """One way of calling over the period: its calls and the volunteer time they took."""

    calls: int = 0
    seconds: float = 0.0
    volunteers: int = 0

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    @property
    def calls_per_hour(self) -> float | None:
        # Under a minute of volunteer time makes a rate of noise, not a number.
        return self.calls / self.hours if self.seconds >= 60 else None


@dataclass(slots=True)
class ModeComparison:
    """Power mode against click-to-call, for one campaign over ``since``..``until``."""

    since: datetime
    until: datetime
    power: ModeStats = field(default_factory=ModeStats)
    click: ModeStats = field(default_factory=ModeStats)
    sessions: int = 0
    # The period's sessions whole: what they waited, and the calls they made.
    waited_seconds: float = 0.0
    session_calls: int = 0

    @property
    def average_wait(self) -> float | None:
        return self.waited_seconds / self.session_calls if self.session_calls else None


# Click-to-call: a volunteer's calls closer than this to the one before are
# one stretch of work; a longer gap is a break, not volunteer time.
CLICK_GAP = timedelta(minutes=15)
# The periods the comparison can cover, in hours: the chart's, a day, a week.
# Not a month: summing click-to-call time sorts every call of the period,
# and a month of a busy campaign (200,000 calls) took 0.5 to 1 s on two
# cores where a week takes 0.15 s and the 12 hours 11 ms.
COMPARISON_HOURS = (12, 24, 24 * 7)

Vocabulary = TypeVar("Vocabulary", CallOutcome, DispositionOutcome)

# Wider than any daylight-saving shift: the wall-clock buckets' calls are all inside.
_WINDOW_MARGIN = timedelta(hours=3)
_MINUTE = 60


@dataclass(slots=True)
class _Tally:
    dials: int = 0
    reached: int = 0
    talk_us: int = 0
    live_talk: float = 0.0
    outcomes: int = 0

    @property
    def talk_seconds(self) -> float:
        return self.talk_us / 1_000_000 + self.live_talk


async def campaign_stats(
    session: AsyncSession,
    campaign_id: int,
    *,
    now: datetime,
    zone: tzinfo,
    hours: int = 12,
) -> CampaignStats:
    stats = CampaignStats()
    counts = await counters.read(session, campaign_id)
    tallies: dict[int, _Tally] = {}
    for (volunteer_id, name), amount in counts.amounts.items():
        tally = tallies.setdefault(volunteer_id, _Tally())
        if name == counters.DIALS:
            tally.dials += amount
        elif name == counters.REACHED:
            tally.reached += amount
        elif name == counters.TALK_US:
            tally.talk_us += amount
        elif name.startswith(counters.CALL_OUTCOME):
            call_outcome = _known(CallOutcome, name.removeprefix(counters.CALL_OUTCOME))
            if call_outcome is not None:
                stats.call_outcomes[call_outcome] = (
                    stats.call_outcomes.get(call_outcome, 0) + amount
                )
        elif name.startswith(counters.OUTCOME):
            outcome = _known(DispositionOutcome, name.removeprefix(counters.OUTCOME))
            if outcome is not None:
                stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + amount
                tally.outcomes += amount
        elif name == counters.MOBILIZED:
            stats.mobilized += amount
        elif name == counters.LIST_TOTAL:
            stats.list_total = amount
        elif name == counters.LIST_DONE:
            stats.list_done = amount
        elif name == counters.CALLBACKS_PENDING:
            stats.callbacks_pending = amount
    for volunteer_id, answered_at in counts.live_calls:
        if answered_at is not None:
            talk = max(0.0, (now - answered_at).total_seconds())
            tallies.setdefault(volunteer_id, _Tally()).live_talk += talk
    # The campaign's totals: its volunteers', and nobody's (volunteer 0).
    stats.live_calls = len(counts.live_calls)
    stats.dials = sum(tally.dials for tally in tallies.values())
    stats.reached = sum(tally.reached for tally in tallies.values())
    stats.talk_seconds = sum(tally.talk_seconds for tally in tallies.values())
    # Those with a call or an outcome in the campaign, as when every row was read.
    shown = {
        volunteer_id: tally
        for volunteer_id, tally in tallies.items()
        if volunteer_id != counters.NOBODY and (tally.dials or tally.outcomes)
    }
    names = await _names(session, shown)
    stats.volunteers = sorted(
        (
            VolunteerStats(
                volunteer_id,
                names.get(volunteer_id, "?"),
                dials=tally.dials,
                reached=tally.reached,
                talk_seconds=tally.talk_seconds,
                outcomes=tally.outcomes,
            )
            for volunteer_id, tally in shown.items()
        ),
        key=lambda item: (-item.dials, item.name),
    )
    stats.hours = await _hours(session, campaign_id, now=now, zone=zone, hours=hours)
    return stats


def _known(kind: type[Vocabulary], value: str) -> Vocabulary | None:
    try:
        return kind(value)
    except ValueError:
        # A value no longer in the vocabulary: counted, but nothing to show it under.
        return None


async def _names(session: AsyncSession, user_ids: Iterable[int]) -> dict[int, str]:
    wanted = list(user_ids)
    if not wanted:
        return {}
    rows = await session.execute(
        select(User.id, User.display_name, User.username).where(User.id.in_(wanted))
    )
    return {user_id: display or username for user_id, display, username in rows}


async def _hours(
    session: AsyncSession, campaign_id: int, *, now: datetime, zone: tzinfo, hours: int
) -> list[HourBucket]:
    local_now = now.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    first_hour = local_now - timedelta(hours=hours - 1)
    buckets = [HourBucket(first_hour + timedelta(hours=offset)) for offset in range(hours)]
    since = first_hour.astimezone(UTC) - _WINDOW_MARGIN
    until = first_hour.astimezone(UTC) + timedelta(hours=hours) + _WINDOW_MARGIN
    minute = _minute_of(session, CallAttempt.requested_at).label("minute")
    rows = await session.execute(
        select(
            minute,
            func.count(),
            func.sum(case((CallAttempt.contact_answered_at.is_not(None), 1), else_=0)),
        )
        .where(
            CallAttempt.campaign_id == campaign_id,
            CallAttempt.requested_at >= since,
            CallAttempt.requested_at < until,
        )
        .group_by(minute)
    )
    for minute_number, dials, reached in rows:
        # Same arithmetic as on each call: both sides carry ``zone``, so the
        # difference is in wall-clock hours.
        local = datetime.fromtimestamp(int(minute_number) * _MINUTE, UTC).astimezone(zone)
        index = int((local - first_hour).total_seconds() // 3600)
        if 0 <= index < hours:
            buckets[index].dials += int(dials)
            buckets[index].reached += int(reached or 0)
    return buckets


def _minute_of(
    session: AsyncSession, moment: ColumnElement[datetime] | InstrumentedAttribute[datetime]
) -> ColumnElement[int]:
    """Minutes since the epoch of a stored UTC time, on PostgreSQL or SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(extract("epoch", moment) / _MINUTE), BigInteger)
    return cast(func.strftime("%s", moment), Integer) // _MINUTE


def _seconds_of(
    session: AsyncSession, moment: ColumnElement[datetime] | InstrumentedAttribute[datetime]
) -> ColumnElement[float]:
    """Seconds since the epoch of a stored UTC time, fractions kept, on PostgreSQL or SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(extract("epoch", moment), Float)
    # julianday keeps the fraction that strftime('%s') drops.
    return (func.julianday(moment) - 2440587.5) * 86400.0


async def mode_comparison(
    session: AsyncSession, campaign_id: int, *, now: datetime, hours: int = 12
) -> ModeComparison:
    """Calls per volunteer-hour in power sessions and by click-to-call, over the last ``hours``.

    Power mode: the calls of the campaign's sessions made in the period,
    over the sessions' time in the period, each session from its
    volunteer's phone answering to its end (or now).  Its average wait
    between calls is over the sessions that overlap the period, whole (the
    stored wait is a sum): their waits, the one going on included, over
    their calls.

    Click-to-call: the period's calls without a session, over each
    volunteer's stretches of work: from the request of a stretch's first
    call to the end of its last (or now), a stretch ending where the
    volunteer went more than :data:`CLICK_GAP` without a call.
    """
    since = now - timedelta(hours=hours)
    comparison = ModeComparison(since=since, until=now)
    await _power_side(session, campaign_id, comparison)
    await _click_side(session, campaign_id, comparison)
    return comparison


async def _power_side(session: AsyncSession, campaign_id: int, into: ModeComparison) -> None:
    since, now = into.since, into.until
    rows = (
        await session.execute(
            select(
                PowerSession.id,
                PowerSession.volunteer_id,
                PowerSession.leg_answered_at,
                PowerSession.ended_at,
                PowerSession.state,
                PowerSession.state_since,
                PowerSession.calls,
                PowerSession.waited_seconds,
            ).where(
                PowerSession.campaign_id == campaign_id,
                PowerSession.requested_at < now,
                PowerSession.leg_answered_at.is_not(None),
                or_(PowerSession.ended_at.is_(None), PowerSession.ended_at > since),
            )
        )
    ).all()
    volunteers: set[int] = set()
    for _id, volunteer_id, answered_at, ended_at, state, state_since, calls, waited in rows:
        if answered_at is None:
            continue  # never: the query asks for answered sessions only
        start, end = max(answered_at, since), min(ended_at or now, now)
        if end <= start:
            continue
        into.power.seconds += (end - start).total_seconds()
        volunteers.add(volunteer_id)
        into.sessions += 1
        into.session_calls += calls
        into.waited_seconds += waited
        if ended_at is None and state is PowerSessionState.WAITING:
            into.waited_seconds += max(0.0, (now - state_since).total_seconds())
    into.power.volunteers = len(volunteers)
    counted = [row[0] for row in rows]
    if counted:
        into.power.calls = (
            await session.scalar(
                select(func.count()).where(
                    CallAttempt.power_session_id.in_(counted),
                    CallAttempt.requested_at >= since,
                    CallAttempt.requested_at < now,
                )
            )
        ) or 0


async def _click_side(session: AsyncSession, campaign_id: int, into: ModeComparison) -> None:
    now = literal(into.until, UTCDateTime())
    calls = (
        select(
            CallAttempt.volunteer_id.label("volunteer"),
            CallAttempt.id.label("id"),
            _seconds_of(session, CallAttempt.requested_at).label("start"),
            _seconds_of(session, func.coalesce(CallAttempt.ended_at, now)).label("end"),
        )
        .where(
            CallAttempt.campaign_id == campaign_id,
            CallAttempt.requested_at >= into.since,
            CallAttempt.requested_at < into.until,
            CallAttempt.power_session_id.is_(None),
        )
        .subquery()
    )
    # The latest end among the volunteer's earlier calls: a call that starts
    # more than the gap after it starts a new stretch.
    earlier_end = func.max(calls.c.end).over(
        partition_by=calls.c.volunteer,
        order_by=(calls.c.start, calls.c.id),
        rows=(None, -1),
    )
    flagged = select(
        calls.c.volunteer,
        calls.c.id,
        calls.c.start,
        calls.c.end,
        case(
            (earlier_end.is_(None), 1),
            (calls.c.start - earlier_end > CLICK_GAP.total_seconds(), 1),
            else_=0,
        ).label("opens"),
    ).subquery()
    numbered = select(
        flagged.c.volunteer,
        flagged.c.start,
        flagged.c.end,
        func.sum(flagged.c.opens)
        .over(
            partition_by=flagged.c.volunteer,
            order_by=(flagged.c.start, flagged.c.id),
            rows=(None, 0),
        )
        .label("stretch"),
    ).subquery()
    stretches = (
        select(
            numbered.c.volunteer,
            func.count().label("calls"),
            (func.max(numbered.c.end) - func.min(numbered.c.start)).label("seconds"),
        )
        .group_by(numbered.c.volunteer, numbered.c.stretch)
        .subquery()
    )
    calls_made, seconds, volunteers = (
        await session.execute(
            select(
                func.coalesce(func.sum(stretches.c.calls), 0),
                func.coalesce(func.sum(stretches.c.seconds), 0.0),
                func.count(func.distinct(stretches.c.volunteer)),
            )
        )
    ).one()
    into.click = ModeStats(
        calls=int(calls_made), seconds=max(0.0, float(seconds)), volunteers=int(volunteers)
    )


class DashboardService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def campaign_stats(
        self, campaign_id: int, *, now: datetime, zone: tzinfo
    ) -> CampaignStats:
        async with self._sessions() as session:
            return await campaign_stats(session, campaign_id, now=now, zone=zone)

    async def mode_comparison(
        self, campaign_id: int, *, now: datetime, hours: int = 12
    ) -> ModeComparison:
        async with self._sessions() as session:
            return await mode_comparison(session, campaign_id, now=now, hours=hours)
