"""The +1 numbers nobody may dial: one table for the dialer and the PBX.

The dialer's :class:`~dialer.domain.compliance.DialingPolicy` refuses a +1
number when :func:`nanp_refusal` names a rule for it; the ``[dialer-outbound]``
patterns of ``asterisk-config/extensions.conf`` are generated from the same
:data:`NANP_RULES` (``python -m ami_bridge.outbound_rules``).  A test then
lets an Asterisk pattern matcher run the generated dialplan over every NANP
area code and exchange, and checks it reaches the verdict this module
reaches: the two cannot drift apart, because a rule exists only here.

Numbers are the E.164 digits without the ``+``, as the dialer's Originate
sends them: ``1`` + area code (NPA) + exchange (NXX) + line.  Both NPA and
NXX start with 2-9; anything else under +1 is not a North American number.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum


class NanpReason(StrEnum):
    """Why a rule refuses: the word the dialplan logs, and the policy's message."""

    PREMIUM_RATE = "premium-rate"
    DIRECTORY_ASSISTANCE = "directory-assistance"
    SERVICE_CODE = "service-code"
    NON_GEOGRAPHIC = "non-geographic"
    INTERNATIONAL_RATE = "international-rate"


REASON_SENTENCES = {
    NanpReason.PREMIUM_RATE: "premium-rate numbers may not be dialed",
    NanpReason.DIRECTORY_ASSISTANCE: "directory assistance is billed per call",
    NanpReason.SERVICE_CODE: "N11 service codes are not area codes",
    NanpReason.NON_GEOGRAPHIC: "non-geographic numbers are billed at the carrier's discretion",
    NanpReason.INTERNATIONAL_RATE: "this +1 country is billed at international rates",
}


@dataclass(frozen=True, slots=True)
class NanpRule:
    """A block of +1 numbers refused for ``reason``.

    Each part is the set of values it matches, or empty for any value: a
    rule with only ``exchanges={"976"}`` refuses NXX-976-XXXX in every area
    code.  ``region`` marks the numbers of a NANP country billed at
    international rates: the rule no longer applies once that region is an
    allowed destination (and the dialplan is regenerated for it).
    """

    reason: NanpReason
    note: str
    area_codes: frozenset[str] = frozenset()
    exchanges: frozenset[str] = frozenset()
    lines: frozenset[str] = frozenset()
    region: str | None = None

    def matches(self, area_code: str, exchange: str, line: str) -> bool:
        return (
            (not self.area_codes or area_code in self.area_codes)
            and (not self.exchanges or exchange in self.exchanges)
            and (not self.lines or line in self.lines)
        )


def _codes(*codes: str) -> frozenset[str]:
    return frozenset(codes)


# NANP countries outside the US and Canada, by ISO region, with their area
# codes.  The US territories (PR 787/939, VI 340, GU 671, MP 670, AS 684)
# are billed as domestic calls and are not here.
INTERNATIONAL_RATE_AREA_CODES: dict[str, tuple[str, frozenset[str]]] = {
    "AG": ("Antigua and Barbuda", _codes("268")),
    "AI": ("Anguilla", _codes("264")),
    "BB": ("Barbados", _codes("246")),
    "BM": ("Bermuda", _codes("441")),
    "BS": ("Bahamas", _codes("242")),
    "DM": ("Dominica", _codes("767")),
    "DO": ("Dominican Republic", _codes("809", "829", "849")),
    "GD": ("Grenada", _codes("473")),
    "JM": ("Jamaica", _codes("658", "876")),
    "KN": ("Saint Kitts and Nevis", _codes("869")),
    "KY": ("Cayman Islands", _codes("345")),
    "LC": ("Saint Lucia", _codes("758")),
    "MS": ("Montserrat", _codes("664")),
    "SX": ("Sint Maarten", _codes("721")),
    "TC": ("Turks and Caicos", _codes("649")),
    "TT": ("Trinidad and Tobago", _codes("868")),
    "VC": ("Saint Vincent and the Grenadines", _codes("784")),
    "VG": ("British Virgin Islands", _codes("284")),
}
DOMESTIC_NANP_REGIONS = frozenset({"US", "CA", "PR", "VI", "GU", "MP", "AS"})

NANP_RULES: tuple[NanpRule, ...] = (
    NanpRule(NanpReason.PREMIUM_RATE, "area code 900", area_codes=_codes("900")),
    NanpRule(NanpReason.PREMIUM_RATE, "976 exchanges in any area code", exchanges=_codes("976")),
    NanpRule(
        NanpReason.DIRECTORY_ASSISTANCE,
        "NXX-555-1212 in any area code",
        exchanges=_codes("555"),
        lines=_codes("1212"),
    ),
    NanpRule(
        NanpReason.SERVICE_CODE,
        "N11 codes (411, 911...) are services, never area codes",
        area_codes=frozenset(f"{first}11" for first in "23456789"),
    ),
    NanpRule(NanpReason.NON_GEOGRAPHIC, "carrier services", area_codes=_codes("700")),
    NanpRule(
        NanpReason.NON_GEOGRAPHIC,
        "personal communications services",
        area_codes=_codes("500", "533", "544", "566", "577", "588")
        | frozenset(f"52{last}" for last in "123456789"),
    ),
    *(
        NanpRule(NanpReason.INTERNATIONAL_RATE, name, area_codes=area_codes, region=region)
        for region, (name, area_codes) in sorted(INTERNATIONAL_RATE_AREA_CODES.items())
    ),
)


def nanp_parts(digits: str) -> tuple[str, str, str] | None:
    """(area code, exchange, line) of a North American number, else None."""
    if (
        len(digits) != 11
        or not digits.isascii()
        or not digits.isdigit()
        or digits[0] != "1"
        or digits[1] in "01"
        or digits[4] in "01"
    ):
        return None
    return digits[1:4], digits[4:7], digits[7:]


# The rules that may refuse a number of each area code, in NANP_RULES' order: those
# naming that area code and those naming none.  Only a shortcut: the rules are NANP_RULES.
_RULES_BY_AREA_CODE: dict[str, tuple[NanpRule, ...]] = {
    area_code: tuple(
        rule for rule in NANP_RULES if not rule.area_codes or area_code in rule.area_codes
    )
    for area_code in map(str, range(200, 1000))
}


def nanp_refusals(digits: str, allowed_regions: Collection[str] = frozenset()) -> list[NanpRule]:
    """Every rule refusing the NANP number ``digits`` (E.164 without the ``+``).

    Empty when it may be dialed, or when ``digits`` is not a NANP number at
    all (the caller refuses those on its own terms).  International-rate
    rules of a region in ``allowed_regions`` are lifted.
    """
    parts = nanp_parts(digits)
    if parts is None:
        return []
    return [
        rule
        for rule in _RULES_BY_AREA_CODE[parts[0]]
        if rule.matches(*parts) and (rule.region is None or rule.region not in allowed_regions)
    ]


def nanp_refusal(digits: str, allowed_regions: Collection[str] = frozenset()) -> NanpRule | None:
    """The first rule refusing ``digits``, or None (see :func:`nanp_refusals`)."""
    parts = nanp_parts(digits)
    if parts is None:
        return None
    for rule in _RULES_BY_AREA_CODE[parts[0]]:
        if rule.matches(*parts) and (rule.region is None or rule.region not in allowed_regions):
            return rule
    return None
