"""Calling hours when several rule sets may apply to one call.

A manual call (outside any campaign) may be made under the hours of any of
the caller's teams, and a call asked for without a campaign goes under the
first of the contact's campaigns whose rules allow it: in both cases the
call may start when *any* of the candidate hours allows it, and it next
opens at the earliest of their openings.  Pure, like
:mod:`dialer.domain.compliance`: callers pass ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dialer.domain.compliance import (
    Refusal,
    check_calling_hours,
    next_opening,
    window_for,
    within_hours,
)
from dialer.domain.survey import CallingHours


def check_any_hours(
    options: Sequence[CallingHours], zones: tuple[ZoneInfo, ...], now: datetime
) -> Refusal | None:
    """None when one of ``options`` allows a call now; else the refusal of the
    option that opens first (its ``retry_at`` is the earliest opening)."""
    refusals = [check_calling_hours(hours, zones, now) for hours in options]
    if not refusals or any(refusal is None for refusal in refusals):
        return None
    found = [refusal for refusal in refusals if refusal is not None]
    opening = [refusal for refusal in found if refusal.retry_at is not None]
    if opening:
        return min(opening, key=lambda refusal: refusal.retry_at or now)
    return found[0]


def _closing(hours: CallingHours, zones: tuple[ZoneInfo, ...], now: datetime) -> datetime:
    """When calling under ``hours``, open at ``now``, closes: the earliest
    end of today's window among the contact's zones."""
    ends: list[datetime] = []
    for zone in zones:
        local = now.astimezone(zone)
        window = window_for(hours, local)
        assert window is not None  # open now, so today has a window
        ends.append(datetime.combine(local.date(), window.end, zone))
    return min(ends)


@dataclass(frozen=True, slots=True)
class HoursStatus:
    """Whether a call may start now, for the note on the call screen.

    Times are aware datetimes in the contact's (first) zone.
    """

    local_now: datetime
    is_open: bool
    # While open: when the last of the open windows closes.
    closes_at: datetime | None
    # While closed: the first moment a call may start (None: not within a week).
    opens_at: datetime | None

    @property
    def wait(self) -> timedelta | None:
        if self.opens_at is None:
            return None
        return self.opens_at - self.local_now


def hours_status(
    options: Sequence[CallingHours], zones: tuple[ZoneInfo, ...], now: datetime
) -> HoursStatus:
    zone = zones[0]
    local_now = now.astimezone(zone)
    open_now = [hours for hours in options if within_hours(hours, zones, now)]
    if open_now:
        closes = max(_closing(hours, zones, now) for hours in open_now)
        return HoursStatus(local_now, True, closes.astimezone(zone), None)
    openings = [
        opening
        for opening in (next_opening(hours, zones, now) for hours in options)
        if opening is not None
    ]
    opens_at = min(openings).astimezone(zone) if openings else None
    return HoursStatus(local_now, False, None, opens_at)
