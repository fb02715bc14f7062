"""Who may be called, when: the pure rules behind every refusal.

No I/O and no clock: callers pass ``now``, so tests pin time and zones.
Each rule returns a :class:`Refusal` (a stable code the UI and API show,
plus a human sentence) or ``None`` when the call may go ahead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberType, phonenumberutil
from phonenumbers import timezone as phone_timezones
from phonenumbers.phonemetadata import PhoneMetadata

from dialer.domain.dial_rules import INTERNATIONAL_RATE_AREA_CODES, REASON_SENTENCES, nanp_refusal
from dialer.domain.numbers import CheckedNumber
from dialer.domain.survey import CallingHours, TimeWindow


class RefusalCode(StrEnum):
    NO_EXTENSION = "no_extension"
    # The volunteer's own number may no longer be dialed (the policy changed).
    OWN_NUMBER_NOT_ALLOWED = "own_number_not_allowed"
    VOLUNTEER_BUSY = "volunteer_busy"
    INVALID_NUMBER = "invalid_number"
    NUMBER_NOT_ALLOWED = "number_not_allowed"
    DO_NOT_CALL = "do_not_call"
    WRONG_NUMBER = "wrong_number"
    OUTSIDE_CALLING_HOURS = "outside_calling_hours"
    MAX_ATTEMPTS = "max_attempts"
    RETRY_TOO_SOON = "retry_too_soon"
    CONTACT_BEING_CALLED = "contact_being_called"
    CAMPAIGN_NOT_ACTIVE = "campaign_not_active"
    NOT_IN_TEAM = "not_in_team"
    CALLER_ID_NOT_ALLOWED = "caller_id_not_allowed"
    NO_CALLER_ID = "no_caller_id"
    NOT_FOUND = "not_found"
    PBX_UNAVAILABLE = "pbx_unavailable"
    # Power mode (dialer.services.power): the volunteer is in a session (a
    # click of their own, or a second session), or the campaign has none.
    IN_POWER_SESSION = "in_power_session"
    NOT_POWER_MODE = "not_power_mode"


class PolicyRule(StrEnum):
    """Which rule of the dialing policy refused a number (for wording it in any language)."""

    BLOCKED_PREFIX = "blocked_prefix"  # subject: the prefix
    PREMIUM_TYPE = "premium_type"  # premium-rate or shared-cost by its number type
    NANP = "nanp"  # subject: the dial_rules.NanpReason
    DESTINATION = "destination"  # subject: the region (or +code) not allowed


@dataclass(frozen=True, slots=True)
class Refusal:
    code: RefusalCode
    message: str
    # When the refusal lifts by itself (calling hours, retry delay).
    retry_at: datetime | None = None
    # For NUMBER_NOT_ALLOWED: the policy's rule, and what it names.
    rule: PolicyRule | None = None
    subject: str = ""


class CallRefused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


# Premium-rate and shared-cost numbers are the classic toll-fraud targets;
# they are refused whatever the configured prefixes say.
_ALWAYS_BLOCKED_TYPES = frozenset({PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST})
DEFAULT_BLOCKED_PREFIXES = ("+1900", "+1976")


@dataclass(frozen=True, slots=True)
class DialingPolicy:
    """Which numbers may be dialed at all.

    ``allowed`` holds ISO regions (``CA`` allows Canadian numbers only, not
    the rest of the +1 zone such as +1 809) and/or calling codes (``+33``
    allows every number under +33).  Deny by default: anything else is
    refused, as is any number starting with a ``blocked_prefixes`` entry.
    +1 numbers also go through :mod:`dialer.domain.dial_rules`, the rules the
    PBX's dialplan is generated from, so the dialer never lets through a
    number the dialplan would hang up on once the volunteer has answered.
    """

    allowed: frozenset[str]
    blocked_prefixes: tuple[str, ...] = DEFAULT_BLOCKED_PREFIXES

    @classmethod
    def parse(cls, allowed: Iterable[str], blocked_prefixes: Iterable[str]) -> DialingPolicy:
        entries: set[str] = set()
        for raw in allowed:
            entry = raw.strip().upper()
            if not entry:
                continue
            if entry.startswith("+"):
                if not entry[1:].isdigit():
                    raise ValueError(f"invalid calling code {raw!r}; write it like +33")
            elif entry not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(
                    f"unknown region {raw!r}; use an ISO code like CA or a code like +33"
                )
            entries.add(entry)
        prefixes = []
        for raw in blocked_prefixes:
            prefix = raw.strip()
            if not prefix:
                continue
            if not prefix.startswith("+") or not prefix[1:].isdigit():
                raise ValueError(f"invalid blocked prefix {raw!r}; write it in E.164 like +1900")
            prefixes.append(prefix)
        return cls(frozenset(entries), tuple(prefixes))

    def check(self, e164: str) -> Refusal | None:
        try:
            number = phonenumbers.parse(e164, None)
        except phonenumbers.NumberParseException:
            return Refusal(RefusalCode.INVALID_NUMBER, f"{e164} is not a phone number")
        # phonenumbers.is_valid_number(number) is exactly this; the region is kept.
        region = phonenumbers.region_code_for_number(number)
        if (
            region is None
            or not phonenumbers.is_valid_number_for_region(number, region)
            or phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != e164
        ):
            return Refusal(RefusalCode.INVALID_NUMBER, f"{e164} is not a valid E.164 number")
        return self._check_valid(e164, number, region)

    def check_number(self, checked: CheckedNumber) -> Refusal | None:
        """:meth:`check` of ``checked.e164``, without parsing it again.

        ``checked`` is :func:`dialer.domain.numbers.check_number`'s: valid,
        and ``e164`` its E.164 form.  ``check`` would parse that form back to
        the same number (the same country code and national digits, so the
        same validity, type and region), unless the country's national prefix
        could be taken off the front of the national digits: those few are
        checked by ``check`` itself.
        """
        country_code = checked.number.country_code
        if country_code is None or not _reads_back(checked.e164, country_code):
            return self.check(checked.e164)
        return self._check_valid(checked.e164, checked.number, checked.region)

    def _check_valid(self, e164: str, number: PhoneNumber, region: str) -> Refusal | None:
        """The rules, for a valid number in its E.164 form ``e164``, of ``region``
        (phonenumbers.region_code_for_number)."""
        country_code = number.country_code
        assert country_code is not None, "a valid number has a country code"
        for prefix in self.blocked_prefixes:
            if e164.startswith(prefix):
                return Refusal(
                    RefusalCode.NUMBER_NOT_ALLOWED,
                    f"numbers starting with {prefix} may not be dialed",
                    rule=PolicyRule.BLOCKED_PREFIX,
                    subject=prefix,
                )
        if _number_type(number, country_code, region) in _ALWAYS_BLOCKED_TYPES:
            return Refusal(
                RefusalCode.NUMBER_NOT_ALLOWED,
                "premium-rate and shared-cost numbers may not be dialed",
                rule=PolicyRule.PREMIUM_TYPE,
            )
        if country_code == 1:
            rule = nanp_refusal(e164[1:], self._nanp_regions_allowed())
            if rule is not None:
                return Refusal(
                    RefusalCode.NUMBER_NOT_ALLOWED,
                    f"{e164} may not be dialed: {REASON_SENTENCES[rule.reason]} ({rule.note})",
                    rule=PolicyRule.NANP,
                    subject=rule.reason,
                )
        if region in self.allowed or f"+{country_code}" in self.allowed:
            return None
        destination = region or f"+{country_code}"
        return Refusal(
            RefusalCode.NUMBER_NOT_ALLOWED,
            f"calls to {destination} are not allowed by the dialing policy",
            rule=PolicyRule.DESTINATION,
            subject=destination,
        )

    def _nanp_regions_allowed(self) -> frozenset[str]:
        # Allowing the calling code +1 allows every NANP country by name.
        if "+1" in self.allowed:
            return frozenset(INTERNATIONAL_RATE_AREA_CODES)
        return self.allowed


def _number_type(number: PhoneNumber, country_code: int, region: str) -> int:
    """phonenumbers.number_type(number), its country code and region
    (region_code_for_number) known: that function's own steps but the
    region's look-up, the costly one in the +1 zone."""
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        return PhoneNumberType.UNKNOWN
    # Looked up on the module when called, as number_type does (bulk_numbers replaces it).
    return phonenumberutil._number_type_helper(
        phonenumberutil.national_significant_number(number), metadata
    )


# Matches anything: every number of a calling code without metadata is checked by parsing.
_ANY_PREFIX = re.compile("")


@cache
def _national_prefix(country_code: int) -> re.Pattern[str] | None:
    """What phonenumbers.parse may take off the front of the national digits
    after ``+<country_code>``, as the national prefix (None: nothing)."""
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(
        country_code, phonenumbers.region_code_for_country_code(country_code)
    )
    if metadata is None:
        return _ANY_PREFIX
    prefix = metadata.national_prefix_for_parsing
    return re.compile(prefix) if prefix else None


def _reads_back(e164: str, country_code: int) -> bool:
    """Whether phonenumbers.parse reads the E.164 form ``e164`` of a valid
    number of ``country_code`` back to the same country code and national
    digits.  The calling codes are a prefix code, so ``+`` and the digits
    give the country code back; the national digits come back as they are
    unless parse takes a national prefix off them, which it tries only when
    the country's prefix pattern matches their start (as here).
    """
    prefix = _national_prefix(country_code)
    return prefix is None or prefix.match(e164[len(str(country_code)) + 1 :]) is None


@lru_cache(maxsize=4096)
def _zones_for(e164: str) -> tuple[str, ...]:
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    zones = phone_timezones.time_zones_for_number(number)
    return tuple(zone for zone in zones if zone != phone_timezones.UNKNOWN_TIMEZONE)


def contact_zones(e164: str, explicit: str | None, fallback: str) -> tuple[ZoneInfo, ...]:
    """The time zones the contact may be in.

    An explicit zone on the contact wins.  Otherwise the number's zones:
    a number that could be in several (a toll-free or a nationwide mobile
    range) must be within hours in all of them.
    """
    if explicit:
        try:
            return (ZoneInfo(explicit),)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    names = _zones_for(e164) or (fallback,)
    return tuple(ZoneInfo(name) for name in names)


def window_for(hours: CallingHours, local: datetime) -> TimeWindow | None:
    """The window of ``local``'s day (weekends have their own; None: closed all day)."""
    return hours.weekend if local.weekday() >= 5 else hours.weekday


def within_hours(hours: CallingHours, zones: Iterable[ZoneInfo], now: datetime) -> bool:
    for zone in zones:
        local = now.astimezone(zone)
        window = window_for(hours, local)
        if window is None or not window.contains(local.time().replace(tzinfo=None)):
            return False
    return True


def next_opening(
    hours: CallingHours, zones: tuple[ZoneInfo, ...], now: datetime, *, horizon_days: int = 8
) -> datetime | None:
    """The first moment at or after ``now`` when every zone is within hours."""
    if within_hours(hours, zones, now):
        return now
    candidates: list[datetime] = []
    for zone in zones:
        local_day = now.astimezone(zone).date()
        for offset in range(horizon_days):
            day = local_day + timedelta(days=offset)
            probe = datetime.combine(day, time(12), zone)
            window = window_for(hours, probe)
            if window is None:
                continue
            opening = datetime.combine(day, window.start, zone).astimezone(UTC)
            if opening >= now:
                candidates.append(opening)
    for candidate in sorted(candidates):
        if within_hours(hours, zones, candidate):
            return candidate
    return None


def check_calling_hours(
    hours: CallingHours, zones: tuple[ZoneInfo, ...], now: datetime
) -> Refusal | None:
    if within_hours(hours, zones, now):
        return None
    opening = next_opening(hours, zones, now)
    local = now.astimezone(zones[0])
    when = ""
    if opening is not None:
        opening_local = opening.astimezone(zones[0])
        when = f"; calls may start at {opening_local:%a %H:%M} their time"
    return Refusal(
        RefusalCode.OUTSIDE_CALLING_HOURS,
        f"it is {local:%a %H:%M} for this contact ({zones[0].key}), outside calling hours{when}",
        retry_at=opening,
    )


def check_attempts(
    attempts: int,
    max_attempts: int,
    last_attempt_at: datetime | None,
    retry_delay: timedelta,
    now: datetime,
    *,
    callback_due: bool = False,
) -> Refusal | None:
    if attempts >= max_attempts and not callback_due:
        return Refusal(
            RefusalCode.MAX_ATTEMPTS,
            f"this contact was already tried {attempts} times (the maximum is {max_attempts})",
        )
    if last_attempt_at is not None and not callback_due:
        ready = last_attempt_at + retry_delay
        if now < ready:
            return Refusal(
                RefusalCode.RETRY_TOO_SOON,
                f"this contact was tried recently; try again after {ready:%H:%M} UTC",
                retry_at=ready,
            )
    return None
