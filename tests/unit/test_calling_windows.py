"""Several calling hours for one call: any open is enough, the earliest opening wins."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from dialer.domain.calling_windows import check_any_hours, hours_status
from dialer.domain.compliance import RefusalCode
from dialer.domain.survey import CallingHours, TimeWindow

TORONTO = (ZoneInfo("America/Toronto"),)
# Wednesday 2026-12-02, 20:30 in Toronto (UTC-5).
EVENING = datetime(2026, 12, 3, 1, 30, tzinfo=UTC)


def every_day(start: int, end: int) -> CallingHours:
    window = TimeWindow(start=time(start), end=time(end))
    return CallingHours(weekday=window, weekend=window)


def test_any_open_window_allows_the_call() -> None:
    assert check_any_hours([every_day(9, 20), every_day(9, 21)], TORONTO, EVENING) is None
    refusal = check_any_hours([every_day(10, 20), every_day(8, 19)], TORONTO, EVENING)
    assert refusal is not None and refusal.code is RefusalCode.OUTSIDE_CALLING_HOURS
    # The earliest opening of the two: 8:00 the next morning.
    assert refusal.retry_at == datetime(2026, 12, 3, 13, 0, tzinfo=UTC)


def test_the_status_says_until_when_or_from_when() -> None:
    status = hours_status([every_day(9, 20), every_day(9, 21)], TORONTO, EVENING)
    assert status.is_open and status.closes_at is not None
    assert status.closes_at.time() == time(21) and status.local_now.time() == time(20, 30)
    status = hours_status([every_day(9, 20)], TORONTO, EVENING)
    assert not status.is_open and status.opens_at is not None
    assert status.opens_at.time() == time(9) and status.opens_at.day == 3
    assert status.wait is not None and status.wait.total_seconds() == 12.5 * 3600
