"""Dialing policy and calling hours in the contact's own time zone, clock injected."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from dialer.domain.compliance import (
    DialingPolicy,
    RefusalCode,
    check_attempts,
    check_calling_hours,
    contact_zones,
    next_opening,
    within_hours,
)
from dialer.domain.survey import CallingHours, TimeWindow

MONTREAL = "+15145550184"
VANCOUVER = "+16045550111"
PARIS = "+33142685300"
HOURS = CallingHours()  # 09:00-21:00 on weekdays, 10:00-18:00 at weekends


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (MONTREAL, None),
        (VANCOUVER, None),
        ("+18095550100", RefusalCode.NUMBER_NOT_ALLOWED),  # +1 but the Dominican Republic
        (PARIS, RefusalCode.NUMBER_NOT_ALLOWED),
        ("+19005550100", RefusalCode.NUMBER_NOT_ALLOWED),
        ("5145550184", RefusalCode.INVALID_NUMBER),
        ("+1514555018", RefusalCode.INVALID_NUMBER),
        ("+1 514 555 0184", RefusalCode.INVALID_NUMBER),  # not in canonical form
    ],
)
def test_default_policy_allows_only_the_home_region(number: str, code: RefusalCode | None) -> None:
    policy = DialingPolicy.parse(["CA"], ["+1900", "+1976"])
    refusal = policy.check(number)
    assert (refusal.code if refusal else None) == code


def test_calling_codes_and_premium_numbers() -> None:
    policy = DialingPolicy.parse(["CA", "+33"], [])
    assert policy.check(PARIS) is None
    refusal = policy.check("+33899123456")  # French premium rate
    assert refusal is not None and refusal.code is RefusalCode.NUMBER_NOT_ALLOWED
    assert "premium-rate" in refusal.message


def test_policy_parse_errors() -> None:
    with pytest.raises(ValueError, match="unknown region 'XX'"):
        DialingPolicy.parse(["XX"], [])
    with pytest.raises(ValueError, match="invalid blocked prefix '1900'"):
        DialingPolicy.parse(["CA"], ["1900"])


def test_zones_come_from_the_number_unless_the_contact_says_otherwise() -> None:
    assert [z.key for z in contact_zones(VANCOUVER, None, "UTC")] == ["America/Vancouver"]
    assert [z.key for z in contact_zones(MONTREAL, None, "UTC")] == ["America/Toronto"]
    assert [z.key for z in contact_zones(PARIS, None, "UTC")] == ["Europe/Paris"]
    assert [z.key for z in contact_zones(MONTREAL, "Europe/Paris", "UTC")] == ["Europe/Paris"]
    # A broken explicit zone falls back to the number rather than failing.
    assert [z.key for z in contact_zones(MONTREAL, "Mars/Base", "UTC")] == ["America/Toronto"]


def test_the_same_instant_is_allowed_in_one_zone_and_not_another() -> None:
    # Tuesday 2026-11-24 17:30 UTC = 12:30 Montreal, 09:30 Vancouver, 18:30 Paris.
    now = utc(2026, 11, 24, 17, 30)
    for number in (MONTREAL, VANCOUVER, PARIS):
        assert within_hours(HOURS, contact_zones(number, None, "UTC"), now)
    # 16:30 UTC = 08:30 in Vancouver: too early there, fine in Montreal.
    early = utc(2026, 11, 24, 16, 30)
    assert within_hours(HOURS, contact_zones(MONTREAL, None, "UTC"), early)
    refusal = check_calling_hours(HOURS, contact_zones(VANCOUVER, None, "UTC"), early)
    assert refusal is not None and refusal.code is RefusalCode.OUTSIDE_CALLING_HOURS
    assert refusal.retry_at == utc(2026, 11, 24, 17, 0)
    assert "Tue 08:30" in refusal.message and "Tue 09:00 their time" in refusal.message
    # 20:30 UTC = 21:30 in Paris: too late there.
    late = utc(2026, 11, 24, 20, 30)
    assert not within_hours(HOURS, contact_zones(PARIS, None, "UTC"), late)
    assert within_hours(HOURS, contact_zones(VANCOUVER, None, "UTC"), late)


def test_weekend_hours() -> None:
    # Saturday 2026-11-28 15:30 UTC = 10:30 Montreal (weekend window opens at 10).
    saturday = utc(2026, 11, 28, 15, 30)
    zones = contact_zones(MONTREAL, None, "UTC")
    assert within_hours(HOURS, zones, saturday)
    # 19:30 Montreal on Saturday: inside weekday hours but after the weekend close.
    assert not within_hours(HOURS, zones, utc(2026, 11, 29, 0, 30))
    no_weekends = CallingHours(weekend=None)
    refusal = check_calling_hours(no_weekends, zones, saturday)
    assert refusal is not None
    assert refusal.retry_at == utc(2026, 11, 30, 14, 0)  # Monday 09:00 in Montreal


def test_custom_campaign_window_and_dst() -> None:
    hours = CallingHours(weekday=TimeWindow(start=time(18), end=time(20)))
    zones = (ZoneInfo("America/Toronto"),)
    # The day after the autumn change (2026-11-02) 18:00 local is 23:00 UTC.
    assert next_opening(hours, zones, utc(2026, 11, 2, 12, 0)) == utc(2026, 11, 2, 23, 0)
    # Before the change (EDT) 18:00 local is 22:00 UTC.
    assert next_opening(hours, zones, utc(2026, 10, 30, 12, 0)) == utc(2026, 10, 30, 22, 0)


def test_a_contact_in_two_zones_needs_both_open() -> None:
    zones = (ZoneInfo("America/Toronto"), ZoneInfo("America/Vancouver"))
    assert not within_hours(HOURS, zones, utc(2026, 11, 24, 16, 30))
    assert next_opening(HOURS, zones, utc(2026, 11, 24, 16, 30)) == utc(2026, 11, 24, 17, 0)


def test_attempt_limits() -> None:
    now = utc(2026, 11, 24, 17, 0)
    delay = timedelta(hours=4)
    assert check_attempts(0, 3, None, delay, now) is None
    refusal = check_attempts(3, 3, now - timedelta(days=1), delay, now)
    assert refusal is not None and refusal.code is RefusalCode.MAX_ATTEMPTS
    refusal = check_attempts(1, 3, now - timedelta(hours=1), delay, now)
    assert refusal is not None and refusal.code is RefusalCode.RETRY_TOO_SOON
    assert refusal.retry_at == now + timedelta(hours=3)
    assert check_attempts(1, 3, now - timedelta(hours=5), delay, now) is None
    # A call-back the contact asked for is due whatever the counters say.
    assert check_attempts(3, 3, now - timedelta(minutes=5), delay, now, callback_due=True) is None
