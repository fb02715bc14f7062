"""The bulk import's faster phonenumbers helpers give the library's answers."""

from __future__ import annotations

import random
from collections.abc import Iterator

import phonenumbers
import pytest

from dialer.domain.compliance import DialingPolicy, Refusal
from dialer.domain.numbers import InvalidPhoneNumber, to_e164
from dialer.services import bulk_numbers

# Regions of the +1 zone (25 of them share the code), Europe with its
# leading zeros (Italy), and regions whose numbers take leading digits (+7, +44).
REGIONS = ("CA", "US", "JM", "BS", "PR", "FR", "IT", "GB", "GG", "RU", "KZ", "DE", "BR", "IN")
POLICIES = (
    DialingPolicy.parse(["CA"], ["+1900", "+1976"]),
    DialingPolicy.parse(["CA", "+33", "US", "+7"], ["+1900"]),
)


def _samples(count: int) -> Iterator[tuple[str, str]]:
    rng = random.Random(19)
    shapes = ("{d}", "({a}) {b}-{c}", "+{cc} {d}", "0{d}", "00{cc}{d}", "1 {d}", "{d} x12")
    for _ in range(count):
        region = rng.choice(REGIONS)
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 13)))
        if rng.random() < 0.5:
            # Mostly real area codes: valid numbers, not only noise.
            example = phonenumbers.example_number(region)
            if example is not None:
                national = str(example.national_number)
                keep = rng.randint(1, len(national))
                digits = national[:keep] + digits[: len(national) - keep]
        shape = rng.choice(shapes)
        cc = str(phonenumbers.country_code_for_region(region))
        yield region, shape.format(d=digits, a=digits[:3], b=digits[3:6], c=digits[6:], cc=cc)


def _answers(region: str, raw: str) -> tuple[object, ...]:
    try:
        e164: str | None = to_e164(raw, region)
        reason = None
    except InvalidPhoneNumber as error:
        e164, reason = None, error.reason
    checks: list[Refusal | None] = []
    facts: tuple[object, ...] = ()
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        pass
    else:
        facts = (
            phonenumbers.region_code_for_number(number),
            phonenumbers.number_type(number),
            phonenumbers.is_valid_number(number),
            phonenumbers.is_possible_number(number),
        )
    if e164 is not None:
        checks = [policy.check(e164) for policy in POLICIES]
    return e164, reason, tuple(checks), facts


def test_the_fast_helpers_answer_as_the_library_does() -> None:
    samples = list(_samples(6000))
    slow = [_answers(region, raw) for region, raw in samples]
    with bulk_numbers.installed():
        fast = [_answers(region, raw) for region, raw in samples]
    assert phonenumbers.phonenumberutil.normalize_digits_only is not (
        bulk_numbers._fast_normalize_digits_only
    )
    mismatches = [
        (sample, one, other)
        for sample, one, other in zip(samples, slow, fast, strict=True)
        if one != other
    ]
    assert mismatches == []
    # The samples hold valid numbers of many regions, and refused ones.
    assert sum(1 for e164, *_rest in slow if e164) > 1000
    assert len({facts[0] for *_rest, facts in slow if facts}) >= 10


@pytest.mark.parametrize(
    "text",
    # Arabic-Indic and fullwidth digits are real input from spreadsheets.
    ["(514) 555-0123", "+1 514.555.0123", "٥١٤٥٥٥٠١٢٣", "５１４-555", "tel:+1-514", ""],  # noqa: RUF001
)
@pytest.mark.parametrize("keep", [False, True])
def test_digits_are_normalised_as_the_library_does(text: str, keep: bool) -> None:
    expected = phonenumbers.normalize_digits_only(text, keep)
    with bulk_numbers.installed():
        assert phonenumbers.phonenumberutil.normalize_digits_only(text, keep) == expected


def test_extensions_are_stripped_as_the_library_does() -> None:
    rng = random.Random(5)
    # The plain characters the shortcut answers at once, and those of every extension form.
    alphabet = "0123456789 ()+-./" * 3 + "xX#~,;:eEtTnNiI\t\xa0ｘ＃доб٣"  # noqa: RUF001
    texts = ["(514) 555-0123", "+1 514.555.0123", "514-555-0184 x12", "5145550184#12"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20))) for _ in range(5000)]
    strip = phonenumbers.phonenumberutil._maybe_strip_extension
    expected = [strip(text) for text in texts]
    with bulk_numbers.installed():
        fast = phonenumbers.phonenumberutil._maybe_strip_extension
        assert fast is bulk_numbers._fast_strip_extension
        assert [fast(text) for text in texts] == expected
    assert phonenumbers.phonenumberutil._maybe_strip_extension is strip
    # Both kinds were tried: extensions found, and text the shortcut answers.
    assert sum(1 for extension, _rest in expected if extension) > 20
    assert sum(1 for text in texts if bulk_numbers._NO_EXTENSION.fullmatch(text)) > 500


def test_the_pattern_cache_is_on_only_while_installed() -> None:
    from phonenumbers import re_util

    before = re_util._COMPILED_PATTERNS  # type: ignore[attr-defined]
    with bulk_numbers.installed():
        assert re_util._COMPILED_PATTERNS is not None  # type: ignore[attr-defined]
        phonenumbers.parse("(514) 555-0123", "CA")
    assert re_util._COMPILED_PATTERNS is before  # type: ignore[attr-defined]
