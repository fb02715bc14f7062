"""The import's row check parses each number once and gives the answers of the old path.

The old path, kept here word for word as the reference: ``to_e164`` (parse,
``is_valid_number``, ``format_number``), then ``DialingPolicy.check(e164)``,
which parsed the E.164 form again, validated and formatted it again, then
applied the rules (``number_type``, :func:`nanp_refusal` trying every rule in
turn, ``region_code_for_number``).  The new one, ``check_number`` then
``DialingPolicy.check_number``, and ``check`` itself, must answer exactly as
it does, with the bulk import's phonenumbers helpers and without them.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator

import phonenumbers
import pytest
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from dialer.domain import compliance
from dialer.domain.compliance import DialingPolicy, PolicyRule, Refusal, RefusalCode
from dialer.domain.dial_rules import (
    INTERNATIONAL_RATE_AREA_CODES,
    NANP_RULES,
    REASON_SENTENCES,
    NanpReason,
    NanpRule,
    nanp_parts,
    nanp_refusal,
    nanp_refusals,
)
from dialer.domain.i18n import activate_scoped, deactivate
from dialer.domain.numbers import InvalidPhoneNumber, check_number, to_e164
from dialer.services import bulk_numbers
from dialer.services.importer import ColumnMap, ParsedRow, RowError, parse_row

# -- the old path, as it was ---------------------------------------------------------

_OLD_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}


def _old_to_e164(raw: str, region: str, *, allow_letters: bool = False) -> str:
    text = raw.strip()
    if not text:
        raise InvalidPhoneNumber(raw, "empty")
    if len(text) > 40:
        raise InvalidPhoneNumber(raw[:40] + "...", "too long")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as error:
        raise InvalidPhoneNumber(
            raw, _OLD_PARSE_REASONS.get(error.error_type, str(error))
        ) from None
    if number.extension:
        raise InvalidPhoneNumber(raw, "extensions cannot be dialed")
    digits_part = text[4:] if text[:4].lower() == "tel:" else text
    if not allow_letters and any(character.isalpha() for character in digits_part):
        raise InvalidPhoneNumber(raw, "contains letters")
    if not phonenumbers.is_valid_number(number):
        if not phonenumbers.is_possible_number(number):
            raise InvalidPhoneNumber(raw, "wrong number of digits")
        raise InvalidPhoneNumber(raw, "not a valid number in its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _old_nanp_refusal(digits: str, allowed_regions: Collection[str]) -> NanpRule | None:
    parts = nanp_parts(digits)
    if parts is None:
        return None
    refusals = [
        rule
        for rule in NANP_RULES
        if rule.matches(*parts) and (rule.region is None or rule.region not in allowed_regions)
    ]
    return refusals[0] if refusals else None


_OLD_ALWAYS_BLOCKED_TYPES = frozenset({PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST})


def _old_check(policy: DialingPolicy, e164: str) -> Refusal | None:
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return Refusal(RefusalCode.INVALID_NUMBER, f"{e164} is not a phone number")
    if (
        not phonenumbers.is_valid_number(number)
        or phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != e164
    ):
        return Refusal(RefusalCode.INVALID_NUMBER, f"{e164} is not a valid E.164 number")
    for prefix in policy.blocked_prefixes:
        if e164.startswith(prefix):
            return Refusal(
                RefusalCode.NUMBER_NOT_ALLOWED,
                f"numbers starting with {prefix} may not be dialed",
                rule=PolicyRule.BLOCKED_PREFIX,
                subject=prefix,
            )
    if phonenumbers.number_type(number) in _OLD_ALWAYS_BLOCKED_TYPES:
        return Refusal(
            RefusalCode.NUMBER_NOT_ALLOWED,
            "premium-rate and shared-cost numbers may not be dialed",
            rule=PolicyRule.PREMIUM_TYPE,
        )
    if number.country_code == 1:
        allowed = (
            frozenset(INTERNATIONAL_RATE_AREA_CODES) if "+1" in policy.allowed else policy.allowed
        )
        rule = _old_nanp_refusal(e164[1:], allowed)
        if rule is not None:
            return Refusal(
                RefusalCode.NUMBER_NOT_ALLOWED,
                f"{e164} may not be dialed: {REASON_SENTENCES[rule.reason]} ({rule.note})",
                rule=PolicyRule.NANP,
                subject=rule.reason,
            )
    region = phonenumbers.region_code_for_number(number)
    if region in policy.allowed or f"+{number.country_code}" in policy.allowed:
        return None
    destination = region or f"+{number.country_code}"
    return Refusal(
        RefusalCode.NUMBER_NOT_ALLOWED,
        f"calls to {destination} are not allowed by the dialing policy",
        rule=PolicyRule.DESTINATION,
        subject=destination,
    )


# -- the numbers ---------------------------------------------------------------------

POLICIES = (
    DialingPolicy.parse(["CA"], ["+1900", "+1976"]),
    DialingPolicy.parse(["CA", "US", "+33", "JM", "+7"], ["+1604555", "+3389"]),
    DialingPolicy.parse(["+1", "GB", "RU", "+800"], []),
    DialingPolicy.parse([], ["+1"]),
)
REGIONS = ("CA", "US", "JM", "DO", "PR", "FR", "IT", "GB", "GG", "RU", "KZ", "DE", "AR", "MX")
NANP_SHAPES = ("({a}) {b}-{c}", "+1 {a} {b} {c}", "1-{a}-{b}-{c}", "{a}.{b}.{c}", "+1{a}{b}{c}")
# The +1 ranges dial_rules refuses, the international-rate countries, and ordinary ones.
NANP_AREA_CODES = (
    "900", "976", "411", "911", "700", "500", "521", "533", "800", "888", "809", "876",
    "268", "441", "345", "787", "340", "671", "604", "778", "416", "514", "212", "202",
)  # fmt: skip
NANP_EXCHANGES = ["555", "976", "411", "234", "212", "300", "012", "199"]
NANP_LINES = ["1212", "0123", "4821", "0000", "9999"]
ODD = (
    "",
    "   ",
    "514-555-CALL",
    "1-800-FLOWERS",
    "+1514555018l",
    "514-555-0184 x12",
    "5145550184;ext=9",
    "tel:+1-514-555-0184",
    "tel:+1-514-555-0184;ext=9",
    "٥١٤٥٥٥٠١٨٤",  # Arabic-Indic digits
    "５１４５５５０１８４",  # fullwidth digits  # noqa: RUF001
    "+1 (514) 555-0184 / 438 555 0100",
    "+999 1234",
    "+",
    "00",
    "0" * 41,
    "+7 800 555 35 35",  # Russian toll-free: its national digits start with the prefix 8
    "8 800 555 35 35",
    "+7 8 800 555 35 35",
    "+54 9 11 1234 5678",  # Argentina's mobile 9
    "011 15 1234 5678",
    "+800 1234 5678",  # international freephone (region 001)
    "+882 1234 5678",
)


def _random_samples(count: int) -> Iterator[tuple[str, str]]:
    rng = random.Random(2026)
    shapes = (
        "{d}",
        "({a}) {b}-{c}",
        "+{cc} {d}",
        "0{d}",
        "00{cc}{d}",
        "1 {d}",
        "8{d}",
        "+{cc}0{d}",
    )
    for _ in range(count):
        region = rng.choice(REGIONS)
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 13)))
        if rng.random() < 0.6:
            example = phonenumbers.example_number(region)
            if example is not None:
                national = str(example.national_number)
                keep = rng.randint(1, len(national))
                digits = national[:keep] + digits[: len(national) - keep]
        cc = str(phonenumbers.country_code_for_region(region))
        shape = rng.choice(shapes)
        yield region, shape.format(d=digits, a=digits[:3], b=digits[3:6], c=digits[6:], cc=cc)


def _example_samples() -> Iterator[tuple[str, str]]:
    """An example number of every type of every region (and of the non-geographic codes)."""
    kinds = [
        value
        for name, value in vars(PhoneNumberType).items()
        if name.isupper() and name != "UNKNOWN"
    ]
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in kinds:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                yield "CA", phonenumbers.format_number(example, PhoneNumberFormat.E164)
                yield region, phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL)
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            yield "FR", phonenumbers.format_number(example, PhoneNumberFormat.INTERNATIONAL)


def _nanp_samples() -> Iterator[tuple[str, str]]:
    for index, (area, exchange, line) in enumerate(
        (area, exchange, line)
        for area in NANP_AREA_CODES
        for exchange in NANP_EXCHANGES
        for line in NANP_LINES
    ):
        shape = NANP_SHAPES[index % len(NANP_SHAPES)]
        yield "CA", shape.format(a=area, b=exchange, c=line)


SAMPLES = (
    list(_random_samples(2500))
    + list(_example_samples())
    + list(_nanp_samples())
    + [(region, raw) for raw in ODD for region in ("CA", "RU", "AR")]
)


def _old_answers(region: str, raw: str) -> tuple[object, ...]:
    try:
        e164 = _old_to_e164(raw, region)
    except InvalidPhoneNumber as error:
        return (None, error.raw, error.reason)
    return (e164, *(_old_check(policy, e164) for policy in POLICIES))


def _new_answers(region: str, raw: str) -> tuple[object, ...]:
    try:
        checked = check_number(raw, region)
    except InvalidPhoneNumber as error:
        return (None, error.raw, error.reason)
    assert to_e164(raw, region) == checked.e164
    assert checked.region == phonenumbers.region_code_for_number(checked.number)
    answers = []
    for policy in POLICIES:
        refusal = policy.check_number(checked)
        assert policy.check(checked.e164) == refusal
        answers.append(refusal)
    return (checked.e164, *answers)


@pytest.mark.parametrize("fast_helpers", [False, True], ids=["library", "bulk_numbers"])
def test_one_parse_answers_as_the_old_path(fast_helpers: bool) -> None:
    old = [_old_answers(region, raw) for region, raw in SAMPLES]
    if fast_helpers:
        with bulk_numbers.installed():
            new = [_new_answers(region, raw) for region, raw in SAMPLES]
    else:
        new = [_new_answers(region, raw) for region, raw in SAMPLES]
    mismatches = [
        (sample, one, other)
        for sample, one, other in zip(SAMPLES, old, new, strict=True)
        if one != other
    ]
    assert mismatches == []
    # The samples reach every answer: refused numbers, valid ones, and each rule.
    valid = [answer for answer in old if answer[0] is not None]
    assert len(valid) > 2000
    assert len({answer[2] for answer in old if answer[0] is None}) >= 6
    refusals = [r for answer in valid for r in answer[1:] if isinstance(r, Refusal)]
    assert {r.rule for r in refusals} >= set(PolicyRule)
    # N11 "area codes" are not valid numbers: phonenumbers refuses them first.
    nanp_reasons = set(REASON_SENTENCES) - {NanpReason.SERVICE_CODE}
    assert {r.subject for r in refusals if r.rule is PolicyRule.NANP} >= nanp_reasons
    assert any(r.rule is PolicyRule.PREMIUM_TYPE for r in refusals)
    assert sum(1 for answer in valid for r in answer[1:] if r is None) > 500


def test_the_e164_forms_some_national_prefixes_start_are_checked_by_parsing() -> None:
    """check_number's shortcut stands aside where parse could take a national
    prefix off the digits after the country code: those go through check."""
    checked = check_number("+7 800 555 35 35", "CA")
    assert not compliance._reads_back(checked.e164, 7)
    assert compliance._reads_back(check_number("(604) 555-0123", "CA").e164, 1)
    for policy in POLICIES:
        assert policy.check_number(checked) == _old_check(policy, checked.e164)


def test_calling_codes_are_a_prefix_code() -> None:
    """parse reads +<code><digits> back to <code> because no code starts another."""
    codes = {str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
    assert not [(a, b) for a in codes for b in codes if a != b and b.startswith(a)]


@pytest.mark.parametrize("allowed", [frozenset(), frozenset({"JM", "DO"}), frozenset({"CA"})])
def test_nanp_rules_by_area_code_answer_as_every_rule_in_turn(allowed: frozenset[str]) -> None:
    for area_code in range(200, 1000):
        for exchange in ("555", "976", "411", "234", "100"):
            for line in ("1212", "0123"):
                digits = f"1{area_code}{exchange}{line}"
                expected = [
                    rule
                    for rule in NANP_RULES
                    if rule.matches(*digits_parts(digits))
                    and (rule.region is None or rule.region not in allowed)
                ]
                assert nanp_refusals(digits, allowed) == expected
                assert nanp_refusal(digits, allowed) == _old_nanp_refusal(digits, allowed)
    assert nanp_refusal("12125550100x") is None
    assert nanp_refusals("0212555") == []


def digits_parts(digits: str) -> tuple[str, str, str]:
    parts = nanp_parts(digits)
    assert parts is not None or digits[4] in "01"
    return parts or ("", "", "")


# -- the row's other fields ----------------------------------------------------------

COLUMNS = ColumnMap.from_header(
    ["name", "phone", "email", "notes", "address", "score", "tags", "dnc", "language"]
)


def _row(**cells: str) -> ParsedRow | RowError:
    defaults = {"phone": "(604) 555-0123", "name": "Ada Lovelace"}
    values = {**defaults, **cells}
    order = ["name", "phone", "email", "notes", "address", "score", "tags", "dnc", "language"]
    return parse_row(2, [values.get(name, "") for name in order], COLUMNS, "CA", POLICIES[0])


@pytest.fixture
def english() -> Iterator[None]:
    token = activate_scoped("en")
    try:
        yield
    finally:
        deactivate(token)


@pytest.mark.usefixtures("english")
def test_field_lengths_are_checked_in_their_order() -> None:
    # The address (500) comes before the notes (10,000) and after the email (320).
    error = _row(notes="n" * 10_001, address="a" * 501, email="e" * 321)
    assert isinstance(error, RowError)
    assert error.reason == "email is longer than 320 characters"
    error = _row(notes="n" * 10_001, address="a" * 501)
    assert isinstance(error, RowError) and error.reason == "address is longer than 500 characters"
    error = _row(name="F" * 201 + " L")
    assert isinstance(error, RowError)
    assert error.reason == "first name is longer than 200 characters"
    row = _row(name="F" * 200 + " " + "L" * 200, address="a" * 500, notes="n" * 10_000)
    assert isinstance(row, ParsedRow)


@pytest.mark.usefixtures("english")
def test_fields_are_normalised_as_before() -> None:
    row = _row(score="٣", tags=" b , a |a;;", dnc="OUI", language="pt_BR", email="A@B.Org")
    assert isinstance(row, ParsedRow)
    assert row.values == {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "a@b.org",
        "support_score": 3,
        "tags": ["a", "b"],
        "do_not_call": True,
        "language": "pt-br",
    }
    for score in ("0", "6", "3.0", "²", "x"):
        error = _row(score=score)
        assert isinstance(error, RowError)
        assert error.reason == (f"support score must be a whole number from 1 to 5, not {score!r}")
    error = _row(dnc="maybe")
    assert isinstance(error, RowError)
    assert error.reason == "do_not_call must be yes or no, not 'maybe'"


@pytest.mark.usefixtures("english")
def test_a_rows_numbers_are_flagged_once_each_in_order() -> None:
    row = _row(phone="+1 900 555 0100; (604) 555-0123 / 1-604-555-0123; (604) 976-1234")
    assert isinstance(row, ParsedRow)
    assert [e164 for e164, _kind in row.phones] == ["+19005550100", "+16045550123", "+16049761234"]
    assert row.flags == [
        ("+19005550100", "the dialing policy refuses numbers starting with +1900"),
        ("+16049761234", "premium-rate numbers are never dialed"),
    ]
    error = _row(phone="(604) 555-0123; 604-555-CALL")
    assert isinstance(error, RowError) and error.reason == "contains letters: '604-555-CALL'"
